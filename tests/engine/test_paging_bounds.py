"""Paging always ends: a cursor handed out again, a page that repeats an earlier one, or more pages than the
connector's `limits.max_pages` stops the read with an error naming the endpoint."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest

from ml_connector.connection import Connection
from ml_connector.http.catalog import FieldCatalog
from ml_connector.http.client import ConnectorClient
from ml_connector.http.errors import FatalError
from ml_connector.http.reader import EntityReader
from ml_connector.store import State
from tests.engine import configs
from tests.engine.fakeapi import FakeAPI

PAGINATORS = {
    "cursor": {"type": "cursor", "param": "cursor", "next": "next", "limit": {"param": "limit", "max": 2}},
    "offset": {"type": "offset", "param": "start", "limit": {"param": "limit", "max": 2}, "has_more": "more"},
}


class Budget(httpx.AsyncBaseTransport):
    """The scripted API behind a call budget: a read that never ends fails the test instead of hanging it."""

    def __init__(self, api: FakeAPI, calls: int = 50) -> None:
        self.inner = httpx.ASGITransport(app=api.app)
        self.left = calls

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.left -= 1
        if self.left < 0:
            raise AssertionError("the read went on past 50 calls")
        return await self.inner.handle_async_request(request)


def make_client(api: FakeAPI, entity: dict[str, Any], **limits: Any) -> ConnectorClient:
    config = configs.connector({"connector": "fake", "base_url": "http://api.test/v2", "retries": 0,
                                "paginators": PAGINATORS, "limits": limits, "entities": {"thing": entity}})
    return ConnectorClient(Connection("fake", config, {}, {}, None), State(":memory:").credentials,
                           transport=Budget(api))


def read_all(api: FakeAPI, paginator: str = "cursor", expand: tuple[str, ...] = (),
             entity: dict[str, Any] | None = None, **limits: Any) -> list[dict[str, Any]]:
    spec = entity or {"key": "id", "read": {"path": "/things", "records": "data", "paginator": paginator}}
    client = make_client(api, spec, **limits)
    reader = EntityReader(client, "thing", client.connection.connector.entities["thing"])

    async def go() -> list[dict[str, Any]]:
        return [record async for page in reader.pages(expand=expand) for record in page]

    return asyncio.run(go())


def page(ids: list[int], cursor: str | None = None) -> dict[str, Any]:
    return {"data": [{"id": i} for i in ids], "next": cursor}


def test_a_cursor_handed_out_again_stops_the_read() -> None:  # A, B, A, B ...
    api = FakeAPI().on("GET", "/v2/things", 200, page([1, 2], "A")).on("GET", "/v2/things", 200, page([3, 4], "B")) \
                   .on("GET", "/v2/things", 200, page([5, 6], "A"))
    with pytest.raises(FatalError) as failure:
        read_all(api)
    assert str(failure.value) == ("fake.thing: GET /things: paging does not end: page 3 leads back to a page "
                                  "already asked for")
    assert [c["params"].get("cursor") for c in api.calls()] == [None, "A", "B"]


def test_a_fresh_cursor_with_the_same_page_stops_the_read() -> None:
    api = FakeAPI().on("GET", "/v2/things", 200, page([1, 2], "c1")).on("GET", "/v2/things", 200, page([1, 2], "c2"))
    with pytest.raises(FatalError, match=r"^fake.thing: GET /things: paging does not end: page 2 repeats page 1$"):
        read_all(api)
    assert len(api.calls()) == 2


def test_fresh_cursors_with_empty_pages_stop_the_read() -> None:
    api = FakeAPI().on("GET", "/v2/things", 200, page([1, 2], "c1")).on("GET", "/v2/things", 200, page([], "c2")) \
                   .on("GET", "/v2/things", 200, page([], "c3"))
    with pytest.raises(FatalError, match=r"^fake.thing: GET /things: paging does not end: page 3 repeats page 2$"):
        read_all(api)
    assert len(api.calls()) == 3


def test_an_offset_read_whose_server_always_says_more_and_ignores_the_offset_stops() -> None:
    api = FakeAPI().on("GET", "/v2/things", 200, {"data": [{"id": 1}, {"id": 2}], "more": True})
    with pytest.raises(FatalError, match=r"^fake.thing: GET /things: paging does not end: page 2 repeats page 1$"):
        read_all(api, "offset")
    assert [c["params"]["start"] for c in api.calls()] == ["0", "2"]


def test_a_read_that_wants_more_pages_than_allowed_stops_naming_the_endpoint() -> None:
    api = FakeAPI()
    for n in range(3):
        api.on("GET", "/v2/things", 200, page([2 * n, 2 * n + 1], f"c{n + 1}"))
    with pytest.raises(FatalError) as failure:
        read_all(api, max_pages=3)
    assert str(failure.value) == ("fake.thing: GET /things: paging does not end: more than 3 pages "
                                  "(the connector's limits.max_pages)")
    assert len(api.calls()) == 3


def test_a_read_of_exactly_the_page_cap_ends_normally() -> None:
    api = FakeAPI().on("GET", "/v2/things", 200, page([1, 2], "c1")).on("GET", "/v2/things", 200, page([3, 4], "c2")) \
                   .on("GET", "/v2/things", 200, page([5]))
    assert [r["id"] for r in read_all(api, max_pages=3)] == [1, 2, 3, 4, 5]


def test_an_expansion_whose_cursors_repeat_stops() -> None:
    api = FakeAPI().on("GET", "/v2/things", 200, page([1])) \
                   .on("GET", "/v2/parts", 200, {"data": [{"thing_id": 1, "n": 1}], "next": "A"}) \
                   .on("GET", "/v2/parts", 200, {"data": [{"thing_id": 1, "n": 2}], "next": "B"}) \
                   .on("GET", "/v2/parts", 200, {"data": [{"thing_id": 1, "n": 3}], "next": "A"})
    entity = {"key": "id", "read": {"path": "/things", "records": "data", "paginator": "cursor"},
              "expand": {"parts": {"path": "/parts", "records": "data", "paginator": "cursor",
                                   "parent_key": "thing_id"}}}
    with pytest.raises(FatalError, match=r"^fake.thing: GET /parts: paging does not end: page 3 leads back"):
        read_all(api, expand=("parts",), entity=entity)
    assert len(api.calls("GET", "/v2/parts")) == 3


def test_a_field_catalog_that_pages_forever_stops() -> None:
    api = FakeAPI().on("GET", "/v2/fields", 200, {"data": [{"key": "a", "name": "A"}], "more": True})
    entity = {"key": "id", "custom_fields": {"object": "custom", "catalog": {
        "path": "/fields", "records": "data", "key": "key", "label": "name", "paginator": "offset"}}}
    client = make_client(api, entity)
    custom = client.connection.connector.entities["thing"].custom_fields
    assert custom is not None
    with pytest.raises(FatalError, match=r"^fake.thing: GET /fields: paging does not end: page 2 repeats page 1$"):
        asyncio.run(FieldCatalog.load(client, "thing", custom))
    assert len(api.calls()) == 2
