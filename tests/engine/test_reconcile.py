"""`reconcile: every <n>` makes a run re-read the whole source once the interval has passed."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from ml_connector.store import State
from ml_connector.sync.flow import FlowContext, FlowRun
from tests.engine import configs


def flow_run(state: State, spec: dict[str, Any], full: bool = False) -> FlowRun:
    thing = configs.entity({"key": "id"})
    context = FlowContext(run_id="r", state=state, source=None, target=None,  # type: ignore[arg-type]
                          source_entity=thing, target_entity=thing, mapping=None, known_flows=set(),  # type: ignore[arg-type]
                          full=full)
    return FlowRun(configs.flow(**spec), context)


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
