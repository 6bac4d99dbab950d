"""Rate windows without a reset header (issue 18, case 4): the API says how many calls remain, the spec says how long
the window is; at zero the pool waits until the window has passed since the first call it counted (fake clock)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import pytest

from ml_connector.http.quotas import Quota
from ml_connector.spec import load_specs
from tests.engine.configs import quota
from tests.engine.fakeapi import FakeAPI
from tests.engine.test_client import API_KEY, make_client


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def time(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(round(seconds, 3))
        self.now += seconds


WINDOW = {"remaining_header": "x-left", "window": 10}


def pool_of(spec: dict[str, object], clock: FakeClock) -> Quota:
    return Quota(quota(spec), clock=clock.time, sleep=clock.sleep)


def calls(pool: Quota, clock: FakeClock, answers: list[tuple[float, dict[str, str]]]) -> list[float]:
    """One call per answer: it starts ``gap`` seconds after the previous answer and is answered 0.5 s later with
    ``headers``; the times the calls were sent."""
    async def run() -> list[float]:
        sent = []
        for gap, headers in answers:
            clock.now += gap
            async with pool:
                sent.append(clock.now)
                clock.now += 0.5
            pool.observe(httpx.Response(200, headers=headers))
        return sent
    return asyncio.run(run())


def test_at_zero_remaining_the_pool_waits_until_the_window_has_passed_since_the_first_counted_call() -> None:
    clock = FakeClock()
    pool = pool_of(WINDOW, clock)
    sent = calls(pool, clock, [(0, {"x-left": "2"}), (2.5, {"x-left": "1"}), (0.5, {"x-left": "0"}), (0, {})])
    assert sent == [1000.0, 1003.0, 1004.0, 1010.5]  # the first answer (1000.5) + 10 s
    assert clock.sleeps == [6.0]


def test_a_count_that_rises_starts_a_new_window() -> None:
    clock = FakeClock()
    clock.now = 1009.0
    pool = pool_of(WINDOW, clock)
    answers = [(0, {"x-left": "1"}),  # the end of an earlier window
               (0.5, {"x-left": "2"}),  # a new one: counted from this answer (1010.5)
               (0.5, {"x-left": "1"}), (0.5, {"x-left": "0"}), (0, {})]
    sent = calls(pool, clock, answers)
    assert sent == [1009.0, 1010.0, 1011.0, 1012.0, 1020.5]
    assert clock.sleeps == [8.0]


def test_a_window_that_began_too_long_ago_to_explain_the_zero_waits_a_whole_window() -> None:
    clock = FakeClock()  # other clients spent the window: it began after our first answer, we do not know when
    pool = pool_of(WINDOW, clock)
    sent = calls(pool, clock, [(0, {"x-left": "5"}), (19.5, {"x-left": "0"}), (0, {})])
    assert sent == [1000.0, 1020.0, 1030.5]
    assert clock.sleeps == [10.0]


def test_a_declared_reset_header_that_is_missing_falls_back_to_the_window_else_to_a_short_pause() -> None:
    clock = FakeClock()
    pool = pool_of({**WINDOW, "reset_header": "x-reset"}, clock)
    assert calls(pool, clock, [(0, {"x-left": "0"}), (0, {})]) == [1000.0, 1010.5]
    no_window = FakeClock()
    pool = pool_of({"remaining_header": "x-left", "reset_header": "x-reset"}, no_window)
    assert calls(pool, no_window, [(0, {"x-left": "0"}), (0, {})]) == [1000.0, 1001.5]


def test_a_reset_header_wins_over_the_window() -> None:
    clock = FakeClock()
    pool = pool_of({**WINDOW, "reset_header": "x-reset", "reset_unit": "ms"}, clock)
    assert calls(pool, clock, [(0, {"x-left": "0", "x-reset": "2500"}), (0, {})]) == [1000.0, 1003.0]
    assert clock.sleeps == [2.5]


def test_the_client_waits_out_the_window_between_exact_calls(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAKE_KEY", "k-123456")
    api = FakeAPI()
    for left in ("1", "0", "1"):
        api.on("GET", "/v2/things", 200, {"data": []}, {"x-ratelimit-remaining": left})
    spec = {**API_KEY, "quotas": {"default": {"remaining_header": "x-ratelimit-remaining", "window": 10}}}
    client = make_client(api, spec, {"key": "env:FAKE_KEY"})
    clock = FakeClock()
    client.default_quota = client.quotas["default"] = Quota(client.connection.quotas()["default"], clock=clock.time,
                                                             sleep=clock.sleep)
    waits = []
    for _ in range(3):
        asyncio.run(client.request("GET", "/things"))
        waits.append(list(clock.sleeps))
    assert waits == [[], [], [10.0]]  # nothing left after the second: the third waits out the window
    assert [(r["method"], r["path"]) for r in api.requests] == [("GET", "/v2/things")] * 3


CONNECTOR = """\
connector: shop
base_url: https://api.shop.test
auth: {key: {type: api_key, header: x-key, value: k}}
quotas:
  default: {remaining_header: x-left, limit_header: x-max, window: 10}
  search:
    remaining_header: x-left
entities: {thing: {key: id}}
"""


def test_validate_wants_a_reset_header_or_a_window_with_a_remaining_header(tmp_path: Path) -> None:
    path = tmp_path / "shop.yaml"
    path.write_text(CONNECTOR)
    _, problems = load_specs([path])
    assert [str(p) for p in problems] == [f"{path}:6: quotas.search: needs one of reset_header or window"]
