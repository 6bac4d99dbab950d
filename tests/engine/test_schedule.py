"""Per-flow cadence from the specs: `run --due` picks exactly the flows whose interval has passed."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from ml_connector.sandbox.workspace import write_workspace
from ml_connector.store import State
from ml_connector.sync.runner import Runner
from ml_connector.sync.schedule import is_due, parse_schedule
from ml_connector.workspace import Workspace


def test_parse_schedule() -> None:
    assert parse_schedule("every 15m") == timedelta(minutes=15)
    assert parse_schedule("every 2h") == timedelta(hours=2)
    for bad in ("every 0m", "hourly", "every 5w", "every -1m"):
        with pytest.raises(ValueError):
            parse_schedule(bad)
    now = datetime(2026, 1, 1, 12, 0)
    assert is_due("every 2m", None, now)
    assert not is_due("every 2m", now - timedelta(seconds=119), now)
    assert is_due("every 2m", now - timedelta(seconds=120), now)
    assert not is_due(None, None, now)


def test_due_flows_follow_each_flows_own_schedule(tmp_path: Path) -> None:
    workspace = Workspace.open(write_workspace(tmp_path, {"qad": "http://qad.test", "pipedrive": "http://pd.test"}))
    state = State(":memory:")
    runner = Runner(workspace.project, state)
    everything = runner.select(due=True)
    assert everything == workspace.project.flow_order()  # never run: all due
    state.runs.start("r1", "run")
    for flow in everything:
        state.runs.start_flow("r1", flow)
        state.runs.finish_flow("r1", flow, "ok", {})
    now = datetime.now(UTC)
    assert runner.select(due=True, now=now + timedelta(minutes=1)) == []
    assert runner.select(due=True, now=now + timedelta(minutes=3)) == ["won_deals_to_sales_orders"]
    assert runner.select(due=True, now=now + timedelta(minutes=16)) == [
        "customers_to_organizations", "contacts_to_persons", "won_deals_to_sales_orders", "sales_orders_to_deals",
        "organizations_to_customers"]
    assert set(runner.select(due=True, now=now + timedelta(minutes=31))) == set(everything)
