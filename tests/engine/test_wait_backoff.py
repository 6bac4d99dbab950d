"""A rule's wait that grows while the API keeps refusing (`wait: {seconds, backoff, max, jitter}`): each further
consecutive match of the same rule multiplies the wait by `backoff`, up to `max`; a success starts over; `jitter`
adds a random share (from an injectable source) so that many clients do not come back at the same moment."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest

from ml_connector.http.rules import ResponseRules
from tests.engine import configs
from tests.engine.fakeapi import FakeAPI
from tests.engine.test_client import API_KEY, make_client

LIMITED = {"status": 200, "body": "errors[0].code == '606'"}
BUSY = {"status": 200, "body": "errors[0].code == '713'"}


def rules(*specs: dict[str, Any], draws: list[float] | None = None) -> ResponseRules:
    config = configs.connector({"connector": "fake", "base_url": "http://api.test", "retries": 3, **API_KEY,
                                "responses": list(specs)})
    source = iter(draws or [])
    return ResponseRules(config.responses, clock=lambda: 0.0, random=lambda: next(source))


def answer(code: str | None) -> tuple[httpx.Response, Any]:
    body = {"success": code is None, "errors": [] if code is None else [{"code": code}]}
    return httpx.Response(200, json=body), body


def waits(engine: ResponseRules, codes: list[str | None]) -> list[tuple[str, float | None]]:
    return [(d.action, d.wait) for d in (engine.classify(*answer(code)) for code in codes)]


def test_consecutive_waits_of_one_rule_grow_by_the_factor_up_to_max_and_a_success_resets_them() -> None:
    engine = rules({"when": LIMITED, "do": "rate_limited", "wait": {"seconds": 2, "backoff": 3, "max": 30}},
                   {"when": {"status": 200, "body": "success"}, "do": "ok"})
    assert waits(engine, ["606", "606", "606", "606", None, "606"]) == [
        ("rate_limited", 2.0), ("rate_limited", 6.0), ("rate_limited", 18.0), ("rate_limited", 30.0),
        ("ok", None), ("rate_limited", 2.0)]


def test_each_rule_counts_its_own_waits() -> None:
    engine = rules({"when": LIMITED, "do": "rate_limited", "wait": {"seconds": 1, "backoff": 2}},
                   {"when": BUSY, "do": "retry", "wait": {"seconds": 5, "backoff": 2}})
    assert waits(engine, ["606", "713", "606", "713"]) == [
        ("rate_limited", 1.0), ("retry", 5.0), ("rate_limited", 2.0), ("retry", 10.0)]


def test_jitter_adds_a_random_share_of_the_wait() -> None:
    engine = rules({"when": LIMITED, "do": "rate_limited",
                    "wait": {"seconds": 10, "backoff": 2, "max": 50, "jitter": 0.5}}, draws=[0.0, 0.5, 1.0])
    assert waits(engine, ["606", "606", "606"]) == [  # 10 + 0, 20 + 5, 40 + 20 capped at max
        ("rate_limited", 10.0), ("rate_limited", 25.0), ("rate_limited", 50.0)]


def test_without_backoff_a_rule_waits_the_same_every_time() -> None:
    engine = rules({"when": LIMITED, "do": "rate_limited", "wait": {"seconds": 4}})
    assert waits(engine, ["606", "606", "606"]) == [("rate_limited", 4.0)] * 3


def test_a_header_wait_grows_too() -> None:
    engine = rules({"when": {"status": 429}, "do": "rate_limited",
                    "wait": {"header": "x-wait", "unit": "seconds", "backoff": 2}})
    first = engine.classify(httpx.Response(429, headers={"x-wait": "3"}), None)
    second = engine.classify(httpx.Response(429, headers={"x-wait": "3"}), None)
    assert (first.wait, second.wait) == (3.0, 6.0)


@pytest.fixture(autouse=True)
def key_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAKE_KEY", "k-123456")


def test_the_client_sleeps_the_growing_waits() -> None:
    api = FakeAPI()
    for _ in range(3):
        api.on("GET", "/v2/things", 200, {"success": False, "errors": [{"code": "606"}]})
    api.on("GET", "/v2/things", 200, {"success": True, "result": []})
    slept: list[float] = []
    client = make_client(api, {**API_KEY, "responses": [
        {"when": LIMITED, "do": "rate_limited", "wait": {"seconds": 1, "backoff": 2}}]},
        {"key": "env:FAKE_KEY"}, waits=slept)
    asyncio.run(client.request("GET", "/things"))
    assert [int(s) for s in slept] == [1, 2, 4]  # the client adds under 0.1 s of its own
    assert len(api.calls()) == 4


def test_a_wait_grown_past_any_number_is_infinite_not_a_crash() -> None:
    engine = rules({"when": LIMITED, "do": "rate_limited", "wait": {"seconds": 1, "backoff": 10**300, "jitter": 1}},
                   draws=[0.0, 0.0, 0.0])
    assert waits(engine, ["606", "606", "606"]) == [
        ("rate_limited", 1.0), ("rate_limited", 1e300), ("rate_limited", float("inf"))]
