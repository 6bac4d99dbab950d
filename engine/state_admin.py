"""Managing state by hand: discard parked records, move a watermark, force a re-push of unchanged records.

Each change leaves a trace a person can find later: a run row (its mode names the action, its summary says what
changed and who changed it) and, for record-level actions, one audit row per record.
"""

from __future__ import annotations

import getpass
import json
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from ml_connector.errors import SetupError
from ml_connector.store import FAILED, AuditRow, State

NOTE_LIMIT = 4000  # characters of a discarded record kept in its audit note


class StateAdminError(SetupError):
    """A state change that cannot be made as asked (exit code 2)."""


def _who() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no user name in a container's passwd
        return "unknown"


def _admin_run(state: State, mode: str, summary: dict[str, Any], now: datetime | None = None) -> str:
    """Record a finished run row for a change made by hand; returns its id (the audit rows carry it)."""
    moment = (now or datetime.now(UTC)).astimezone(UTC)
    run_id = moment.strftime("%Y%m%dT%H%M%S") + "-" + uuid.uuid4().hex[:8]
    state.runs.start(run_id, mode)
    state.runs.finish(run_id, "ok", {"run_id": run_id, "mode": mode, "status": "ok", "by": _who(), **summary})
    return run_id


@dataclass(frozen=True)
class Discarded:
    run_id: str
    keys: list[str]


def discard_parked(state: State, flow: str, keys: list[str], *, all_failed: bool, reason: str | None) -> Discarded:
    """Remove parked records (these keys, or every failed one of the flow) for good, each with an audit row."""
    if bool(keys) == all_failed:
        raise StateAdminError("name the parked records to discard: source keys, or --all-failed (not both)")
    found = state.pending.list(flow=flow, status=FAILED if all_failed else None, keys=keys or None)
    missing = sorted(set(keys) - {p.source_key for p in found})
    if missing:
        raise StateAdminError(f"flow {flow} has no parked record with key(s) {', '.join(missing)} "
                              f"(`ml-connector parked list {flow}` shows them)")
    gone = state.pending.discard(flow, [p.source_key for p in found]) if found else []
    run_id = _admin_run(state, "parked discard", {"flow": flow, "discarded": len(gone), "reason": reason,
                                                  "keys": [p.source_key for p in gone][:100]})
    given = reason or "no reason given"
    state.audit.add(AuditRow(run_id, flow, p.source_key, None, "discard", "discarded", p.attempts, p.reason,
                             note=f"discarded by {_who()} ({given}); was {p.status}; record: "
                                  + json.dumps(p.record, default=str, sort_keys=True)[:NOTE_LIMIT])
                    for p in gone)
    return Discarded(run_id, [p.source_key for p in gone])


@dataclass(frozen=True)
class WatermarkChange:
    run_id: str
    before: str | None
    after: str | None


def reset_watermark(state: State, flow: str, to: str | None) -> WatermarkChange:
    """Move a flow's watermark to ``to`` (None: drop it, so the next run reads everything)."""
    before = state.watermarks.get(flow)
    if to is None:
        state.watermarks.reset(flow)
    else:
        if not to.strip():
            raise StateAdminError("--to needs a value in the source's own format (e.g. 2026-01-01T00:00:00Z)")
        state.watermarks.set(flow, to)
    run_id = _admin_run(state, "watermark reset", {"flow": flow, "from": before, "to": to})
    return WatermarkChange(run_id, before, to)


@dataclass(frozen=True)
class RepushMarked:
    run_id: str
    keys: list[str]


def mark_for_repush(state: State, flow: str, keys: list[str]) -> RepushMarked:
    """Make synced records (these keys, or all of the flow) look changed, so the next full read pushes them again,
    each with an audit row. A key the flow never synced is an error: there is nothing to correct."""
    missing = sorted(set(keys) - set(state.id_maps.get_many(flow, keys))) if keys else []
    if missing:
        raise StateAdminError(f"flow {flow} has not synced key(s) {', '.join(missing)}: nothing to re-push")
    marked = state.id_maps.forget_hashes(flow, keys or None)
    targets = state.id_maps.get_many(flow, marked)
    run_id = _admin_run(state, "repush", {"flow": flow, "marked": len(marked), "keys": marked[:100]})
    state.audit.add(AuditRow(run_id, flow, key, targets[key].target_id if key in targets else None, "repush", "marked",
                             note=f"marked for a forced re-push by {_who()}") for key in marked)
    return RepushMarked(run_id, marked)
