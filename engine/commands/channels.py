"""`ml-connector channels list|renew|delete`: the webhook channels registered for triggered flows.

`serve` maintains channels on each tick; these commands show them (never their tokens), maintain them once
(register what is missing, renew what is due) and delete one (its unregister request, then forgotten).
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path

import click
import httpx

from ml_connector.commands.options import workspace_option
from ml_connector.errors import SetupError
from ml_connector.events.channels import delete_channel, maintain_channels, watches
from ml_connector.http.redact import REDACTOR
from ml_connector.report import table
from ml_connector.store.channels import StoredChannel
from ml_connector.workspace import Workspace

EXIT_CHANNEL_FAILED = 3  # as a failed flow: a channel request was refused


def base_transport() -> httpx.AsyncBaseTransport | None:
    """The network (tests put an in-process API here)."""
    return None


def utcnow() -> datetime:
    """The clock (tests replace it)."""
    return datetime.now(UTC)


def public_url_of(workspace: Workspace, given: str | None) -> str:
    """Where source systems reach the receiver: --public-url, the workspace's serve.public_url, or http://listen."""
    if given:
        return given
    data = workspace.project.workspace.data if workspace.project.workspace else {}
    serve = data.get("serve") or {}
    if serve.get("public_url"):
        return str(serve["public_url"])
    if serve.get("listen"):
        return f"http://{serve['listen']}"
    raise SetupError("no public URL for channel callbacks: give --public-url, or set serve.public_url (or "
                     "serve.listen) in the workspace")


def _moment(value: datetime | None) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S") if value else "-"


@click.group()
def channels() -> None:
    """Webhook channels registered with source systems for flows with a `trigger`.

    \b
    Example:
      ml-connector channels list -w workspace.yaml
    """


@channels.command("list")
@workspace_option
def channels_list(workspace_path: Path) -> None:
    """Show the registered channels: connection, channel, entity, channel id, expiry and status (never tokens).

    \b
    Example:
      ml-connector channels list -w workspace.yaml
    """
    state = Workspace.open(workspace_path).state()
    try:
        rows = state.channels.all()
    finally:
        state.close()
    if not rows:
        click.echo("no channels registered")
        return
    header = ["CONNECTION", "CHANNEL", "ENTITY", "CHANNEL ID", "EXPIRES AT", "STATUS"]
    body = [[r.connection, r.channel, r.entity, r.channel_id, _moment(r.expires_at),
             r.status + (f": {REDACTOR(r.reason)}" if r.reason else "")] for r in rows]
    click.echo(table(header, body))


@channels.command("renew")
@workspace_option
@click.option("--public-url", help="Where the source systems reach the receiver (default: the workspace's serve).")
def channels_renew(workspace_path: Path, public_url: str | None) -> None:
    """Register the channels the triggered flows need and renew those about to expire (as each serve tick does).

    Exit code 3 when a channel could not be registered or renewed (its reason is shown).

    \b
    Example:
      ml-connector channels renew -w workspace.yaml
    """
    workspace = Workspace.open(workspace_path)
    url = public_url_of(workspace, public_url)
    state = workspace.state()
    try:
        asyncio.run(maintain_channels(workspace.project, state, public_url=url, now=utcnow(),
                                      transport=base_transport()))
        wanted = {(w.connection, w.channel, w.entity) for w in watches(workspace.project)}
        rows = [r for r in state.channels.all() if (r.connection, r.channel, r.entity) in wanted]
    finally:
        state.close()
    for row in rows:
        click.echo(_line(row))
    if any(row.reason for row in rows):
        raise SystemExit(EXIT_CHANNEL_FAILED)


def _line(row: StoredChannel) -> str:
    where = f"{row.connection}/{row.channel}/{row.entity} {row.channel_id} {row.status}"
    until = f" until {_moment(row.expires_at)} UTC" if row.expires_at else ""
    return where + until + (f": {REDACTOR(row.reason)}" if row.reason else "")


@channels.command("delete")
@workspace_option
@click.argument("connection")
@click.argument("channel")
@click.argument("entity")
def channels_delete(workspace_path: Path, connection: str, channel: str, entity: str) -> None:
    """Unregister a channel at its system and forget it (a triggered flow's serve registers it again).

    \b
    Example:
      ml-connector channels delete crm changes account -w workspace.yaml
    """
    workspace = Workspace.open(workspace_path)
    state = workspace.state()
    try:
        stored = asyncio.run(delete_channel(workspace.project, state, connection, channel, entity,
                                            transport=base_transport()))
    finally:
        state.close()
    click.echo(f"deleted channel {connection}/{channel}/{entity} (id {stored.channel_id})")
