"""`ml-connector secret ...`: the encrypted credential store that `store:NAME` references read."""

from __future__ import annotations

import json
from pathlib import Path

import click

from ml_connector.commands.options import workspace_option
from ml_connector.errors import SetupError
from ml_connector.spec.workspace_checks import SECRET_REFERENCE
from ml_connector.store.credentials import TOKEN_SUFFIXES
from ml_connector.workspace import Workspace

NAME_RULE = "letters, digits and _ . : / - , starting with a letter, digit or _ (as in store:NAME)"


def _checked(_ctx: click.Context, _param: click.Parameter, name: str) -> str:
    """A name a workspace can refer to as ``store:NAME``; the engine's token names are not the user's.

    Checked while the command line is parsed, so a bad name is refused before the value is prompted for.
    """
    if not SECRET_REFERENCE.match(f"store:{name}"):
        raise click.BadParameter(f"{name!r}: a secret name has {NAME_RULE}", param_hint="NAME")
    if name.endswith(TOKEN_SUFFIXES):
        raise click.BadParameter(f"{name!r}: names ending in {' or '.join(TOKEN_SUFFIXES)} are kept for cached "
                                 "tokens", param_hint="NAME")
    return name


@click.group()
def secret() -> None:
    """The encrypted credential store (what `store:NAME` secret references read).

    \b
    Example:
      ml-connector secret set crm_token -w ws/workspace.yaml
    """


@secret.command("set")
@workspace_option
@click.argument("name", callback=_checked)
@click.option("--value", prompt=True, hide_input=True, help="The value (prompted, hidden, when not given).")
def secret_set(workspace_path: Path, name: str, value: str) -> None:
    """Store a secret, encrypted with the workspace key (ML_CONNECTOR_KEY or the key file beside the state).

    \b
    Example:
      ml-connector secret set crm_token -w ws/workspace.yaml   # then secrets: {api_token: store:crm_token}
    """
    state = Workspace.open(workspace_path).state()
    try:
        state.credentials.put(name, value)
    finally:
        state.close()
    click.echo(f"stored {name}; refer to it as store:{name}")


@secret.command("list")
@workspace_option
@click.option("--json", "as_json", is_flag=True, help="Print the names as JSON.")
def secret_list(workspace_path: Path, as_json: bool) -> None:
    """Names of your stored secrets (never values; the engine's cached tokens are not listed).

    \b
    Example:
      ml-connector secret list -w ws/workspace.yaml --json
    """
    state = Workspace.open(workspace_path).state()
    try:
        names = state.credentials.secret_names()
    finally:
        state.close()
    if as_json:
        click.echo(json.dumps({"secrets": names}))
        return
    for name in names:
        click.echo(name)


@secret.command("delete")
@workspace_option
@click.argument("name", callback=_checked)
def secret_delete(workspace_path: Path, name: str) -> None:
    """Remove a stored secret (connections that refer to it fail until it is set again).

    \b
    Example:
      ml-connector secret delete old_token -w ws/workspace.yaml
    """
    state = Workspace.open(workspace_path).state()
    try:
        found = state.credentials.delete(name)
    finally:
        state.close()
    if not found:
        raise SetupError(f"no secret named {name} in the credential store (secret list shows them)")
    click.echo(f"deleted {name}")


@secret.command("rotate-key")
@workspace_option
def secret_rotate_key(workspace_path: Path) -> None:
    """Re-encrypt every stored secret and cached token under a new key file; an interruption loses nothing.

    \b
    Example:
      ml-connector secret rotate-key -w ws/workspace.yaml   # then back up the new key file
    """
    state = Workspace.open(workspace_path).state()
    try:
        count, key_file = state.credentials.rotate_key()
    finally:
        state.close()
    click.echo(f"re-encrypted {count} stored values under a new key in {key_file}")
