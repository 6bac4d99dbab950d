"""Generic capabilities: POST reads with a templated body, depth-capped paging, batch results matched by key."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from ml_connector.connection import Connection
from ml_connector.http.client import ConnectorClient
from ml_connector.http.reader import EntityReader
from ml_connector.http.writer import EntityWriter, PushItem
from ml_connector.store import State
from tests.engine import configs
from tests.engine.fakeapi import FakeAPI
from tests.engine.test_client import API_KEY, make_client


@pytest.fixture(autouse=True)
def key_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAKE_KEY", "k-123456")


def capped_query_api(records: list[dict[str, Any]], max_depth: int, seen: list[dict[str, Any]]) -> Starlette:
    """A query endpoint (POST) filtering on ``since`` in the body, ordered by (ts, id), refusing deep offsets."""

    async def query(request: Request) -> JSONResponse:
        body = json.loads(await request.body())
        offset, limit = int(request.query_params["offset"]), int(request.query_params["limit"])
        seen.append({"since": body.get("since"), "offset": offset})
        if offset + limit > max_depth:
            return JSONResponse({"error": f"offset capped at {max_depth}"}, status_code=400)
        rows = sorted((r for r in records if not body.get("since") or r["ts"] >= body["since"]),
                      key=lambda r: (r["ts"], r["id"]))
        page = rows[offset:offset + limit]
        return JSONResponse({"rows": page, "more": offset + limit < len(rows)})

    return Starlette(routes=[Route("/v2/query", query, methods=["POST"])])


def test_post_read_restarts_from_the_newest_value_when_paging_is_capped() -> None:
    records = [{"id": i, "ts": f"2026-01-01T00:00:{i // 3:02d}Z"} for i in range(40)]  # three records per second
    seen: list[dict[str, Any]] = []
    connector = {"connector": "c", "base_url": "http://c.test/v2", **API_KEY,
                 "paginators": {"o": {"type": "offset", "param": "offset", "has_more": "more",
                                      "limit": {"param": "limit", "max": 5}}}}
    client = ConnectorClient(Connection("c", configs.connector(connector), {}, {"key": "env:FAKE_KEY"}),
                             State(":memory:").credentials,
                             transport=httpx.ASGITransport(app=capped_query_api(records, 10, seen)))
    entity = {"key": "id", "read": {"path": "/query", "method": "POST", "records": "rows", "paginator": "o",
                                    "body": {"select": "id, ts", "since": "{{ since }}"}, "max_depth": 10,
                                    "incremental": {"field": "ts", "format": "iso"}}}
    reader = EntityReader(client, "thing", configs.entity(entity))

    async def read_all(since: str | None) -> list[int]:
        return [r["id"] async for page in reader.pages(since=since) for r in page]

    assert asyncio.run(read_all(None)) == list(range(40))  # every record once, across several queries
    assert all(call["offset"] + 5 <= 10 for call in seen)  # never asked past the cap
    assert len({call["since"] for call in seen}) > 3
    assert client.stats.reads == len(seen) and client.stats.writes == 0  # a query sent as POST is a read
    seen.clear()
    assert asyncio.run(read_all("2026-01-01T00:00:12Z")) == list(range(36, 40))
    assert seen[0]["since"] == "2026-01-01T00:00:12Z"


BULK = {
    "key": "id",
    "write": {"strategy": "upsert", "create": {
        "method": "POST", "path": "/upsert", "batch": {"size": 10, "body": {"data": "{{ records }}"}},
        "results": {"items": "saved", "id": "id", "key": "code", "errors": "failed", "error_key": "input.code",
                    "error_message": "{{ error.message }}"}}},
}


def test_batch_results_are_matched_by_key_when_the_api_reorders_and_lists_failures_apart() -> None:
    api = FakeAPI().on("POST", "/v2/upsert", 200, {
        "saved": [{"code": "C", "id": 30}, {"code": "A", "id": 10}],
        "failed": [{"input": {"code": "B"}, "message": "B is locked"}]})
    writer = EntityWriter(make_client(api, API_KEY, {"key": "env:FAKE_KEY"}), "thing", configs.entity(BULK),
                          match_field="code")
    items = [PushItem(k.lower(), {"code": k}, k) for k in "ABC"]
    results = {r.item.source_key: r for r in asyncio.run(writer.push(items))}
    assert results["a"].target_id == "10" and results["c"].target_id == "30"
    assert results["b"].error == "B is locked"
    assert [len(json.loads(c["body"])["data"]) for c in api.calls("POST")] == [3]
