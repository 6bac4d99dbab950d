"""`parked list|discard`, `watermark reset` and `repush`: changing state by hand, each change audited
(engine/state_admin.py)."""

from __future__ import annotations

import json
from pathlib import Path

import click

from ml_connector.commands.options import workspace_option
from ml_connector.report import table
from ml_connector.state_admin import discard_parked, mark_for_repush, reset_watermark
from ml_connector.workspace import Workspace


def _flow(workspace: Workspace, flow: str) -> str:
    if flow not in workspace.project.flows:
        raise click.BadParameter(f"unknown flow {flow!r} (flows: {', '.join(sorted(workspace.project.flows))})",
                                 param_hint="FLOW")
    return flow


@click.group("parked")
def parked() -> None:
    """Parked records (failed, or deferred until a reference exists): list them; discard the ones given up on.

    \b
    Examples:
      ml-connector parked list contacts_to_persons
      ml-connector parked discard contacts_to_persons --all-failed --reason "test data, never to sync"
    """


@parked.command("list")
@click.argument("flow", required=False)
@workspace_option
@click.option("--json", "as_json", is_flag=True, help="Print the records as JSON (source record included).")
def parked_list(flow: str | None, workspace_path: Path, as_json: bool) -> None:
    """List parked records (all flows, or FLOW's): key, status, attempts, reason.

    \b
    Example:
      ml-connector parked list customers_to_organizations --json
    """
    workspace = Workspace.open(workspace_path)
    state = workspace.state()
    try:
        found = state.pending.list(flow=flow)
    finally:
        state.close()
    if as_json:
        click.echo(json.dumps([{"flow": p.flow, "source_key": p.source_key, "status": p.status,
                                "attempts": p.attempts, "reason": p.reason, "record": p.record} for p in found],
                              indent=2, default=str))
        return
    click.echo(table(["flow", "source key", "status", "attempts", "reason"],
                     [(p.flow, p.source_key, p.status, p.attempts, p.reason) for p in found]))


@parked.command("discard")
@click.argument("flow")
@click.argument("keys", nargs=-1)
@click.option("--all-failed", is_flag=True, help="Every failed (not deferred) record of FLOW.")
@click.option("--reason", help="Why, for the audit trail.")
@workspace_option
def parked_discard(flow: str, keys: tuple[str, ...], all_failed: bool, reason: str | None,
                   workspace_path: Path) -> None:
    """Drop parked records of FLOW for good: they are no longer retried or counted as failed. Each leaves an
    audit row (action discard, with the record as it was parked) and the change a run row.

    \b
    Examples:
      ml-connector parked discard contacts_to_persons unkeyed:4f2a9c01d3b7e855
      ml-connector parked discard contacts_to_persons --all-failed --reason "no key in the source"
    """
    workspace = Workspace.open(workspace_path)
    state = workspace.state()
    try:
        done = discard_parked(state, flow, list(keys), all_failed=all_failed, reason=reason)
    finally:
        state.close()
    click.echo(f"discarded {len(done.keys)} parked record(s) of {flow} (audit: ml-connector audit --run "
               f"{done.run_id})")


@click.group("watermark")
def watermark() -> None:
    """A flow's watermark: how far its incremental read has come.

    \b
    Example:
      ml-connector watermark reset customers_to_organizations --to 2026-01-01T00:00:00Z
    """


@watermark.command("reset")
@click.argument("flow")
@click.option("--to", "value", help="The new watermark, in the source's own format; default: none (the next run "
                                    "reads everything).")
@workspace_option
def watermark_reset(flow: str, value: str | None, workspace_path: Path) -> None:
    """Move FLOW's watermark back (or forward) so the next run reads from there; the change leaves a run row
    saying from what, to what, and who.

    \b
    Examples:
      ml-connector watermark reset customers_to_organizations
      ml-connector watermark reset customers_to_organizations --to 2026-01-01T00:00:00Z
    """
    workspace = Workspace.open(workspace_path)
    _flow(workspace, flow)
    state = workspace.state()
    try:
        change = reset_watermark(state, flow, value)
    finally:
        state.close()
    after = change.after or "none (the next run reads everything)"
    click.echo(f"{flow}: watermark {change.before or 'none'} -> {after} (run {change.run_id})")


@click.command("repush")
@click.argument("flow")
@click.argument("keys", nargs=-1)
@click.option("--no-run", is_flag=True, help="Only mark the records; the flow's next full read (`run --full`) "
                                             "pushes them.")
@click.option("--json", "as_json", is_flag=True, help="Print the run summary as JSON.")
@workspace_option
def repush(flow: str, keys: tuple[str, ...], no_run: bool, as_json: bool, workspace_path: Path) -> None:
    """Push synced records of FLOW again although they did not change (all, or these source keys), to correct
    edits made in the target. Their targets are known, so each push updates, never duplicates. Then FLOW runs
    with a full read: only the marked records (and real changes) are sent.

    \b
    Examples:
      ml-connector repush customers_to_organizations C1001 C1002
      ml-connector repush customers_to_organizations --no-run
    """
    workspace = Workspace.open(workspace_path)
    _flow(workspace, flow)
    state = workspace.state()
    try:
        marked = mark_for_repush(state, flow, list(keys))
    finally:
        state.close()
    click.echo(f"{flow}: {len(marked.keys)} record(s) marked for a re-push (audit: ml-connector audit --run "
               f"{marked.run_id})", err=as_json)
    if no_run:
        return
    from ml_connector.cli import _run_and_report  # at call time: cli.py registers this command

    _run_and_report(workspace, lambda runner: runner.run([flow], full=True), as_json)
