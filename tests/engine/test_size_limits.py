"""Bounded size and time: a response body beyond `limits.max_response_bytes` is refused as it streams in, an
attempt that outlives `limits.request_timeout` (a trickling body) is cut off, and a mapped text longer than the
mapping's `max_value_length` parks its record with the field named."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from ml_connector.connection import Connection
from ml_connector.http.client import ClientOptions, ConnectorClient, UncertainWrite
from ml_connector.http.errors import FatalError, TransientError
from ml_connector.store import State
from tests.engine import configs
from tests.engine.fakeapi import FakeAPI
from tests.engine.flowkit import bodies, flow_spec, run_flow


class Streamed(httpx.AsyncBaseTransport):
    """Answers every request with a 200 whose body arrives in chunks (no content-length), ``pause`` s apart.

    ``endless`` is sent again and again, up to 200 times per test: a client reading on past that fails the test.
    """

    def __init__(self, chunks: list[bytes] | None = None, *, endless: bytes = b"", pause: float = 0.0) -> None:
        self.chunks = chunks or []
        self.endless = endless
        self.pause = pause
        self.sent = 0
        self.requests = 0

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.requests += 1
        return httpx.Response(200, headers={"content-type": "application/json"}, stream=_Body(self))


class _Body(httpx.AsyncByteStream):
    def __init__(self, owner: Streamed) -> None:
        self.owner = owner

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for chunk in self.owner.chunks:
            self.owner.sent += 1
            yield chunk
        while self.owner.endless:
            if self.owner.sent > 200:
                raise AssertionError("the client read on past 200 chunks")
            await asyncio.sleep(self.owner.pause)
            self.owner.sent += 1
            yield self.owner.endless


def make_client(transport: httpx.AsyncBaseTransport, **limits: Any) -> ConnectorClient:
    config = configs.connector({"connector": "fake", "base_url": "http://api.test/v2", "retries": 0,
                                "limits": limits})
    return ConnectorClient(Connection("fake", config, {}, {}, None), State(":memory:").credentials,
                           transport=transport)


def test_the_connector_limits_default_from_the_schema_and_reach_the_client() -> None:
    options = ClientOptions.of(Connection("fake", configs.connector({}), {}, {}, None))
    assert (options.max_response_bytes, options.request_timeout) == (52428800, 120)
    tight = ClientOptions.of(Connection("fake", configs.connector(
        {"limits": {"max_response_bytes": 1000, "request_timeout": 5}}), {}, {}, None))
    assert (tight.max_response_bytes, tight.request_timeout) == (1000, 5)


def test_a_body_announced_larger_than_the_cap_is_refused_without_reading_it() -> None:
    api = FakeAPI().on("GET", "/v2/big", 200, {"name": "x" * 2000})
    client = make_client(httpx.ASGITransport(app=api.app), max_response_bytes=1000)
    with pytest.raises(FatalError) as failure:
        asyncio.run(client.request("GET", "/big"))
    assert str(failure.value) == ("GET /v2/big -> HTTP 200: the body is larger than 1000 bytes "
                                  "(the connector's limits.max_response_bytes)")
    assert len(api.calls()) == 1  # refused, not retried


def test_a_streamed_body_beyond_the_cap_is_refused_as_it_arrives() -> None:
    transport = Streamed([b'{"name": "'], endless=b"x" * 100)
    client = make_client(transport, max_response_bytes=1000)
    with pytest.raises(FatalError, match=r"^GET /v2/big -> HTTP 200: the body is larger than 1000 bytes"):
        asyncio.run(asyncio.wait_for(client.request("GET", "/big"), 10))
    assert (transport.requests, transport.sent) == (1, 11)  # 10 + 10 * 100 bytes > 1000: stopped there


def test_a_body_of_exactly_the_cap_is_read() -> None:
    body = json.dumps({"name": "x" * 990}).encode()
    client = make_client(Streamed([body[:500], body[500:]]), max_response_bytes=len(body))
    assert asyncio.run(client.request("GET", "/big")).body == {"name": "x" * 990}


def test_a_trickling_read_is_cut_off_at_the_request_timeout_and_retried() -> None:
    transport = Streamed([b'{"name": "'], endless=b"x", pause=0.02)
    config = configs.connector({"connector": "fake", "base_url": "http://api.test/v2", "retries": 1,
                                "limits": {"request_timeout": 0.2}})
    waits: list[float] = []

    async def sleep(seconds: float) -> None:
        waits.append(seconds)

    client = ConnectorClient(Connection("fake", config, {}, {}, None), State(":memory:").credentials,
                             transport=transport, sleep=sleep)
    started = time.monotonic()
    with pytest.raises(TransientError) as failure:
        asyncio.run(asyncio.wait_for(client.request("GET", "/slow"), 10))
    assert str(failure.value) == ("GET /v2/slow: no complete answer within 0.2 s "
                                  "(the connector's limits.request_timeout)")
    assert transport.requests == 2 and len(waits) == 1
    assert time.monotonic() - started < 2


def test_a_trickling_write_is_cut_off_and_its_outcome_is_unknown() -> None:
    transport = Streamed([b'{"id": '], endless=b"1", pause=0.02)
    client = make_client(transport, request_timeout=0.2)
    with pytest.raises(UncertainWrite, match=r"^POST /v2/items: no complete answer within 0.2 s"):
        asyncio.run(asyncio.wait_for(client.request("POST", "/items", json={"name": "a"}), 10))
    assert transport.requests == 1  # never re-sent blindly


def test_a_mapped_text_longer_than_the_cap_parks_the_record_and_the_rest_sync() -> None:
    spec = flow_spec({"name": "name", "lines": {"each": "lines", "fields": {"note": "note"}}}, max_value_length=10)
    source = FakeAPI().on("GET", "/v2/things", 200, {"data": [
        {"code": "LONG", "name": "x" * 11, "updated": "2026-03-01T10:00:00Z", "lines": []},
        {"code": "DEEP", "name": "ok", "updated": "2026-03-01T10:00:00Z", "lines": [{"note": "y" * 12}]},
        {"code": "FIT", "name": "x" * 10, "updated": "2026-03-01T10:00:00Z", "lines": [{"note": "y" * 10}]}]})
    target = FakeAPI().on("POST", "/v2/items", 200, {"data": {"id": 8}})
    state = State(":memory:")

    summary = run_flow(state, spec, source, target)

    assert (summary.status, summary.created, summary.failed) == ("ok", 1, 2)
    assert bodies(target) == [{"name": "x" * 10, "lines": [{"note": "y" * 10}]}]
    parked = {p.source_key: p.reason for p in state.pending.list(flow="things")}
    assert parked == {"LONG": "field name: a text of 11 characters is longer than max_value_length 10",
                      "DEEP": "field lines[0].note: a text of 12 characters is longer than max_value_length 10"}
