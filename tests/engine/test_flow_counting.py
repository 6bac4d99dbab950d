"""A record counts once per run, with its final outcome; a parked version never overwrites a newer source version."""

from __future__ import annotations

from collections import Counter

from ml_connector.store import State
from tests.engine.fakeapi import FakeAPI
from tests.engine.flowkit import bodies, flow_spec, run_flow

SPEC = flow_spec({"name": "name"})
REJECTED = {"error": "name is not allowed"}


def things(*names: str) -> dict[str, list[dict[str, str]]]:
    return {"data": [{"code": f"T{i}", "name": name, "updated": "2026-03-01T10:00:00Z"}
                     for i, name in enumerate(names)]}


def parked_four(state: State) -> None:
    source = FakeAPI().on("GET", "/v2/things", 200, things("a", "b", "c", "d"))
    target = FakeAPI().on("POST", "/v2/items", 422, REJECTED)
    summary = run_flow(state, SPEC, source, target)
    assert (summary.failed, len(target.calls())) == (4, 4)
    assert len(state.pending.list(flow="things")) == 4


def test_a_full_run_counts_parked_records_it_reads_again_once() -> None:
    state = State(":memory:")
    parked_four(state)
    source = FakeAPI().on("GET", "/v2/things", 200, things("a", "b", "c", "d"))
    target = FakeAPI().on("POST", "/v2/items", 422, REJECTED)

    summary = run_flow(state, SPEC, source, target, full=True, run_id="r2")

    assert (summary.read, summary.failed, summary.retried_pending) == (4, 4, 0)
    assert sorted(b["name"] for b in bodies(target)) == ["a", "b", "c", "d"]  # each sent once
    rows = state.audit.query(run_id="r2")
    assert Counter(row["source_key"] for row in rows) == {"T0": 1, "T1": 1, "T2": 1, "T3": 1}
    assert {(row["outcome"], row["attempts"]) for row in rows} == {("failed", 2)}
    assert {p.source_key: p.attempts for p in state.pending.list(flow="things")} == {
        "T0": 2, "T1": 2, "T2": 2, "T3": 2}


def test_parked_records_the_read_does_not_meet_are_retried_once() -> None:
    state = State(":memory:")
    parked_four(state)
    source = FakeAPI().on("GET", "/v2/things", 200, {"data": []})
    target = FakeAPI().on("POST", "/v2/items", 422, REJECTED)
    summary = run_flow(state, SPEC, source, target, run_id="r2")
    assert (summary.read, summary.failed, summary.retried_pending) == (0, 4, 4)
    assert len(target.calls()) == 4
    assert len(state.audit.query(run_id="r2")) == 4


def test_the_newer_source_version_replaces_the_parked_one() -> None:
    state = State(":memory:")
    parked_four(state)
    newer = {"code": "T1", "name": "b2", "updated": "2026-03-01T11:00:00Z"}
    source = FakeAPI().on("GET", "/v2/things", 200, {"data": [newer]})
    target = FakeAPI()
    for n in range(4):
        target.on("POST", "/v2/items", 200, {"data": {"id": 10 + n}})

    summary = run_flow(state, SPEC, source, target, run_id="r2")

    names = [b["name"] for b in bodies(target)]
    assert sorted(names) == ["a", "b2", "c", "d"]  # the parked "b" is never sent: "b2" superseded it
    assert (summary.read, summary.created, summary.failed, summary.retried_pending) == (1, 4, 0, 3)
    assert state.pending.list(flow="things") == []
    assert Counter(row["source_key"] for row in state.audit.query(run_id="r2")) == {
        "T0": 1, "T1": 1, "T2": 1, "T3": 1}
