"""Triggered runs: the inbox's pending ids go to the flows whose `trigger` watches their source entity.

Serve calls ``run_triggered`` each tick (and at once when a callback woke it). One run (mode ``trigger``) takes, per
watched (connection, entity), the oldest pending ids to every flow triggered by that entity; each flow re-reads those
records by id and syncs them (``FlowRun.by_ids``). An id is marked done only after every flow it went to finished
(its records recorded: written, unchanged, parked, deleted or skipped with an audit row); a flow that failed or a run
that was interrupted leaves its ids pending for the next tick. Notifications are a trigger only: the flows'
schedules still reconcile, and their watermarks do not move here.
"""

from __future__ import annotations

from ml_connector.config import MappingConfig
from ml_connector.events.inbox import Inbox
from ml_connector.spec import Project
from ml_connector.sync.runner import Runner, RunSummary

BATCH = 1000  # ids per entity per run: a burst of callbacks is taken in several runs


def triggered_flows(project: Project) -> dict[tuple[str, str], list[str]]:
    """(source connection, source entity) -> the flows a callback for it triggers, in dependency order."""
    watched: dict[tuple[str, str], list[str]] = {}
    for name in project.flow_order():
        config = project.flows[name].config
        if isinstance(config, MappingConfig) and config.trigger is not None:
            watched.setdefault((config.source.connection, config.source.entity), []).append(name)
    return watched


async def run_triggered(runner: Runner, inbox: Inbox, *, limit: int = BATCH) -> RunSummary | None:
    """Sync the records of pending inbox items; None when nothing was pending (no run row)."""
    ids: dict[str, list[str]] = {}
    seqs: dict[str, list[int]] = {}
    for (connection, entity), flows in triggered_flows(runner.project).items():
        items = inbox.pending(connection, entity, limit)
        for flow in flows if items else ():
            ids[flow] = [item.record_id for item in items]
            seqs[flow] = [item.seq for item in items]
    if not ids:
        return None
    summary = await runner.run(triggered=ids)  # an interruption propagates: nothing is marked done
    finished = {flow.flow for flow in summary.flows if flow.status == "ok"}
    left = {seq for flow, numbers in seqs.items() if flow not in finished for seq in numbers}
    inbox.done(sorted({seq for numbers in seqs.values() for seq in numbers} - left))
    return summary
