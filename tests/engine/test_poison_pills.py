"""A record that fails the same way on every run is parked with a growing back-off: not retried on every run, never
blocking its flow, and still sent at once by a replay or when its source record changes (issue 17, case 12)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from ml_connector.store import State
from tests.engine.configs import entity
from tests.engine.fakeapi import FakeAPI
from tests.engine.flowkit import NOW, flow_spec
from tests.engine.test_late_writes import naive, run

TARGET = entity({"key": "id", "write": {
    "strategy": "create_only", "create": {"method": "POST", "path": "/items/{{ record.code }}", "id": "data.id"}}})
SPEC = flow_spec({"code": "code", "name": "name"}, parking={"backoff": 600, "backoff_max": 1800})
A = {"code": "A", "name": "a", "updated": "2026-03-01T10:00:00Z"}
B = {"code": "B", "name": "b", "updated": "2026-03-01T10:00:00Z"}
REJECTED = {"error": "name is not allowed"}
NOTHING_NEW: dict[str, Any] = {"data": []}


def source(*records: dict[str, Any]) -> FakeAPI:
    return FakeAPI().on("GET", "/v2/things", 200, {"data": list(records)})


def rejecting_b() -> FakeAPI:
    return FakeAPI().on("POST", "/v2/items/B", 422, REJECTED)


def parked_b(state: State, spec: dict[str, Any] = SPEC, backoff: int = 600) -> None:
    """Run 1 creates A and parks B; run 2 (5 min later) retries B once, it fails the same way: back-off starts."""
    target = FakeAPI().on("POST", "/v2/items/A", 201, {"data": {"id": 1}}).on("POST", "/v2/items/B", 422, REJECTED)
    summary = run(state, source(A, B), target, target_entity=TARGET, spec=spec)
    assert (summary.created, summary.failed) == (1, 1)
    assert state.pending.list(flow="things")[0].next_attempt is None  # a first failure is retried at the next run
    summary = run(state, source(), rejecting_b(), target_entity=TARGET, spec=spec,
                  now=NOW + timedelta(minutes=5), run_id="r2")
    assert (summary.failed, summary.retried_pending) == (1, 1)
    [parked] = state.pending.list(flow="things")
    assert (parked.attempts, parked.next_attempt) == (2, naive(NOW + timedelta(minutes=5, seconds=backoff)))


def test_a_poison_pill_is_not_retried_on_every_run_and_its_back_off_grows_to_the_cap() -> None:
    state = State(":memory:")
    parked_b(state)

    target = FakeAPI()
    summary = run(state, source(), target, target_entity=TARGET, spec=SPEC, now=NOW + timedelta(minutes=10),
                  run_id="r3")
    assert target.requests == []
    assert (summary.status, summary.waiting, summary.retried_pending, summary.failed) == ("ok", 1, 0, 0)

    for run_id, minutes, wait in (("r4", 16, 1200), ("r5", 37, 1800), ("r6", 68, 1800)):
        summary = run(state, source(), rejecting_b(), target_entity=TARGET, spec=SPEC,
                      now=NOW + timedelta(minutes=minutes), run_id=run_id)
        assert summary.failed == 1
        [parked] = state.pending.list(flow="things")
        assert parked.next_attempt == naive(NOW + timedelta(minutes=minutes, seconds=wait)), run_id


def test_a_poison_pill_never_blocks_the_rest_of_its_flow() -> None:
    state = State(":memory:")
    spec = flow_spec({"code": "code", "name": "name"})  # the default back-off: 900 s at first
    parked_b(state, spec, backoff=900)
    c = {"code": "C", "name": "c", "updated": "2026-03-01T11:00:00Z"}
    target = FakeAPI().on("POST", "/v2/items/C", 201, {"data": {"id": 3}})
    summary = run(state, source(B, c), target, target_entity=TARGET, spec=spec, full=True,
                  now=NOW + timedelta(minutes=10), run_id="r3")
    assert [call["path"] for call in target.requests] == ["/v2/items/C"]  # B, met again unchanged, waits
    assert (summary.created, summary.waiting, summary.failed) == (1, 1, 0)
    assert state.watermarks.get("things") == "2026-03-01T11:00:00Z"


def test_a_changed_source_record_or_a_replay_is_sent_at_once() -> None:
    state = State(":memory:")
    parked_b(state)
    fixed = {**B, "name": "b-fixed", "updated": "2026-03-01T11:00:00Z"}
    target = FakeAPI().on("POST", "/v2/items/B", 201, {"data": {"id": 2}})
    summary = run(state, source(fixed), target, target_entity=TARGET, spec=SPEC, now=NOW + timedelta(minutes=10),
                  run_id="r3")
    assert (summary.created, len(target.calls("POST"))) == (1, 1)

    state = State(":memory:")
    parked_b(state)
    [parked] = state.pending.list(flow="things")
    summary = run(state, FakeAPI(), rejecting_b(), target_entity=TARGET, spec=SPEC, now=NOW + timedelta(minutes=10),
                  run_id="r3", replay=[parked.record])
    assert summary.failed == 1
    [parked] = state.pending.list(flow="things")
    assert parked.next_attempt == naive(NOW + timedelta(minutes=10, seconds=1200))
