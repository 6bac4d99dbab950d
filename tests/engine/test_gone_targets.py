"""A target id the mapping names (`target_id`) that no longer exists parks the record ("target record not found");
only a search_then_write flow without an explicit target id may look for or create another (issue 17, case 3)."""

from __future__ import annotations

from ml_connector.store import State
from tests.engine.configs import entity
from tests.engine.fakeapi import FakeAPI
from tests.engine.flowkit import flow_spec
from tests.engine.test_late_writes import run

NOT_FOUND = {"error": "not found"}
A = {"code": "A", "name": "a", "crm_id": "9", "updated": "2026-03-01T10:00:00Z"}
PINNED = flow_spec({"code": "code", "name": "name"}, match={"target": "code"}, target_id="crm_id")


def test_a_gone_target_id_named_by_the_mapping_parks_the_record_instead_of_creating_another() -> None:
    state = State(":memory:")
    target = FakeAPI().on("PATCH", "/v2/items/9", 404, NOT_FOUND)
    summary = run(state, FakeAPI().on("GET", "/v2/things", 200, {"data": [A]}), target, spec=PINNED)
    assert [(c["method"], c["path"]) for c in target.requests] == [("PATCH", "/v2/items/9")]  # no search, no create
    assert (summary.status, summary.created, summary.failed) == ("ok", 0, 1)
    [parked] = state.pending.list(flow="things")
    assert parked.reason == "target record not found: 9 (PATCH /v2/items/9 -> HTTP 404: not found)"


def test_a_gone_target_under_update_only_parks_the_record_as_not_found() -> None:
    state = State(":memory:")
    state.id_maps.save("things", [("A", "9", "old-hash")])
    update_only = entity({"key": "id", "write": {
        "strategy": "update_only", "update": {"method": "PATCH", "path": "/items/{{ target_id }}", "id": "data.id"}}})
    target = FakeAPI().on("PATCH", "/v2/items/9", 404, NOT_FOUND)
    summary = run(state, FakeAPI().on("GET", "/v2/things", 200, {"data": [A]}), target, target_entity=update_only,
                  spec=flow_spec({"code": "code", "name": "name"}))
    assert summary.failed == 1 and len(target.requests) == 1
    assert state.pending.list(flow="things")[0].reason == (
        "target record not found: 9 (PATCH /v2/items/9 -> HTTP 404: not found)")


def test_search_then_write_without_an_explicit_target_id_looks_for_the_record_again() -> None:
    state = State(":memory:")
    state.id_maps.save("things", [("A", "9", "old-hash")])
    target = FakeAPI().on("PATCH", "/v2/items/9", 404, NOT_FOUND)
    target.on("GET", "/v2/items/search", 200, {"data": []}).on("POST", "/v2/items", 201, {"data": {"id": 12}})
    summary = run(state, FakeAPI().on("GET", "/v2/things", 200, {"data": [A]}), target,
                  spec=flow_spec({"code": "code", "name": "name"}, match={"target": "code"}))
    assert [c["method"] for c in target.requests] == ["PATCH", "GET", "POST"]
    assert summary.created == 1 and state.id_maps.get_many("things", ["A"])["A"].target_id == "12"
