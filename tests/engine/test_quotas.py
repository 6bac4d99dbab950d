"""Quota pools pace calls to the window and learn the real limit from headers (fake clock, no real waiting)."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from ml_connector.http import quotas
from ml_connector.http.quotas import Quota
from ml_connector.http.waits import WaitTooLong
from tests.engine.configs import quota


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def time(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(round(seconds, 3))
        self.now += seconds


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> FakeClock:
    fake = FakeClock()
    monkeypatch.setattr(quotas.time, "time", fake.time)
    monkeypatch.setattr(quotas.asyncio, "sleep", fake.sleep)
    return fake


def test_calls_are_spaced_so_no_window_holds_more_than_the_limit(clock: FakeClock) -> None:
    pool = Quota(quota({"window": 2, "calls": 3}))

    async def seven_calls() -> list[float]:
        sent = []
        for _ in range(7):
            async with pool:
                sent.append(clock.now)
        return sent

    sent = asyncio.run(seven_calls())
    assert sent == [1000.0, 1000.0, 1000.0, 1002.0, 1002.0, 1002.0, 1004.0]
    for index in range(len(sent) - 3):
        assert sent[index + 3] - sent[index] >= 2  # any 3 consecutive calls... the 4th waits a full window


def test_limit_header_and_empty_remaining_are_obeyed(clock: FakeClock) -> None:
    pool = Quota(quota({"window": 2, "calls": 100, "limit_header": "x-limit", "remaining_header": "x-left",
                  "reset_header": "x-reset"}))
    pool.observe(httpx.Response(200, headers={"x-limit": "2", "x-left": "5"}))
    assert pool.calls == 2
    pool.observe(httpx.Response(200, headers={"x-limit": "2", "x-left": "0", "x-reset": "7"}))

    async def one_call() -> None:
        async with pool:
            pass

    asyncio.run(one_call())
    assert clock.sleeps == [7.0]


NOW = 1772452800.0  # Mon, 02 Mar 2026 12:00:00 GMT
EMPTY = {"remaining_header": "x-left", "reset_header": "x-reset"}


async def one_call(pool: Quota) -> None:
    async with pool:
        pass


def test_a_reset_in_epoch_milliseconds_waits_until_then(clock: FakeClock) -> None:
    clock.now = NOW
    pool = Quota(quota({**EMPTY, "reset_unit": "epoch_ms"}))
    pool.observe(httpx.Response(200, headers={"x-left": "0", "x-reset": str(int((NOW + 5) * 1000))}))
    asyncio.run(one_call(pool))
    assert clock.sleeps == [5.0]


def test_a_reset_as_an_http_date_waits_until_then(clock: FakeClock) -> None:
    clock.now = NOW
    pool = Quota(quota({**EMPTY, "reset_unit": "http_date"}))
    pool.observe(httpx.Response(200, headers={"x-left": "0", "x-reset": "Mon, 02 Mar 2026 12:00:30 GMT"}))
    asyncio.run(one_call(pool))
    assert clock.sleeps == [30.0]


def test_a_reset_beyond_max_wait_stops_instead_of_sleeping_and_frees_its_slot(clock: FakeClock) -> None:
    pool = Quota(quota({**EMPTY, "concurrency": 1}), max_wait=900, label="connection c, quota default")
    pool.observe(httpx.Response(200, headers={"x-left": "0", "x-reset": "3600"}))
    for _ in range(2):  # a slot held by the stopped call would make the second one wait forever
        with pytest.raises(WaitTooLong) as caught:
            asyncio.run(asyncio.wait_for(one_call(pool), 5))
        assert str(caught.value) == ("connection c, quota default: the API asks to wait 3600 s, more than "
                                     "max_wait 900 s; the flow stops and resumes next run")
    assert clock.sleeps == []


def test_pacing_beyond_max_wait_stops_too(clock: FakeClock) -> None:
    pool = Quota(quota({"window": 3600, "calls": 1}), max_wait=60, label="connection c, quota daily")
    asyncio.run(one_call(pool))
    with pytest.raises(WaitTooLong, match="asks to wait 3600 s, more than max_wait 60 s"):
        asyncio.run(one_call(pool))
    assert clock.sleeps == []
