"""A create whose outcome is unknown is never sent again in the same run: it is parked as "outcome unknown" and
looked for in the target after the mapping's grace period, at the next run at the earliest (issue 17, case 4)."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta
from typing import Any

import httpx

from ml_connector.config.entity import EntityConfig
from ml_connector.connection import Connection
from ml_connector.http.client import ConnectorClient
from ml_connector.store import State
from ml_connector.sync.flow import FlowContext, FlowRun, FlowSummary
from ml_connector.transform.mapping import CompiledMapping
from tests.engine.configs import connector, entity, mapping
from tests.engine.fakeapi import FakeAPI
from tests.engine.flowkit import NOW, SOURCE, bodies, flow_spec

SEARCH_TARGET = entity({"key": "id", "write": {
    "strategy": "search_then_write",
    "search": {"path": "/items/search", "params": {"code": "{{ match.value }}"}, "records": "data"},
    "create": {"method": "POST", "path": "/items", "id": "data.id"},
    "update": {"method": "PATCH", "path": "/items/{{ target_id }}", "id": "data.id"}}})
BLIND_TARGET = entity({"key": "id", "write": {
    "strategy": "create_only", "create": {"method": "POST", "path": "/items", "id": "data.id"}}})
SPEC = flow_spec({"code": "code", "name": "name"}, match={"target": "code"})
A = {"code": "A", "name": "a", "updated": "2026-03-01T10:00:00Z"}
NOTHING_NEW: dict[str, Any] = {"data": []}
LOST = {"error": "gateway timeout"}


def client(api: FakeAPI, name: str) -> ConnectorClient:
    """A client with the connector's retries (3): the attempt budget a write could spend on re-sends."""
    config = connector({"connector": name, "base_url": f"http://{name}.test/v2", "retries": 3})

    async def no_sleep(seconds: float) -> None:
        raise AssertionError(f"a flow test should not wait ({seconds} s)")

    return ConnectorClient(Connection(name, config, {}, {}, None), State(":memory:").credentials,
                           transport=httpx.ASGITransport(app=api.app), sleep=no_sleep)


def run(state: State, source: FakeAPI, target: FakeAPI, *, target_entity: EntityConfig = SEARCH_TARGET,
        spec: dict[str, Any] = SPEC, now: datetime = NOW, run_id: str = "r1", full: bool = False,
        replay: list[dict[str, Any]] | None = None) -> FlowSummary:
    """One run of the flow (or a replay of these parked records) at ``now``."""
    config = mapping(spec)
    context = FlowContext(run_id=run_id, state=state, source=client(source, "src"), target=client(target, "dst"),
                          source_entity=SOURCE, target_entity=target_entity, mapping=CompiledMapping(config),
                          known_flows={config.flow}, full=full, now=lambda: now)
    flow = FlowRun(config, context)
    return asyncio.run(flow.replay(replay) if replay is not None else flow.execute())


def naive(moment: datetime) -> datetime:
    """A moment as the state stores it (UTC, without a zone)."""
    return moment.replace(tzinfo=None)


def lost_create(state: State, target_entity: EntityConfig = SEARCH_TARGET) -> None:
    """Run 1: the create of A times out (the target will apply it later); nothing shows it yet."""
    source = FakeAPI().on("GET", "/v2/things", 200, {"data": [A]})
    target = FakeAPI()
    if target_entity is SEARCH_TARGET:
        target.on("GET", "/v2/items/search", 200, NOTHING_NEW)  # resolve, then the re-check after the timeout
    target.on("POST", "/v2/items", 504, LOST)
    summary = run(state, source, target, target_entity=target_entity)
    assert len(target.calls("POST")) == 1  # never sent again in the same run
    assert (summary.status, summary.created, summary.failed) == ("ok", 0, 1)
    [parked] = state.pending.list(flow="things")
    assert parked.reason is not None and parked.reason.startswith("outcome unknown: POST /v2/items -> HTTP 504")
    assert (parked.outcome_unknown, parked.next_attempt) == (True, naive(NOW + timedelta(seconds=600)))


def test_a_create_whose_answer_is_lost_is_parked_not_sent_again_in_the_same_run() -> None:
    state = State(":memory:")
    lost_create(state)
    assert len(state.audit.query(run_id="r1", outcome="failed")) == 1


