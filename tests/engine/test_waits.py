"""Waits: one parser for every wait value, a cap (`max_wait`) beyond which the flow stops, `retries` honoured."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import httpx
import pytest

from ml_connector.connection import Connection
from ml_connector.http.client import ConnectorClient
from ml_connector.http.errors import TransientError
from ml_connector.http.waits import UNITS, WaitTooLong, wait_seconds
from ml_connector.spec import load_schema, load_workspace
from ml_connector.store import State
from ml_connector.sync.runner import Runner
from tests.engine.configs import connector
from tests.engine.fakeapi import FakeAPI
from tests.engine.tiny_workspace import BASE, write_workspace

NOW = 1772452800.0  # Mon, 02 Mar 2026 12:00:00 GMT


def clock() -> float:
    return NOW


@pytest.fixture(autouse=True)
def key_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAKE_KEY", "k-123456")


@pytest.mark.parametrize(("raw", "unit", "expected"), [
    ("7", "seconds", 7.0),
    (" 2.5 ", "seconds", 2.5),
    (12, "seconds", 12.0),
    ("-3", "seconds", 0.0),
    ("Mon, 02 Mar 2026 12:00:30 GMT", "seconds", 30.0),  # Retry-After may also be an HTTP date
    ("1500", "ms", 1.5),
    (str(NOW + 40), "epoch", 40.0),
    (str(NOW - 5), "epoch", 0.0),  # already past: no wait
    (str(int((NOW + 45) * 1000)), "epoch_ms", 45.0),
    ("Mon, 02 Mar 2026 12:01:00 GMT", "http_date", 60.0),
    ("Mon, 02 Mar 2026 12:01:00 -0000", "http_date", 60.0),  # no zone given: UTC, never the local time
    ("Mon, 02 Mar 2026 11:59:00 GMT", "http_date", 0.0),
])
def test_every_wait_value_is_read_by_one_parser_against_the_given_clock(raw: Any, unit: str,
                                                                         expected: float) -> None:
    assert wait_seconds(raw, unit, clock) == pytest.approx(expected)


@pytest.mark.parametrize(("raw", "unit"), [(None, "seconds"), ("", "epoch"), ("soon", "seconds"), ("nan", "seconds"),
                                           ("inf", "ms"), ("1e400", "epoch"), ("tomorrow", "http_date"),
                                           (True, "seconds"), ([3], "seconds")])
def test_an_absent_or_unreadable_wait_is_none(raw: Any, unit: str) -> None:
    assert wait_seconds(raw, unit, clock) is None


def test_the_schema_offers_exactly_the_units_the_parser_reads() -> None:
    defs = load_schema("connector")["$defs"]
    assert defs["rule"]["properties"]["wait"]["properties"]["unit"]["enum"] == list(UNITS)
    assert defs["quota"]["properties"]["reset_unit"]["enum"] == list(UNITS)


def make_client(api: FakeAPI, spec: dict[str, Any], waits: list[float]) -> ConnectorClient:
    config = connector({"connector": "fake", "base_url": BASE + "/v2",
                        "auth": {"key": {"type": "api_key", "header": "x-key", "value": "{{ secrets.key }}"}}, **spec})

    async def sleep(seconds: float) -> None:
        waits.append(seconds)

    return ConnectorClient(Connection("fake", config, {}, {"key": "env:FAKE_KEY"}), State(":memory:").credentials,
                           transport=httpx.ASGITransport(app=api.app), sleep=sleep, clock=clock)


def test_retry_after_as_an_http_date_is_read_against_the_client_clock() -> None:
    api = FakeAPI().on("GET", "/v2/t", 429, {}, {"retry-after": "Mon, 02 Mar 2026 12:00:30 GMT"}) \
                   .on("GET", "/v2/t", 200, {})
    waits: list[float] = []
    asyncio.run(make_client(api, {}, waits).request("GET", "/t"))
    assert len(waits) == 1 and 30.0 <= waits[0] <= 30.1
    assert len(api.calls("GET", "/v2/t")) == 2


def test_a_rule_wait_in_milliseconds() -> None:
    api = FakeAPI().on("GET", "/v2/t", 429, {}, {"x-wait-ms": "1500"}).on("GET", "/v2/t", 200, {})
    waits: list[float] = []
    spec = {"responses": [{"when": {"status": 429}, "do": "rate_limited",
                           "wait": {"header": "x-wait-ms", "unit": "ms"}}]}
    asyncio.run(make_client(api, spec, waits).request("GET", "/t"))
    assert len(waits) == 1 and 1.5 <= waits[0] <= 1.6
    assert len(api.calls("GET", "/v2/t")) == 2


def test_a_wait_beyond_the_connector_max_wait_stops_with_one_clear_message() -> None:
    api = FakeAPI().on("GET", "/v2/t", 429, {"error": "daily quota used"}, {"retry-after": "3600"})
    waits: list[float] = []
    with pytest.raises(WaitTooLong) as caught:
        asyncio.run(make_client(api, {"max_wait": 60}, waits).request("GET", "/t"))
    assert str(caught.value) == ("connection fake: the API asks to wait 3600 s, more than max_wait 60 s; "
                                 "the flow stops and resumes next run")
    assert waits == [] and len(api.calls("GET", "/v2/t")) == 1


def test_backoff_never_waits_longer_than_max_wait() -> None:
    api = FakeAPI().on("GET", "/v2/t", 503, {}).on("GET", "/v2/t", 503, {}).on("GET", "/v2/t", 503, {}) \
                   .on("GET", "/v2/t", 200, {})
    waits: list[float] = []
    asyncio.run(make_client(api, {"max_wait": 1, "retries": 3}, waits).request("GET", "/t"))
    assert len(waits) == 3 and all(0 < w <= 1 for w in waits), waits  # uncapped, the third would be 1..2 s
    assert len(api.calls("GET", "/v2/t")) == 4


def test_the_connector_retries_setting_is_honoured() -> None:
    api = FakeAPI().on("GET", "/v2/t", 503, {"error": "busy"})
    waits: list[float] = []
    client = make_client(api, {"retries": 1}, waits)
    assert client.options.max_retries == 1  # the writer's per-item attempt budget reads it here
    with pytest.raises(TransientError, match="503"):
        asyncio.run(client.request("GET", "/t"))
    assert len(api.calls("GET", "/v2/t")) == 2 and len(waits) == 1  # the first try and one retry


def test_a_wait_beyond_max_wait_fails_the_flow_and_the_next_run_resumes_from_the_same_watermark(
        tmp_path: Path) -> None:
    project = load_workspace(write_workspace(tmp_path))
    state = State(":memory:")
    state.watermarks.set("things", "2020-01-01T00:00:00Z")

    api = FakeAPI().on("GET", "/v2/things", 429, {"error": "quota"}, {"retry-after": "7200"})
    summary = asyncio.run(Runner(project, state, transport=httpx.ASGITransport(app=api.app)).run())
    assert summary.status == "failed"
    assert [(f.flow, f.status, f.error) for f in summary.flows] == [
        ("things", "failed", "connection api: the API asks to wait 7200 s, more than max_wait 900 s; "
                             "the flow stops and resumes next run")]
    assert state.watermarks.get("things") == "2020-01-01T00:00:00Z"
    assert [(c["method"], c["path"], c["params"]) for c in api.calls()] == [
        ("GET", "/v2/things", {"since": "2020-01-01T00:00:00Z"})]

    record = {"id": 1, "name": "a", "updated": "2020-02-01T00:00:00Z"}
    again = FakeAPI().on("GET", "/v2/things", 200, {"data": [record]})
    summary = asyncio.run(Runner(project, state, transport=httpx.ASGITransport(app=again.app)).run())
    assert summary.status == "ok" and summary.flows[0].filtered == 1
    assert [(c["method"], c["path"], c["params"]) for c in again.calls()] == [
        ("GET", "/v2/things", {"since": "2020-01-01T00:00:00Z"})]
    assert state.watermarks.get("things") == "2020-02-01T00:00:00Z"


def test_a_workspace_connection_overrides_max_wait(tmp_path: Path) -> None:
    project = load_workspace(write_workspace(tmp_path, connection_extra=", max_wait: 30"))
    api = FakeAPI().on("GET", "/v2/things", 429, {"error": "quota"}, {"retry-after": "60"})
    summary = asyncio.run(Runner(project, State(":memory:"), transport=httpx.ASGITransport(app=api.app)).run())
    assert [f.error for f in summary.flows] == [
        "connection api: the API asks to wait 60 s, more than max_wait 30 s; the flow stops and resumes next run"]
