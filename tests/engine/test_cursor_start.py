"""Cursor paging that starts from a token call and ends on a flag: an API whose list always hands out a next
cursor (`more: moreResult` ends it), and whose first cursor comes from a call of its own taking the read's
watermark (`start: {path, params, token, quota}`): only the paging calls' records are returned."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from ml_connector.http.errors import FatalError
from ml_connector.http.reader import EntityReader
from tests.engine.fakeapi import FakeAPI
from tests.engine.test_client import API_KEY, make_client

START = {"path": "/changes/token", "params": {"sinceDatetime": "{{ since }}"}, "token": "nextPageToken"}
PAGINATORS = {
    "flagged": {"type": "cursor", "param": "nextPageToken", "next": "nextPageToken", "more": "moreResult",
                "limit": {"param": "batchSize", "max": 3}},
    "started": {"type": "cursor", "param": "nextPageToken", "next": "nextPageToken", "more": "moreResult",
                "limit": {"param": "batchSize", "max": 3}, "start": START},
    "defaulted": {"type": "cursor", "param": "nextPageToken", "next": "nextPageToken", "more": "moreResult",
                  "limit": {"param": "batchSize", "max": 3},
                  "start": {**START, "params": {"sinceDatetime": "{{ since or '2000-01-01T00:00:00Z' }}"},
                            "quota": "tokens"}},
}
INCREMENTAL = {"field": "activityDate", "format": "%Y-%m-%dT%H:%M:%SZ"}


@pytest.fixture(autouse=True)
def key_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAKE_KEY", "k-123456")


def read_all(api: FakeAPI, paginator: str, since: str | None = None) -> list[Any]:
    read = {"path": "/changes", "records": "result", "paginator": paginator, "params": {"types": "1,12"},
            "incremental": INCREMENTAL}
    spec: dict[str, Any] = {**API_KEY, "paginators": PAGINATORS, "quotas": {"tokens": {"calls": 10, "window": 1}},
                            "entities": {"change": {"key": "id", "read": read}}}
    client = make_client(api, spec, {"key": "env:FAKE_KEY"})
    reader = EntityReader(client, "change", client.connection.connector.entities["change"])

    async def go() -> list[Any]:
        return [r["id"] async for page in reader.pages(since=since) for r in page]

    return asyncio.run(go())


def sent(api: FakeAPI) -> list[tuple[str, str, dict[str, str]]]:
    return [(c["method"], c["path"], c["params"]) for c in api.calls()]


def page(ids: list[int], token: str, more: bool) -> dict[str, Any]:
    return {"success": True, "result": [{"id": i} for i in ids], "nextPageToken": token, "moreResult": more}


def test_more_false_ends_the_read_though_a_next_cursor_is_given() -> None:
    api = FakeAPI().on("GET", "/v2/changes", 200, page([1, 2], "T2", True)) \
                   .on("GET", "/v2/changes", 200, page([3], "T3", False))
    assert read_all(api, "flagged") == [1, 2, 3]
    assert sent(api) == [("GET", "/v2/changes", {"types": "1,12", "batchSize": "3"}),
                         ("GET", "/v2/changes", {"types": "1,12", "batchSize": "3", "nextPageToken": "T2"})]


def test_the_first_cursor_comes_from_the_start_call_with_the_watermark() -> None:
    api = FakeAPI().on("GET", "/v2/changes/token", 200, {"success": True, "nextPageToken": "T1"}) \
                   .on("GET", "/v2/changes", 200, page([1, 2, 3], "T2", True)) \
                   .on("GET", "/v2/changes", 200, page([4], "T3", False))
    assert read_all(api, "started", since="2026-03-01T10:00:00+00:00") == [1, 2, 3, 4]
    assert sent(api) == [
        ("GET", "/v2/changes/token", {"sinceDatetime": "2026-03-01T10:00:00Z"}),
        ("GET", "/v2/changes", {"types": "1,12", "batchSize": "3", "nextPageToken": "T1"}),
        ("GET", "/v2/changes", {"types": "1,12", "batchSize": "3", "nextPageToken": "T2"})]


def test_a_first_read_starts_from_the_epoch() -> None:
    api = FakeAPI().on("GET", "/v2/changes/token", 200, {"success": True, "nextPageToken": "T1"}) \
                   .on("GET", "/v2/changes", 200, page([1], "T2", False))
    assert read_all(api, "started") == [1]
    assert sent(api)[0] == ("GET", "/v2/changes/token", {"sinceDatetime": "1970-01-01T00:00:00Z"})


def test_a_first_read_takes_the_template_default() -> None:
    api = FakeAPI().on("GET", "/v2/changes/token", 200, {"success": True, "nextPageToken": "T1"}) \
                   .on("GET", "/v2/changes", 200, page([], "T2", False))
    assert read_all(api, "defaulted") == []
    assert sent(api) == [("GET", "/v2/changes/token", {"sinceDatetime": "2000-01-01T00:00:00Z"}),
                         ("GET", "/v2/changes", {"types": "1,12", "batchSize": "3", "nextPageToken": "T1"})]


def test_a_start_call_without_a_token_is_an_error() -> None:
    api = FakeAPI().on("GET", "/v2/changes/token", 200, {"success": True})
    with pytest.raises(FatalError, match=r"start call GET /changes/token answered no cursor at nextPageToken"):
        read_all(api, "started", since="2026-03-01T10:00:00Z")
    assert len(api.calls()) == 1


def test_a_cursor_repeated_while_more_is_said_is_an_error_not_a_loop() -> None:
    api = FakeAPI().on("GET", "/v2/changes", 200, page([1], "T2", True)) \
                   .on("GET", "/v2/changes", 200, page([2], "T2", True))
    with pytest.raises(FatalError, match=r"the next cursor repeats the one just sent \('T2'\)"):
        read_all(api, "flagged")
    assert [c["params"].get("nextPageToken") for c in api.calls()] == [None, "T2"]


def test_more_without_a_cursor_is_an_error() -> None:
    api = FakeAPI().on("GET", "/v2/changes", 200, {"result": [{"id": 1}], "moreResult": True})
    with pytest.raises(FatalError, match=r"says there is more \(moreResult\) but gives no cursor at nextPageToken"):
        read_all(api, "flagged")
    assert len(api.calls()) == 1


def test_empty_pages_with_fresh_cursors_go_on_while_more_is_said() -> None:
    api = FakeAPI().on("GET", "/v2/changes", 200, {"success": True, "nextPageToken": "T2", "moreResult": True,
                                                   "result": []}) \
                   .on("GET", "/v2/changes", 200, {"success": True, "nextPageToken": "T3", "moreResult": True,
                                                   "result": []}) \
                   .on("GET", "/v2/changes", 200, page([1], "T4", False))
    assert read_all(api, "flagged") == [1]
    assert [c["params"].get("nextPageToken") for c in api.calls()] == [None, "T2", "T3"]