def test_the_next_run_waits_for_the_grace_period_then_finds_the_late_create_instead_of_creating_it_again() -> None:
    state = State(":memory:")
    lost_create(state)

    early = FakeAPI()  # within the grace period: the create may still land, nothing is sent or searched
    summary = run(state, FakeAPI().on("GET", "/v2/things", 200, NOTHING_NEW), early,
                  now=NOW + timedelta(seconds=60), run_id="r2")
    assert early.requests == []
    assert (summary.waiting, summary.retried_pending, summary.failed) == (1, 0, 0)
    assert state.pending.list(flow="things")[0].attempts == 1

    late = FakeAPI().on("GET", "/v2/items/search", 200, {"data": [{"id": 7, "code": "A", "name": "a"}]})
    summary = run(state, FakeAPI().on("GET", "/v2/things", 200, NOTHING_NEW), late,
                  now=NOW + timedelta(seconds=601), run_id="r3")
    assert [c["method"] for c in late.requests] == ["GET"]  # found: it landed late, no second create
    assert (summary.created, summary.retried_pending) == (1, 1)
    assert state.id_maps.get_many("things", ["A"])["A"].target_id == "7"
    assert state.pending.list(flow="things") == []


def test_a_create_the_target_never_applied_is_sent_once_after_the_grace_period() -> None:
    state = State(":memory:")
    lost_create(state)
    target = FakeAPI().on("GET", "/v2/items/search", 200, NOTHING_NEW).on("POST", "/v2/items", 201, {"data": {"id": 8}})
    summary = run(state, FakeAPI().on("GET", "/v2/things", 200, NOTHING_NEW), target,
                  now=NOW + timedelta(seconds=900), run_id="r2")
    assert [c["method"] for c in target.requests] == ["GET", "POST"]
    assert summary.created == 1 and state.pending.list(flow="things") == []


def test_the_read_meeting_the_record_again_within_the_grace_period_keeps_it_parked_with_the_newer_version() -> None:
    state = State(":memory:")
    lost_create(state)
    newer = {**A, "name": "a2", "updated": "2026-03-01T11:00:00Z"}
    target = FakeAPI()
    summary = run(state, FakeAPI().on("GET", "/v2/things", 200, {"data": [newer]}), target,
                  now=NOW + timedelta(seconds=60), run_id="r2")
    assert target.requests == []
    assert (summary.read, summary.waiting, summary.failed) == (1, 1, 0)
    [parked] = state.pending.list(flow="things")
    assert (parked.record, parked.outcome_unknown, parked.attempts) == (newer, True, 1)
    [row] = state.audit.query(run_id="r2")
    assert (row["action"], row["outcome"]) == ("hold", "parked")


def test_a_lost_create_nothing_can_look_for_waits_for_a_replay() -> None:
    state = State(":memory:")
    lost_create(state, BLIND_TARGET)
    target = FakeAPI()
    summary = run(state, FakeAPI().on("GET", "/v2/things", 200, NOTHING_NEW), target,
                  target_entity=BLIND_TARGET, now=NOW + timedelta(days=1), run_id="r2")
    assert target.requests == []  # sending it again could duplicate it: a person checks the target first
    assert summary.failed == 1
    [parked] = state.pending.list(flow="things")
    assert parked.outcome_unknown and parked.reason == (
        "outcome unknown (an earlier create may have landed) and nothing can look for it: check the target, then "
        "replay it")

    target = FakeAPI().on("POST", "/v2/items", 201, {"data": {"id": 9}})
    summary = run(state, FakeAPI(), target, target_entity=BLIND_TARGET, now=NOW + timedelta(days=1),
                  run_id="r3", replay=[parked.record])
    assert summary.created == 1 and len(target.calls("POST")) == 1
    assert state.pending.list(flow="things") == []


def test_a_late_create_found_with_an_older_version_is_updated_not_created_again() -> None:
    state = State(":memory:")
    lost_create(state)
    newer = {**A, "name": "a2", "updated": "2026-03-01T11:00:00Z"}
    target = FakeAPI().on("GET", "/v2/items/search", 200, {"data": [{"id": 7, "code": "A", "name": "a"}]})
    target.on("PATCH", "/v2/items/7", 200, {"data": {"id": 7}})
    summary = run(state, FakeAPI().on("GET", "/v2/things", 200, {"data": [newer]}), target,
                  now=NOW + timedelta(seconds=601), run_id="r2")
    assert [(c["method"], c["path"]) for c in target.requests] == [("GET", "/v2/items/search"),
                                                                   ("PATCH", "/v2/items/7")]
    assert bodies(target, "PATCH") == [{"code": "A", "name": "a2"}]
    assert (summary.created, summary.updated, summary.failed) == (0, 1, 0)
    assert state.pending.list(flow="things") == []
