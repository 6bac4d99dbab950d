"""A `link_only` target: records are matched to target records that already exist and linked (the id map lookups
read); nothing is ever written, and a record whose match finds nothing is parked until the record appears, e.g.
a store's SKUs mapped onto an ERP item master that flows must not change."""

from __future__ import annotations

from ml_connector.store import State
from tests.engine.configs import entity
from tests.engine.fakeapi import FakeAPI
from tests.engine.flowkit import flow_spec
from tests.engine.test_late_writes import run

LINK_TARGET = entity({"key": "id", "write": {
    "strategy": "link_only",
    "search": {"path": "/items/search", "params": {"code": "{{ match.value }}"}, "records": "data"}}})
SPEC = flow_spec({"code": "code"}, match={"target": "code"})
A = {"code": "A", "name": "a", "updated": "2026-03-01T10:00:00Z"}
B = {"code": "B", "name": "b", "updated": "2026-03-01T10:00:01Z"}


def test_a_found_record_is_linked_and_nothing_is_written() -> None:
    state = State(":memory:")
    target = FakeAPI().on("GET", "/v2/items/search", 200, {"data": [{"id": 7, "code": "A"}]})
    summary = run(state, FakeAPI().on("GET", "/v2/things", 200, {"data": [A]}), target,
                  target_entity=LINK_TARGET, spec=SPEC)
    assert [(c["method"], c["path"], c["params"]) for c in target.requests] == [
        ("GET", "/v2/items/search", {"code": "A"})]
    assert (summary.status, summary.linked, summary.created, summary.updated, summary.api_writes) == (
        "ok", 1, 0, 0, 0)
    assert state.id_maps.get_many("things", ["A"])["A"].target_id == "7"
    [row] = state.audit.query(flow="things", source_key="A")
    assert (row["action"], row["outcome"], row["target_id"]) == ("link", "ok", "7")


def test_a_record_the_target_does_not_have_is_parked_and_links_once_it_appears() -> None:
    state = State(":memory:")
    target = FakeAPI().on("GET", "/v2/items/search", 200, {"data": []})
    summary = run(state, FakeAPI().on("GET", "/v2/things", 200, {"data": [B]}), target,
                  target_entity=LINK_TARGET, spec=SPEC)
    assert (summary.linked, summary.failed) == (0, 1)
    assert [c["method"] for c in target.requests] == ["GET"]          # never a create
    [parked] = state.pending.list(flow="things")
    assert parked.reason == "no item with code='B' in the target (this flow only links to existing records)"

    appeared = FakeAPI().on("GET", "/v2/items/search", 200, {"data": [{"id": 8, "code": "B"}]})
    summary = run(state, FakeAPI().on("GET", "/v2/things", 200, {"data": []}), appeared,
                  target_entity=LINK_TARGET, spec=SPEC, run_id="r2")
    assert (summary.linked, summary.failed) == (1, 0)
    assert state.id_maps.get_many("things", ["B"])["B"].target_id == "8"
    assert state.pending.list(flow="things") == []


def test_a_linked_record_that_changes_stays_linked_without_a_call() -> None:
    state = State(":memory:")
    state.id_maps.save("things", [("A", "7", "old-hash")])
    target = FakeAPI()
    summary = run(state, FakeAPI().on("GET", "/v2/things", 200, {"data": [A]}), target,
                  target_entity=LINK_TARGET, spec=SPEC)
    assert target.requests == [] and (summary.linked, summary.failed) == (1, 0)


def test_link_only_needs_a_search() -> None:
    import pytest

    from ml_connector.spec import SpecError
    with pytest.raises(SpecError, match="search"):
        entity({"key": "id", "write": {"strategy": "link_only"}})
