"""Property: whatever the collection size and page size, every paginator reads each record exactly once."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
from hypothesis import given, settings
from hypothesis import strategies as st
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from ml_connector.connection import Connection
from ml_connector.http.client import ConnectorClient
from ml_connector.http.reader import EntityReader
from ml_connector.store import State
from tests.engine import configs


def collection_app(size: int) -> Starlette:
    records = [{"id": i} for i in range(size)]

    async def by_cursor(request: Request) -> JSONResponse:
        start = int(request.query_params.get("cursor", 0))
        limit = int(request.query_params["limit"])
        end = start + limit
        return JSONResponse({"data": records[start:end], "next": str(end) if end < size else None})

    async def by_offset(request: Request) -> JSONResponse:
        start, limit = int(request.query_params["start"]), int(request.query_params["limit"])
        return JSONResponse({"data": records[start:start + limit], "more": start + limit < size})

    async def by_page(request: Request) -> JSONResponse:  # no has_more: the reader stops on a short page
        page, limit = int(request.query_params["page"]), int(request.query_params["size"])
        return JSONResponse({"rows": records[(page - 1) * limit:page * limit]})

    return Starlette(routes=[Route("/cursor", by_cursor), Route("/offset", by_offset), Route("/page", by_page)])


PAGINATORS = {
    "cursor": {"type": "cursor", "param": "cursor", "next": "next", "limit": {"param": "limit", "max": 0}},
    "offset": {"type": "offset", "param": "start", "has_more": "more", "limit": {"param": "limit", "max": 0}},
    "page": {"type": "page", "param": "page", "limit": {"param": "size", "max": 0}},
}


@settings(max_examples=40, deadline=None)
@given(size=st.integers(0, 120), limit=st.integers(1, 25), kind=st.sampled_from(sorted(PAGINATORS)))
def test_every_record_is_read_exactly_once(size: int, limit: int, kind: str) -> None:
    paginator = {**PAGINATORS[kind], "limit": {**PAGINATORS[kind]["limit"], "max": limit}}
    connector = {"connector": "c", "base_url": "http://c.test", "paginators": {"p": paginator},
                 "auth": {"none": {"type": "api_key", "header": "x-k", "value": "static-key"}}}
    client = ConnectorClient(Connection("c", configs.connector(connector)), State(":memory:").credentials,
                             transport=httpx.ASGITransport(app=collection_app(size)))
    records = "rows" if kind == "page" else "data"
    thing = configs.entity({"key": "id", "read": {"path": f"/{kind}", "records": records, "paginator": "p"}})
    reader = EntityReader(client, "thing", thing)

    async def read_all() -> list[Any]:
        return [r["id"] async for page in reader.pages() for r in page]

    assert asyncio.run(read_all()) == list(range(size))
    pages = client.stats.reads
    assert pages <= size // limit + 1
