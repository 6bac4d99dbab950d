"""Quota pools pace calls to the window and learn the real limit from headers (fake clock, no real waiting)."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from engine.http import quotas
from engine.http.quotas import Quota


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
    pool = Quota({"window": 2, "calls": 3})

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
    pool = Quota({"window": 2, "calls": 100, "limit_header": "x-limit", "remaining_header": "x-left",
                  "reset_header": "x-reset"})
    pool.observe(httpx.Response(200, headers={"x-limit": "2", "x-left": "5"}))
    assert pool.calls == 2
    pool.observe(httpx.Response(200, headers={"x-limit": "2", "x-left": "0", "x-reset": "7"}))

    async def one_call() -> None:
        async with pool:
            pass

    asyncio.run(one_call())
    assert clock.sleeps == [7.0]
