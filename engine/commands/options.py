"""Options shared by every command: the workspace file (`-w`) and verbosity (`-v`, before or after the command)."""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

import click

workspace_option = click.option(
    "-w", "--workspace", "workspace_path", type=click.Path(path_type=Path, dir_okay=False),
    default=lambda: os.environ.get("ML_CONNECTOR_WORKSPACE", "workspace.yaml"), show_default="workspace.yaml",
    help="The workspace file (connections, state, integrations). Env: ML_CONNECTOR_WORKSPACE.")

VERBOSE_HELP = "-v: progress per page and waits; -vv: every API call, and the traceback of an error."


def verbosity(ctx: click.Context) -> int:
    """How many -v were given, before and after the command name together."""
    return int(ctx.meta.get("ml_connector.verbose", 0))


def configure_logging(verbose: int) -> None:
    level = {0: logging.WARNING, 1: logging.INFO}.get(verbose, logging.DEBUG)
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    logging.getLogger().setLevel(level)
    for noisy in ("httpx", "httpcore"):  # their lines carry full URLs (query strings may hold keys)
        logging.getLogger(noisy).setLevel(logging.WARNING)


def count_verbose(ctx: click.Context, _param: click.Parameter, value: int) -> int:
    """Add this -v count to the ones seen earlier on the line (the context's meta is shared by all levels)."""
    if value:
        ctx.meta["ml_connector.verbose"] = verbosity(ctx) + value
        configure_logging(verbosity(ctx))
    return value


def verbose_after_command() -> click.Option:
    """The -v option a subcommand accepts after its name (`ml-connector run -v`), counted with the group's."""
    return click.Option(["-v", "--verbose", "verbose_after"], count=True, expose_value=False,
                        callback=count_verbose, help=VERBOSE_HELP)


def accept_verbose(command: click.Command) -> None:
    """Give ``command`` (and a group's subcommands) the -v option once; the group adds it when it resolves them."""
    if not any(param.name == "verbose_after" for param in command.params):
        command.params.append(verbose_after_command())
    if isinstance(command, click.Group):
        for sub in command.commands.values():
            accept_verbose(sub)
