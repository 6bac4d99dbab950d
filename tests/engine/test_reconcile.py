"""`reconcile: every <n>` makes a run re-read the whole source once the interval has passed."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from engine.store import State
from engine.sync.flow import FlowContext, FlowRun


def flow_run(state: State, spec: dict[str, Any], full: bool = False) -> FlowRun:
    context = FlowContext(run_id="r", state=state, source=None, target=None, source_entity={},  # type: ignore[arg-type]
                          target_entity={}, mapping=None, known_flows=set(), full=full)  # type: ignore[arg-type]
    return FlowRun(spec, context)


def test_full_read_is_due_by_interval_or_when_forced() -> None:
    state = State(":memory:")
    spec = {"flow": "f", "reconcile": "every 1d"}
    assert flow_run(state, spec)._full_read_due()  # never read in full
    state.watermarks.full_read_done("f")
    assert not flow_run(state, spec)._full_read_due()
    assert flow_run(state, spec, full=True)._full_read_due()
    state.db.execute("UPDATE full_reads SET finished_at = finished_at - ?", [timedelta(days=1, seconds=1)])
    assert flow_run(state, spec)._full_read_due()
    assert not flow_run(state, {"flow": "g"})._full_read_due()  # no reconcile: incremental only
