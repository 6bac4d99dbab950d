"""Issue 24 (run --full within 1.5x a raw reader): the next page is read while the current one is processed.

A flow used to wait for the source to build a page, then map and diff it while the source idled; with one page in
flight the two overlap. Pages still reach the flow in order, a read error still surfaces after the pages before it
were recorded, and a flow that stops early leaves no request behind.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from ml_connector.connection import Connection
from ml_connector.http.ahead import ReadAhead
from ml_connector.http.client import ConnectorClient
from ml_connector.store import State
from ml_connector.sync.flow import FlowContext, FlowRun
from ml_connector.transform.mapping import CompiledMapping
from tests.engine.configs import connector, mapping
from tests.engine.fakeapi import FakeAPI
from tests.engine.flowkit import NOW, TARGET, flow_spec

PAGED = {"connector": "src", "base_url": "http://src.test/v2", "retries": 0,
         "paginators": {"pages": {"type": "page", "param": "page", "first": 1, "has_more": "more",
                                  "limit": {"param": "size", "max": 2}}},
         "entities": {"thing": {"key": "code", "read": {"path": "/things", "records": "data",
                                                        "paginator": "pages"}}}}


def _client(api: FakeAPI, config: Any, name: str) -> ConnectorClient:
    async def no_sleep(seconds: float) -> None:
        raise AssertionError(f"a flow test should not wait ({seconds} s)")

    return ConnectorClient(Connection(name, config, {}, {}, None), State(":memory:").credentials,
                           transport=httpx.ASGITransport(app=api.app), sleep=no_sleep)


def _run(api: FakeAPI, state: State) -> Any:
    """One flow whose source and target are the same scripted API: one request log in the order sent."""
    source = connector(PAGED)
    config = mapping(flow_spec({"name": "name"}))
    context = FlowContext(run_id="r1", state=state, source=_client(api, source, "src"),
                          target=_client(api, connector({"connector": "dst", "base_url": "http://dst.test/v2",
                                                         "retries": 0}), "dst"),
                          source_entity=source.entities["thing"], target_entity=TARGET,
                          mapping=CompiledMapping(config), known_flows={config.flow}, full=True, now=lambda: NOW)
    return asyncio.run(FlowRun(config, context).execute())


def _page(*codes: str, more: bool) -> dict[str, Any]:
    return {"data": [{"code": code, "name": f"thing {code}"} for code in codes], "more": more}


def _log(api: FakeAPI) -> list[str]:
    return [f"GET page {call['params']['page']}" if call["method"] == "GET"
            else f"POST {json.loads(call['body'])['name']}" for call in api.requests]


def test_the_next_page_is_requested_before_the_current_page_is_written() -> None:
    api = FakeAPI().on("GET", "/v2/things", 200, _page("A", "B", more=True)) \
                   .on("GET", "/v2/things", 200, _page("C", "D", more=True)) \
                   .on("GET", "/v2/things", 200, _page("E", more=False))
    for n in range(1, 6):
        api.on("POST", "/v2/items", 200, {"data": {"id": n}})

    summary = _run(api, State(":memory:"))

    assert summary.created == 5
    assert _log(api) == ["GET page 1", "GET page 2", "POST thing A", "POST thing B",
                         "GET page 3", "POST thing C", "POST thing D", "POST thing E"]


def test_a_read_error_after_a_page_surfaces_once_that_page_is_written_and_recorded() -> None:
    api = FakeAPI().on("GET", "/v2/things", 200, _page("A", "B", more=True)) \
                   .on("GET", "/v2/things", 200, {"unexpected": "body"})
    api.on("POST", "/v2/items", 200, {"data": {"id": 1}}).on("POST", "/v2/items", 200, {"data": {"id": 2}})
    state = State(":memory:")

    summary = _run(api, state)

    assert summary.status == "failed" and summary.created == 2
    assert _log(api) == ["GET page 1", "GET page 2", "POST thing A", "POST thing B"]
    assert {key: e.target_id for key, e in state.id_maps.get_many("things", ["A", "B"]).items()} == \
        {"A": "1", "B": "2"}


def test_pages_reach_the_consumer_in_order_with_the_next_one_already_asked_for() -> None:
    log: list[str] = []

    async def pages() -> AsyncIterator[int]:
        for n in (1, 2, 3):
            log.append(f"request {n}")
            await asyncio.sleep(0)
            yield n

    async def consume() -> None:
        async for page in ReadAhead(pages()):
            log.append(f"process {page}")  # CPU work: the loop is held, the request already went out

    asyncio.run(consume())

    assert log == ["request 1", "request 2", "process 1", "request 3", "process 2", "process 3"]


def test_closing_early_cancels_the_page_in_flight_and_closes_the_source() -> None:
    events: list[str] = []

    async def pages() -> AsyncIterator[int]:
        try:
            yield 1
            events.append("asked for page 2")
            await asyncio.Event().wait()  # an answer that never comes
            yield 2
        finally:
            events.append("source closed")

    async def consume() -> None:
        ahead = ReadAhead(pages())
        async for page in ahead:
            assert page == 1
            await asyncio.sleep(0)
            break
        await ahead.aclose()
        assert [task for task in asyncio.all_tasks() if task is not asyncio.current_task()] == []

    asyncio.run(consume())

    assert events == ["asked for page 2", "source closed"]


def test_a_read_error_ends_the_iteration_for_good() -> None:
    async def pages() -> AsyncIterator[int]:
        yield 1
        raise ValueError("bad page")

    async def consume() -> list[Any]:
        seen: list[Any] = []
        ahead = ReadAhead(pages())
        with pytest.raises(ValueError, match="bad page"):
            async for page in ahead:
                seen.append(page)
        seen.append(await anext(ahead, "done"))
        return seen

    assert asyncio.run(consume()) == [1, "done"]
