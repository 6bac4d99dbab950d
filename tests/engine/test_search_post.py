"""Search by POST (issue 18, case 1): a templated JSON body, a "not found" rule, its own quota pool, sent as a read."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from ml_connector.http.writer import EntityWriter, PushItem, PushResult
from ml_connector.spec import load_specs
from tests.engine import configs
from tests.engine.fakeapi import FakeAPI
from tests.engine.test_client import API_KEY, make_client


@pytest.fixture(autouse=True)
def key_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAKE_KEY", "k-123456")


FILTER = {"filterGroups": [{"filters": [{"propertyName": "{{ match.field }}", "operator": "EQ",
                                         "value": "{{ match.value }}"}]}], "limit": 2}
SEARCH = {"method": "POST", "path": "/things/search", "body": FILTER, "records": "results"}


def entity(**search: Any) -> dict[str, Any]:
    return {"key": "id", "write": {
        "strategy": "search_then_write",
        "search": {**SEARCH, **search},
        "create": {"method": "POST", "path": "/things", "id": "id"},
        "update": {"method": "PATCH", "path": "/things/{{ target_id }}", "id": "id"}}}


QUOTAS = {"quotas": {"default": {"remaining_header": "x-left", "reset_header": "x-reset"},
                     "search": {"remaining_header": "x-left", "reset_header": "x-reset"}}}


def push(api: FakeAPI, spec: dict[str, Any], items: list[PushItem], **client: Any) -> list[PushResult]:
    writer = EntityWriter(make_client(api, {**API_KEY, **client}, {"key": "env:FAKE_KEY"}), "thing",
                          configs.entity(spec, **client), match_field="email")
    return asyncio.run(writer.push(items))


def sent(api: FakeAPI) -> list[tuple[str, str, Any]]:
    return [(r["method"], r["path"], json.loads(r["body"]) if r["body"] else None) for r in api.requests]


def body_for(value: str) -> dict[str, Any]:
    return {"filterGroups": [{"filters": [{"propertyName": "email", "operator": "EQ", "value": value}]}], "limit": 2}


def test_a_post_search_sends_its_templated_body_and_updates_the_exact_hit() -> None:
    api = FakeAPI()
    api.on("POST", "/v2/things/search", 200, {"total": 2, "results": [{"id": 8, "email": "A@x.test"},
                                                                      {"id": 9, "email": "a@x.test"}]})
    api.on("PATCH", "/v2/things/9", 200, {"id": 9})
    [result] = push(api, entity(), [PushItem("k1", {"email": "a@x.test"}, "a@x.test")])
    assert (result.action, result.target_id, result.error) == ("update", "9", None)
    assert sent(api) == [("POST", "/v2/things/search", body_for("a@x.test")),
                         ("PATCH", "/v2/things/9", {"email": "a@x.test"})]


def test_a_post_search_is_a_read_retried_on_a_5xx_like_a_get() -> None:
    api = FakeAPI()
    api.on("POST", "/v2/things/search", 503, {"error": "busy"})
    api.on("POST", "/v2/things/search", 200, {"results": []})
    api.on("POST", "/v2/things", 201, {"id": 12})
    writer = EntityWriter(make_client(api, API_KEY, {"key": "env:FAKE_KEY"}), "thing", configs.entity(entity()),
                          match_field="email")
    [result] = asyncio.run(writer.push([PushItem("k1", {"email": "b@x.test"}, "b@x.test")]))
    assert (result.action, result.target_id, result.error) == ("create", "12", None)
    assert sent(api) == [("POST", "/v2/things/search", body_for("b@x.test")),
                         ("POST", "/v2/things/search", body_for("b@x.test")),
                         ("POST", "/v2/things", {"email": "b@x.test"})]
    assert (writer.client.stats.reads, writer.client.stats.writes) == (2, 1)


def test_a_body_rule_or_a_status_means_zero_hits_not_an_error() -> None:
    api = FakeAPI()  # "total 0" comes without a records list at all: the rule says it is no hit
    api.on("POST", "/v2/things/search", 200, {"total": 0})
    api.on("POST", "/v2/things", 201, {"id": 13})
    [result] = push(api, entity(not_found_body="total == `0`"), [PushItem("k1", {"email": "c@x.test"}, "c@x.test")])
    assert (result.action, result.target_id, result.error) == ("create", "13", None)
    assert sent(api) == [("POST", "/v2/things/search", body_for("c@x.test")),
                         ("POST", "/v2/things", {"email": "c@x.test"})]

    api = FakeAPI()  # the same rule read on an error answer; a status listed in not_found too
    api.on("POST", "/v2/things/search", 400, {"code": "NO_MATCH"})
    api.on("POST", "/v2/things/search", 404, {"message": "nothing"})
    api.on("POST", "/v2/things", 201, {"id": 14})
    api.on("POST", "/v2/things", 201, {"id": 15})
    results = push(api, entity(not_found=[404], not_found_body="code == 'NO_MATCH'"),
                   [PushItem("k1", {"email": "d@x.test"}, "d@x.test")])
    results += push(api, entity(not_found=[404], not_found_body="code == 'NO_MATCH'"),
                    [PushItem("k2", {"email": "e@x.test"}, "e@x.test")])
    assert [(r.action, r.target_id, r.error) for r in results] == [("create", "14", None), ("create", "15", None)]
    assert [m for m, _, _ in sent(api)] == ["POST"] * 4


def test_an_answer_the_rule_does_not_cover_is_still_an_error() -> None:
    api = FakeAPI().on("POST", "/v2/things/search", 400, {"code": "BAD_FILTER"})
    [result] = push(api, entity(not_found_body="code == 'NO_MATCH'"), [PushItem("k1", {"email": "f@x.test"},
                                                                               "f@x.test")])
    assert result.error is not None and "HTTP 400" in result.error
    assert sent(api) == [("POST", "/v2/things/search", body_for("f@x.test"))]


def test_a_post_search_spends_its_own_quota_pool() -> None:
    api = FakeAPI()
    api.on("POST", "/v2/things/search", 200, {"results": []}, {"x-left": "0", "x-reset": "30"})
    api.on("POST", "/v2/things", 201, {"id": 16})
    writer = EntityWriter(make_client(api, {**API_KEY, **QUOTAS}, {"key": "env:FAKE_KEY"}), "thing",
                          configs.entity(entity(quota="search"), **QUOTAS), match_field="email")
    [result] = asyncio.run(writer.push([PushItem("k1", {"email": "g@x.test"}, "g@x.test")]))
    assert (result.action, result.target_id) == ("create", "16")
    client = writer.client
    assert [name for name, pool in client.quotas.items() if pool.blocked_until] == ["search"]
    assert sent(api) == [("POST", "/v2/things/search", body_for("g@x.test")),
                         ("POST", "/v2/things", {"email": "g@x.test"})]


def test_a_create_of_unknown_outcome_is_rechecked_through_the_post_search() -> None:
    api = FakeAPI()
    api.on("POST", "/v2/things/search", 200, {"results": []})
    api.on("POST", "/v2/things/search", 200, {"results": [{"id": 77, "email": "h@x.test"}]})  # it did land
    api.on("POST", "/v2/things", 502, {"error": "bad gateway"})
    [result] = push(api, entity(), [PushItem("k1", {"email": "h@x.test"}, "h@x.test")])
    assert (result.action, result.target_id, result.error) == ("create", "77", None)
    assert sent(api) == [("POST", "/v2/things/search", body_for("h@x.test")),
                         ("POST", "/v2/things", {"email": "h@x.test"}),
                         ("POST", "/v2/things/search", body_for("h@x.test"))]


def test_a_create_left_unknown_by_an_earlier_run_is_looked_for_through_the_post_search() -> None:
    api = FakeAPI().on("POST", "/v2/things/search", 200, {"results": []}).on("POST", "/v2/things", 201, {"id": 78})
    [result] = push(api, entity(), [PushItem("k1", {"email": "i@x.test"}, "i@x.test", unknown_create=True)])
    assert (result.action, result.target_id, result.error) == ("create", "78", None)
    assert sent(api) == [("POST", "/v2/things/search", body_for("i@x.test")),
                         ("POST", "/v2/things", {"email": "i@x.test"})]


CONNECTOR = """\
connector: shop
base_url: https://api.shop.test
auth: {key: {type: api_key, header: x-key, value: k}}
quotas: {default: {concurrency: 4}}
entities:
  thing:
    key: id
    write:
      strategy: search_then_write
      search:
        method: GET
        path: /things/search
        body: {q: "{{ match.value }}"}
        quota: searches
      create: {method: POST, path: /things}
      update: {method: PATCH, path: "/things/{{ target_id }}"}
"""


def test_validate_refuses_a_body_on_a_get_search_and_an_unknown_pool(tmp_path: Path) -> None:
    path = tmp_path / "shop.yaml"
    path.write_text(CONNECTOR)
    _, problems = load_specs([path])
    assert [str(p) for p in problems] == [
        f"{path}:13: entities.thing.write.search.body: a GET search sends no body (use method: POST)",
        f"{path}:14: entities.thing.write.search.quota: unknown quota 'searches' (known: default)",
    ]
