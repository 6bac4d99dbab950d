"""The writer is one bounded loop: an attempt budget per item, no recursion, request-level errors fail once, and a
fatal error keeps what was already confirmed (issue 16, cases 6 and 7)."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from ml_connector.http.errors import FatalError, RequestError
from ml_connector.http.writer import EntityWriter, PushAborted, PushItem, PushResult
from ml_connector.store import State
from ml_connector.sync.flow import FlowContext, FlowRun, _Mapped
from tests.engine import configs
from tests.engine.fakeapi import FakeAPI
from tests.engine.test_client import API_KEY, make_client


@pytest.fixture(autouse=True)
def key_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAKE_KEY", "k-123456")


SEARCH = {"path": "/things/search", "params": {"term": "{{ match.value }}"}, "records": "data"}
BATCH = {"size": 4, "body": {"items": "{{ records }}"}}
ENTITY = {
    "key": "id",
    "write": {
        "strategy": "search_then_write",
        "search": SEARCH,
        "create": {"method": "POST", "path": "/bulk", "batch": BATCH,
                   "results": {"items": "saved", "id": "id", "key": "code"}},
        "update": {"method": "PATCH", "path": "/things/{{ target_id }}"},
    },
}


def writer(api: FakeAPI, entity: dict[str, Any], connector: dict[str, Any] | None = None,
           concurrency: int = 4) -> EntityWriter:
    client = make_client(api, connector or API_KEY, {"key": "env:FAKE_KEY"})  # max_retries=3: 4 attempts per item
    return EntityWriter(client, "thing", configs.entity(entity), match_field="code", concurrency=concurrency)


def by_key(results: list[PushResult]) -> dict[str, PushResult]:
    return {r.item.source_key: r for r in results}


def codes(api: FakeAPI, method: str = "POST") -> list[list[str]]:
    return [sorted(r["code"] for r in json.loads(c["body"])["items"]) for c in api.calls(method)]


def test_creates_against_a_target_that_always_answers_503_are_sent_once_and_parked_as_unknown() -> None:
    api = FakeAPI()
    api.on("GET", "/v2/things/search", 200, {"data": []})
    api.on("POST", "/v2/bulk", 503, {"error": "busy"})
    items = [PushItem("a", {"code": "A"}, "A"), PushItem("b", {"code": "B"}, "B")]
    results = by_key(asyncio.run(writer(api, ENTITY).push(items)))
    assert {k: (r.error, r.unknown) for k, r in results.items()} == {
        k: ("outcome unknown: POST /v2/bulk -> HTTP 503: busy", True) for k in "ab"}
    assert codes(api) == [["A", "B"]]  # a create that may have landed is never re-sent in the same run (issue 17)
    assert len(api.calls("GET")) == 2 + 2  # resolve each, then re-check each once


def test_an_update_whose_record_keeps_vanishing_is_parked_after_the_budget() -> None:
    api = FakeAPI()
    api.on("GET", "/v2/things/search", 200, {"data": [{"id": 9, "code": "A"}]})  # a stale index keeps finding 9
    api.on("PATCH", "/v2/things/9", 404, {"error": "not found"})
    [result] = asyncio.run(writer(api, ENTITY).push([PushItem("a", {"code": "A"}, "A", target_id="9")]))
    assert result.error == "gave up after 4 attempts: PATCH /v2/things/9 -> HTTP 404: not found"
    assert len(api.calls("PATCH")) == 4 and len(api.calls("GET")) == 3


REQUEST_LEVEL = {**API_KEY, "responses": [
    {"when": {"status": 400, "body": "error.code == 'UNKNOWN_OBJECT'"}, "do": "request_error",
     "message": "{{ body.error.message }}"}]}


def test_a_request_level_error_fails_the_push_once_without_splitting() -> None:
    api = FakeAPI()
    api.on("GET", "/v2/things/search", 200, {"data": []})
    api.on("POST", "/v2/bulk", 400, {"error": {"code": "UNKNOWN_OBJECT", "message": "no object type 'thing'"}})
    items = [PushItem(k, {"code": k.upper()}, k.upper()) for k in "abcd"]
    with pytest.raises(PushAborted) as caught:
        asyncio.run(writer(api, ENTITY, REQUEST_LEVEL).push(items))
    assert isinstance(caught.value.cause, RequestError)
    assert str(caught.value.cause) == "POST /v2/bulk -> HTTP 400: no object type 'thing'"
    assert caught.value.results == [] and len(api.calls("POST")) == 1


def test_a_rejected_batch_is_split_in_at_most_2n_calls() -> None:
    api = FakeAPI()
    api.on("GET", "/v2/things/search", 200, {"data": []})
    api.on("POST", "/v2/bulk", 400, {"error": "something in there is wrong"})
    items = [PushItem(k, {"code": k.upper()}, k.upper()) for k in "abcd"]
    results = by_key(asyncio.run(writer(api, ENTITY).push(items)))
    assert all(r.error == "POST /v2/bulk -> HTTP 400: something in there is wrong" for r in results.values())
    assert len(api.calls("POST")) == 2 * 4 - 1  # 4, then 2 + 2, then 1 + 1 + 1 + 1
    assert sorted(len(batch) for batch in codes(api)) == [1, 1, 1, 1, 2, 2, 4]


FATAL_403 = {**API_KEY, "responses": [{"when": {"status": 403}, "do": "fatal"}]}


def test_a_fatal_error_mid_push_still_records_what_was_confirmed() -> None:
    entity = {"key": "id", "write": {"strategy": "update_only",
                                     "update": {"method": "PATCH", "path": "/things/{{ target_id }}"}}}
    api = FakeAPI()
    api.on("PATCH", "/v2/things/1", 200, {"id": 1})
    api.on("PATCH", "/v2/things/2", 403, {"error": "this account may not write things"})
    state = State(":memory:")
    target = make_client(api, FATAL_403, {"key": "env:FAKE_KEY"})
    context = FlowContext(run_id="r1", state=state, source=None, target=target,  # type: ignore[arg-type]
                          source_entity=configs.entity({"key": "id"}), target_entity=configs.entity(entity),
                          mapping=None, known_flows={"things"})  # type: ignore[arg-type]
    run = FlowRun(configs.flow(), context)
    run._entity_writer = EntityWriter(context.target, "thing", configs.entity(entity), match_field=None,
                                      concurrency=1)
    changed = [_Mapped(f"k{n}", {"n": n}, {"n": n}, f"h{n}", target_id=str(n)) for n in (1, 2)]
    with pytest.raises(FatalError, match="may not write things"):
        asyncio.run(run._push(changed, {}))
    saved = state.id_maps.get_many("things", ["k1", "k2"])
    assert {k: (e.target_id, e.payload_hash) for k, e in saved.items()} == {"k1": ("1", "h1")}
    assert run.summary.updated == 1
