"""Run summaries say what happened: parked records left waiting are counted in the totals and named in the table."""

from __future__ import annotations

from ml_connector.report import run_table
from ml_connector.sync.flow import FlowSummary
from ml_connector.sync.runner import RunSummary


def test_waiting_records_are_totalled_and_named() -> None:
    summary = RunSummary("r1", "run", [FlowSummary("items", waiting=2, failed=1), FlowSummary("orgs", waiting=1)])
    data = summary.as_dict()
    assert data["totals"]["waiting"] == 3
    text = run_table(data)
    assert "  items: 2 parked record(s) waiting for their back-off" in text
    assert "  orgs: 1 parked record(s) waiting for their back-off" in text
    assert text.splitlines()[-1] == "run r1: partial"
