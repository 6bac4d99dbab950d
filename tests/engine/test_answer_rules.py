"""`do: ok`: an answer whose status says failure but whose body holds each item's result is read as results."""

from __future__ import annotations

import asyncio
import json

import pytest

from ml_connector.http.work import PushAborted
from ml_connector.http.writer import EntityWriter, PushItem
from tests.engine import configs
from tests.engine.fakeapi import FakeAPI
from tests.engine.test_client import API_KEY, make_client

UPSERT = {
    "key": "id",
    "write": {"strategy": "upsert", "create": {
        "method": "POST", "path": "/upsert", "batch": {"size": 10, "body": {"data": "{{ records }}"}},
        "results": {"match": "position", "items": "data", "id": "details.id", "failed": "status == 'error'",
                    "created": "action == 'insert'", "error_message": "{{ error.code }}: {{ error.message }}"}}},
}
ALL_FAILED = {"data": [{"code": "MANDATORY_NOT_FOUND", "message": "required field not found", "status": "error",
                        "details": {"api_name": "Name"}},
                       {"code": "INVALID_DATA", "message": "invalid data", "status": "error",
                        "details": {"api_name": "Price"}}]}
RULES = [{"when": {"status": 400, "body": "data"}, "do": "ok"},
         {"when": {"status": 400}, "do": "request_error"}]


@pytest.fixture(autouse=True)
def key_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAKE_KEY", "k-123456")


def push(api: FakeAPI, rules: list[dict[str, object]]) -> dict[str, str | None]:
    client = make_client(api, {**API_KEY, "responses": rules}, {"key": "env:FAKE_KEY"})
    writer = EntityWriter(client, "thing", configs.entity(UPSERT), match_field="code")
    items = [PushItem(k, {"code": k}, k) for k in "ab"]
    return {r.item.source_key: r.error for r in asyncio.run(writer.push(items))}


def test_a_batch_where_every_item_failed_is_read_item_by_item_not_split_or_failed_whole() -> None:
    api = FakeAPI().on("POST", "/v2/upsert", 400, ALL_FAILED)
    assert push(api, RULES) == {"a": "MANDATORY_NOT_FOUND: required field not found",
                                "b": "INVALID_DATA: invalid data"}
    assert [len(json.loads(c["body"])["data"]) for c in api.calls("POST")] == [2]  # one call, nothing re-sent


def test_a_rule_checks_the_body_so_a_request_level_error_stays_one() -> None:
    api = FakeAPI().on("POST", "/v2/upsert", 400, {"code": "INVALID_MODULE", "message": "bad", "status": "error"})
    with pytest.raises(PushAborted) as caught:
        push(api, RULES)
    assert str(caught.value) == "POST /v2/upsert -> HTTP 400: bad"
    assert len(api.calls("POST")) == 1  # the request itself is wrong: not split into one call per record


def read_things(api: FakeAPI, read: dict[str, object]) -> list[object]:
    from ml_connector.http.reader import EntityReader

    client = make_client(api, API_KEY, {"key": "env:FAKE_KEY"})
    reader = EntityReader(client, "thing", configs.entity({"key": "id", "read": read}))

    async def all_rows() -> list[object]:
        return [r for page in [p async for p in reader.pages()] for r in page]

    return asyncio.run(all_rows())


def test_a_status_declared_empty_with_no_body_reads_as_no_records() -> None:
    api = FakeAPI().on("GET", "/v2/things", 204, None)
    assert read_things(api, {"path": "/things", "records": "data", "empty_statuses": [204, 304]}) == []
    assert len(api.calls("GET")) == 1


def test_an_empty_body_under_any_other_status_is_an_error_not_zero_records() -> None:
    from ml_connector.http.errors import TransientError

    api = FakeAPI().on("GET", "/v2/things", 204, None)
    with pytest.raises(TransientError, match="the body is not JSON"):
        read_things(api, {"path": "/things", "records": "data"})


def fetch(api: FakeAPI, get: dict[str, object]) -> object:
    client = make_client(api, API_KEY, {"key": "env:FAKE_KEY"})
    entity = {"key": "id", "get": get, "write": UPSERT["write"]}
    writer = EntityWriter(client, "thing", configs.entity(entity), match_field="code")
    return asyncio.run(writer.fetch("77"))


def test_a_get_answered_with_a_status_the_spec_calls_gone_means_no_such_record() -> None:
    api = FakeAPI().on("GET", "/v2/things/77", 204, None)
    assert fetch(api, {"path": "/things/{{ id }}", "record": "data[0]", "gone": [204, 404]}) is None


def test_a_get_answered_204_is_not_taken_for_gone_unless_the_spec_says_so() -> None:
    from ml_connector.http.errors import TransientError

    api = FakeAPI().on("GET", "/v2/things/77", 204, None)
    with pytest.raises(TransientError):
        fetch(api, {"path": "/things/{{ id }}", "record": "data[0]"})


def test_an_incremental_read_can_send_its_watermark_as_a_header_and_read_304_as_nothing_new() -> None:
    from ml_connector.http.reader import EntityReader

    api = FakeAPI().on("GET", "/v2/things", 304, None)
    client = make_client(api, API_KEY, {"key": "env:FAKE_KEY"})
    read = {"path": "/things", "records": "data", "empty_statuses": [204, 304],
            "incremental": {"header": "If-Modified-Since", "field": "ts", "format": "%Y-%m-%dT%H:%M:%S+00:00"}}
    reader = EntityReader(client, "thing", configs.entity({"key": "id", "read": read}))

    async def rows() -> list[object]:
        return [r for page in [p async for p in reader.pages(since="2026-01-02T03:04:05Z")] for r in page]

    assert asyncio.run(rows()) == []
    call = api.calls("GET")[0]
    assert call["headers"]["if-modified-since"] == "2026-01-02T03:04:05+00:00" and call["params"] == {}


def test_a_get_read_can_carry_the_watermark_in_a_templated_parameter() -> None:
    from ml_connector.http.reader import EntityReader

    api = FakeAPI().on("GET", "/v2/query", 200, {"records": [{"Id": "a", "ts": "2026-01-03T00:00:00Z"}]})
    client = make_client(api, API_KEY, {"key": "env:FAKE_KEY"})
    q = "SELECT Id FROM T{% if since %} WHERE ts > {{ since }}{% endif %} ORDER BY ts"
    read = {"path": "/query", "records": "records", "params": {"q": q},
            "incremental": {"field": "ts", "format": "%Y-%m-%dT%H:%M:%SZ"}}
    reader = EntityReader(client, "thing", configs.entity({"key": "Id", "read": read}))

    async def rows(since: str | None) -> list[object]:
        return [r for page in [p async for p in reader.pages(since=since)] for r in page]

    asyncio.run(rows(None))
    asyncio.run(rows("2026-01-02T00:00:00Z"))
    assert [c["params"] for c in api.calls("GET")] == [
        {"q": "SELECT Id FROM T ORDER BY ts"}, {"q": "SELECT Id FROM T WHERE ts > 2026-01-02T00:00:00Z ORDER BY ts"}]
