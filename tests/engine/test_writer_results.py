"""A write counts only when the answer confirms it; upserts tell created from updated (issue 16, cases 1 and 9)."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from ml_connector.http.writer import EntityWriter, PushItem, PushResult
from tests.engine import configs
from tests.engine.fakeapi import FakeAPI
from tests.engine.test_client import API_KEY, make_client


@pytest.fixture(autouse=True)
def key_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAKE_KEY", "k-123456")


def push(api: FakeAPI, entity: dict[str, Any], items: list[PushItem], match_field: str | None = "code"
         ) -> dict[str, PushResult]:
    writer = EntityWriter(make_client(api, API_KEY, {"key": "env:FAKE_KEY"}), "thing", configs.entity(entity),
                          match_field=match_field)
    return {r.item.source_key: r for r in asyncio.run(writer.push(items))}


def sent(api: FakeAPI, method: str, field: str = "id") -> list[list[Any]]:
    return [[record[field] for record in json.loads(call["body"])["items"]] for call in api.calls(method)]


# A batch update answered 207: results confirm ids, failures name *target* ids (a list per error).
BATCH_UPDATE = {
    "key": "id",
    "write": {"strategy": "update_only", "update": {
        "method": "PATCH", "path": "/things", "batch": {"size": 10, "body": {"items": "{{ records }}"}},
        "body": {"id": "{{ target_id }}", "name": "{{ record.name }}"},
        "results": {"items": "data", "id": "id", "match": "id", "errors": "errors", "error_id": "context.ids",
                    "error_message": "{{ error.message }}"}}},
}


def test_a_batch_update_counts_only_the_items_its_answer_confirms() -> None:
    api = FakeAPI().on("PATCH", "/v2/things", 207, {
        "data": [{"id": "1"}], "errors": [{"message": "record is locked", "context": {"ids": ["3"]}}]})
    items = [PushItem(f"k{n}", {"name": f"new {n}"}, target_id=str(n)) for n in (1, 2, 3)]
    results = push(api, BATCH_UPDATE, items)
    assert results["k1"].ok and results["k1"].action == "update" and results["k1"].target_id == "1"
    assert results["k3"].error == "record is locked"  # failure named by the target id
    assert results["k2"].error == "outcome unknown: the response does not mention it"  # no get: cannot re-read
    assert sent(api, "PATCH") == [["1", "2", "3"]]


def test_an_unmentioned_update_is_read_back_and_sent_again_only_if_it_did_not_land() -> None:
    entity = {**BATCH_UPDATE, "get": {"path": "/things/{{ id }}", "record": "data"}}
    api = FakeAPI()
    api.on("PATCH", "/v2/things", 200, {"data": [{"id": "1"}]})  # says nothing about 2 and 3
    api.on("PATCH", "/v2/things", 200, {"data": [{"id": "2"}]})
    api.on("GET", "/v2/things/2", 200, {"data": {"id": "2", "name": "old 2"}})  # did not land: send again
    api.on("GET", "/v2/things/3", 200, {"data": {"id": "3", "name": "new 3", "extra": 1}})  # landed
    items = [PushItem(f"k{n}", {"name": f"new {n}"}, target_id=str(n)) for n in (1, 2, 3)]
    results = push(api, entity, items)
    assert {k: (r.target_id, r.error, r.item.attempts) for k, r in results.items()} == {
        "k1": ("1", None, 1), "k2": ("2", None, 2), "k3": ("3", None, 1)}
    assert sent(api, "PATCH") == [["1", "2", "3"], ["2"]]
    assert len(api.calls("GET")) == 2


SEARCH = {"path": "/things/search", "params": {"term": "{{ match.value }}"}, "records": "data"}


def test_an_unmentioned_create_is_rechecked_not_resent_and_not_counted_blindly() -> None:
    entity = {"key": "id", "write": {
        "strategy": "search_then_write", "search": SEARCH,
        "create": {"method": "POST", "path": "/things", "batch": {"size": 10, "body": {"items": "{{ records }}"}},
                   "results": {"items": "saved", "id": "id", "key": "code"}},
        "update": {"method": "PATCH", "path": "/things/{{ target_id }}"}}}
    api = FakeAPI()
    api.on("GET", "/v2/things/search", 200, {"data": []})
    api.on("GET", "/v2/things/search", 200, {"data": []})
    api.on("GET", "/v2/things/search", 200, {"data": [{"id": 22, "code": "B"}]})  # the re-check finds B
    api.on("POST", "/v2/things", 200, {"saved": [{"code": "A", "id": 21}]})
    results = push(api, entity, [PushItem("a", {"code": "A"}, "A"), PushItem("b", {"code": "B"}, "B")])
    assert {k: (r.action, r.target_id, r.error) for k, r in results.items()} == {
        "a": ("create", "21", None), "b": ("create", "22", None)}
    assert len(api.calls("POST")) == 1
    assert [c["params"]["term"] for c in api.calls("GET")][-1] == "B"


def test_position_matching_needs_one_result_per_record() -> None:
    entity = {"key": "id", "write": {"strategy": "create_only", "create": {
        "method": "POST", "path": "/things", "batch": {"size": 10, "body": {"items": "{{ records }}"}},
        "results": {"items": "saved", "id": "id", "match": "position"}}}}
    api = FakeAPI().on("POST", "/v2/things", 200, {"saved": [{"id": 1}]})  # which of the two is it?
    results = push(api, entity, [PushItem("a", {"code": "A"}), PushItem("b", {"code": "B"})], match_field=None)
    assert {k: r.error for k, r in results.items()} == {
        k: "outcome unknown: the response lists 1 results for 2 records (results.match: position needs one each)"
        for k in "ab"}


def test_a_single_upsert_reports_updated_when_the_status_says_so() -> None:
    entity = {"key": "id", "write": {"strategy": "upsert", "create": {
        "method": "PUT", "path": "/things/{{ record.code }}", "id": "data.id", "created": {"status": [201]}}}}
    api = FakeAPI()
    api.on("PUT", "/v2/things/A", 201, {"data": {"id": 1}})
    api.on("PUT", "/v2/things/B", 200, {"data": {"id": 2}})
    results = push(api, entity, [PushItem("a", {"code": "A"}, "A"), PushItem("b", {"code": "B"}, "B")])
    assert {k: (r.action, r.target_id) for k, r in results.items()} == {"a": ("create", "1"), "b": ("update", "2")}


def test_a_batch_upsert_reads_created_or_updated_per_item() -> None:
    entity = {"key": "id", "write": {"strategy": "upsert", "create": {
        "method": "POST", "path": "/things/upsert", "batch": {"size": 10, "body": {"items": "{{ records }}"}},
        "results": {"items": "data", "id": "id", "key": "code", "created": "created"}}}}
    api = FakeAPI().on("POST", "/v2/things/upsert", 200, {"data": [
        {"code": "B", "id": 2, "created": False}, {"code": "A", "id": 1, "created": True}]})
    results = push(api, entity, [PushItem("a", {"code": "A"}, "A"), PushItem("b", {"code": "B"}, "B")])
    assert {k: (r.action, r.target_id) for k, r in results.items()} == {"a": ("create", "1"), "b": ("update", "2")}


SINGLE_UPDATE = {
    "key": "id",
    "get": {"path": "/things/{{ id }}", "record": "data"},
    "write": {"strategy": "update_only",
              "update": {"method": "PATCH", "path": "/things/{{ target_id }}", "id": "data.id"}},
}


@pytest.mark.parametrize("answer", [{"success": True}, "<html><h1>502 Bad Gateway</h1></html>", None])
def test_a_single_update_whose_answer_lacks_the_declared_id_is_read_back_not_counted(answer: Any) -> None:
    api = FakeAPI()
    api.on("PATCH", "/v2/things/5", 200, answer)  # a 200 that confirms nothing (a proxy's page, no data)
    api.on("PATCH", "/v2/things/5", 200, {"data": {"id": 5}})
    api.on("GET", "/v2/things/5", 200, {"data": {"id": 5, "name": "old"}})  # it did not land: send again
    results = push(api, SINGLE_UPDATE, [PushItem("k", {"name": "new"}, target_id="5")])
    assert (results["k"].target_id, results["k"].error, results["k"].item.attempts) == ("5", None, 2)
    assert [(c["method"], c["path"]) for c in api.requests] == [
        ("PATCH", "/v2/things/5"), ("GET", "/v2/things/5"), ("PATCH", "/v2/things/5")]


def test_a_single_create_whose_answer_lacks_the_id_is_an_unknown_outcome_not_a_failure() -> None:
    entity = {"key": "id", "write": {
        "strategy": "search_then_write", "search": SEARCH,
        "create": {"method": "POST", "path": "/things", "id": "data.id"},
        "update": {"method": "PATCH", "path": "/things/{{ target_id }}", "id": "data.id"}}}
    api = FakeAPI()
    api.on("GET", "/v2/things/search", 200, {"data": []})
    api.on("GET", "/v2/things/search", 200, {"data": [{"id": 8, "code": "A"}]})  # it did land
    api.on("POST", "/v2/things", 200, {"success": True})
    results = push(api, entity, [PushItem("a", {"code": "A"}, "A")])
    assert (results["a"].action, results["a"].target_id, results["a"].error) == ("create", "8", None)
    assert len(api.calls("POST")) == 1
