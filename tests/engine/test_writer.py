"""Write strategies: search then write, batches with per-item errors, splitting, uncertain creates."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from ml_connector.http.writer import EntityWriter, PushItem
from tests.engine import configs
from tests.engine.fakeapi import FakeAPI
from tests.engine.test_client import API_KEY, make_client


@pytest.fixture(autouse=True)
def key_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAKE_KEY", "k-123456")


SEARCH_ENTITY = {
    "key": "id",
    "write": {
        "strategy": "search_then_write",
        "search": {"path": "/things/search", "params": {"term": "{{ match.value }}"}, "records": "data"},
        "create": {"method": "POST", "path": "/things", "id": "data.id"},
        "update": {"method": "PATCH", "path": "/things/{{ target_id }}", "id": "data.id"},
    },
}


def writer(api: FakeAPI, entity: dict[str, Any]) -> EntityWriter:
    return EntityWriter(make_client(api, API_KEY, {"key": "env:FAKE_KEY"}), "thing", configs.entity(entity),
                        match_field="code")


def test_search_then_write_creates_updates_and_refuses_ambiguity() -> None:
    api = FakeAPI()
    api.on("GET", "/v2/things/search", 200, {"data": []})
    api.on("POST", "/v2/things", 200, {"data": {"id": 11}})
    api.on("PATCH", "/v2/things/5", 200, {"data": {"id": 5}})
    w = writer(api, SEARCH_ENTITY)
    results = asyncio.run(w.push([PushItem("a", {"code": "A"}, "A"), PushItem("b", {"code": "B"}, "B", "5")]))
    by_key = {r.item.source_key: r for r in results}
    assert by_key["a"].action == "create" and by_key["a"].target_id == "11"
    assert by_key["b"].action == "update" and by_key["b"].target_id == "5"
    assert len(api.calls("GET")) == 1  # the id map already knew b: no search

    api2 = FakeAPI().on("GET", "/v2/things/search", 200, {"data": [{"id": 1, "code": "C"}, {"id": 2, "code": "C"}]})
    [result] = asyncio.run(writer(api2, SEARCH_ENTITY).push([PushItem("c", {"code": "C"}, "C")]))
    assert result.error and "2 target records match code='C'" in result.error
    assert api2.calls("POST") == []


def test_uncertain_create_searches_before_creating_again() -> None:
    api = FakeAPI()
    api.on("GET", "/v2/things/search", 200, {"data": []})
    api.on("GET", "/v2/things/search", 200, {"data": [{"id": 77, "code": "A"}]})  # it did land
    api.on("POST", "/v2/things", 502, {"error": "bad gateway"})
    [result] = asyncio.run(writer(api, SEARCH_ENTITY).push([PushItem("a", {"code": "A"}, "A")]))
    assert result.ok and result.target_id == "77"
    assert len(api.calls("POST")) == 1  # never re-posted blindly


BATCH_ENTITY: dict[str, Any] = {
    "key": "code",
    "write": {
        "strategy": "create_only",
        "create": {"method": "POST", "path": "/bulk",
                   "batch": {"size": 3, "body": {"items": "{{ records }}"}, "atomic": True},
                   "results": {"items": "saved", "id": "code", "match": "position", "errors": "errors",
                               "error_index": "index", "error_message": "{{ error.message }}"}},
    },
}


def test_atomic_batch_parks_named_failures_and_resends_the_rest() -> None:
    api = FakeAPI()
    api.on("POST", "/v2/bulk", 200, {"success": False, "saved": [], "errors": [{"index": 1, "message": "bad qty"}]})
    api.on("POST", "/v2/bulk", 200, {"success": True, "saved": [{"code": "X4"}, {"code": "X1"}, {"code": "X3"}],
                                     "errors": []})
    entity = {**BATCH_ENTITY}
    client = make_client(api, {**API_KEY, "responses": [{"when": {"body": "success == `false`"},
                                                         "do": "record_error"}]}, {"key": "env:FAKE_KEY"})
    w = EntityWriter(client, "thing", configs.entity(entity), match_field=None)
    items = [PushItem(f"k{i}", {"code": f"X{i}"}) for i in range(1, 5)]
    results = {r.item.source_key: r for r in asyncio.run(w.push(items))}
    assert results["k2"].error and "bad qty" in results["k2"].error
    assert {k: r.target_id for k, r in results.items() if r.ok} == {"k1": "X1", "k3": "X3", "k4": "X4"}
    sent = [json.loads(c["body"])["items"] for c in api.calls("POST")]
    assert [[i["code"] for i in batch] for batch in sent] == [["X1", "X2", "X3"], ["X4", "X1", "X3"]]  # full again


def test_batch_rejected_without_culprits_is_split_until_the_bad_record_is_alone() -> None:
    api = FakeAPI()
    api.on("POST", "/v2/bulk", 400, {"error": "something in there is wrong"})
    api.on("POST", "/v2/bulk", 200, {"saved": [{"code": "X1"}]})
    api.on("POST", "/v2/bulk", 400, {"error": "X3 is wrong"})
    api.on("POST", "/v2/bulk", 200, {"saved": [{"code": "X2"}]})
    api.on("POST", "/v2/bulk", 400, {"error": "X3 is wrong"})
    entity = {**BATCH_ENTITY, "write": {**BATCH_ENTITY["write"], "create": {
        **BATCH_ENTITY["write"]["create"], "batch": {"size": 3, "body": {"items": "{{ records }}"}}}}}
    w = writer(api, entity)
    results = {r.item.source_key: r for r in asyncio.run(w.push([PushItem(f"k{i}", {"code": f"X{i}"})
                                                                 for i in range(1, 4)]))}
    assert results["k1"].ok and results["k2"].ok
    assert results["k3"].error and "X3 is wrong" in results["k3"].error


def test_a_create_only_target_never_gets_a_second_create_for_a_record_it_already_holds() -> None:
    api = FakeAPI()  # no call at all: a changed record the id map knows cannot be written to a create-only entity
    w = EntityWriter(make_client(api, API_KEY, {"key": "env:FAKE_KEY"}), "thing", configs.entity(BATCH_ENTITY),
                     match_field=None)
    [result] = asyncio.run(w.push([PushItem("k1", {"code": "X1", "qty": 2}, target_id="X1")]))
    assert (result.action, result.target_id, result.error) == (
        "update", None, "thing is create-only and already holds this record (target X1): the change is not sent "
                        "(a create would duplicate it)")
    assert api.requests == []
