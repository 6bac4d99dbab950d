"""Quota pools shared through Redis (issue 25): every worker on one credential counts against one window.

A real redis-server (tests/redis_server.py). The shared window runs on an injected clock passed to the store, so
pacing is counted exactly without real waiting; one test runs two threads on the server's own clock.
"""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
from click.testing import CliRunner

from ml_connector.cli import main
from ml_connector.connection import Connection
from ml_connector.http.client import ConnectorClient
from ml_connector.http.quotas import Quota
from ml_connector.http.shared_quota import (
    SETTING,
    SharedQuotas,
    SharedQuotaSettings,
    SharedQuotaUnavailable,
    credential_identity,
    shared_quotas_for,
)
from ml_connector.http.waits import WaitTooLong
from ml_connector.store import State
from tests.engine import configs
from tests.engine.fakeapi import FakeAPI
from tests.engine.tiny_workspace import write_workspace
from tests.redis_server import fresh_prefix, redis_url

__all__ = ["redis_url"]  # the session fixture, used by name

WINDOW, CALLS = 2.0, 3


class Clock:
    """One wall clock for every worker of a test: a sleep moves it on (the workers take turns, never overlap)."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(round(seconds, 3))
        self.now += seconds


def store(url: str, clock: Clock | None, *, tenant: str = "acme", prefix: str | None = None) -> SharedQuotas:
    return SharedQuotas(url, tenant=tenant, prefix=prefix or fresh_prefix(), clock=clock)


def worker(shared: SharedQuotas, clock: Clock, *, connection: str = "pipedrive", identity: str = "cred-1",
           pool: str = "default", config: dict[str, Any] | None = None, max_wait: float = 60) -> Quota:
    """One worker's pool: its own Quota object (own process in real life) on the shared store."""
    return Quota(configs.quota(config or {"window": WINDOW, "calls": CALLS}), max_wait=max_wait, label="pool",
                 clock=clock, sleep=clock.sleep, shared=shared.pool(connection, identity, pool))


async def call(pool: Quota, clock: Clock) -> float:
    async with pool:
        return clock.now


def test_two_workers_on_one_credential_together_never_exceed_the_window(redis_url: str) -> None:
    clock = Clock()
    shared = store(redis_url, clock)
    one, two = worker(shared, clock), worker(shared, clock)

    async def turns() -> list[float]:
        return [await call(one if n % 2 == 0 else two, clock) for n in range(20)]

    sent = asyncio.run(turns())
    # alone, each would send 3 per window (6 together): shared, the two send 3 per window between them
    assert sent == [1000.0] * 3 + [1002.0] * 3 + [1004.0] * 3 + [1006.0] * 3 + [1008.0] * 3 + [1010.0] * 3 + \
        [1012.0] * 2
    for index in range(len(sent) - CALLS):
        assert sent[index + CALLS] - sent[index] >= WINDOW
    assert clock.sleeps == [2.0] * 6


def test_unshared_pools_would_each_spend_the_whole_window() -> None:
    """The control: the same two workers without the store send twice the limit (what sharing prevents)."""
    clock = Clock()
    pools = [Quota(configs.quota({"window": WINDOW, "calls": CALLS}), clock=clock, sleep=clock.sleep)
             for _ in range(2)]

    async def turns() -> list[float]:
        return [await call(pools[n % 2], clock) for n in range(6)]

    assert asyncio.run(turns()) == [1000.0] * 6


def test_a_learnt_lower_limit_holds_for_every_worker(redis_url: str) -> None:
    clock = Clock()
    shared = store(redis_url, clock)
    one, two = worker(shared, clock), worker(shared, clock)

    async def run() -> list[float]:
        sent = [await call(one, clock), await call(one, clock), await call(one, clock)]
        two.observe(httpx.Response(200, headers={}))  # says nothing: two keeps the spec's 3
        two.calls = 2  # two learnt from its last answer that the plan allows 2: it waits until one call is left
        sent.append(await call(two, clock))
        return sent

    assert asyncio.run(run()) == [1000.0, 1000.0, 1000.0, 1002.0]


def test_a_pause_announced_to_one_worker_blocks_the_other_until_the_reset(redis_url: str) -> None:
    clock = Clock()
    shared = store(redis_url, clock)
    config = {"window": WINDOW, "calls": 100, "remaining_header": "x-left", "reset_header": "x-reset"}
    one, two = worker(shared, clock, config=config), worker(shared, clock, config=config)

    async def run() -> list[float]:
        first = await call(one, clock)
        one.observe(httpx.Response(200, headers={"x-left": "0", "x-reset": "7"}))
        await one.tell_others()
        return [first, await call(two, clock)]

    assert asyncio.run(run()) == [1000.0, 1007.0]
    assert clock.sleeps == [7.0]


def test_a_429_seen_by_one_worker_blocks_the_other_until_its_reset(redis_url: str) -> None:
    clock = Clock()
    shared = store(redis_url, clock)
    one, two = worker(shared, clock), worker(shared, clock)

    async def run() -> float:
        await call(one, clock)
        await one.tell_others(5.0)  # the wait the 429's rule read (Retry-After)
        await one.tell_others(2.0)  # a shorter wait learnt later never shortens the pause (max of writers)
        return await call(two, clock)

    assert asyncio.run(run()) == 1005.0
    assert clock.sleeps == [5.0]


def test_a_shared_pause_longer_than_max_wait_stops_the_flow(redis_url: str) -> None:
    clock = Clock()
    shared = store(redis_url, clock)
    one, two = worker(shared, clock), worker(shared, clock, max_wait=3)

    async def run() -> None:
        await one.tell_others(30.0)
        await call(two, clock)

    with pytest.raises(WaitTooLong, match="30 s, more than max_wait 3"):
        asyncio.run(run())


def test_different_credentials_do_not_share(redis_url: str) -> None:
    clock = Clock()
    shared = store(redis_url, clock)
    one, other = worker(shared, clock, identity="cred-1"), worker(shared, clock, identity="cred-2")

    async def run() -> list[float]:
        return [await call(one, clock) for _ in range(3)] + [await call(other, clock) for _ in range(3)]

    assert asyncio.run(run()) == [1000.0] * 6
    assert clock.sleeps == []


def test_two_tenants_with_the_same_connection_name_do_not_share(redis_url: str) -> None:
    clock = Clock()
    prefix = fresh_prefix()
    tenant_a = store(redis_url, clock, tenant="tenant-a", prefix=prefix)
    tenant_b = store(redis_url, clock, tenant="tenant-b", prefix=prefix)
    one, other = worker(tenant_a, clock), worker(tenant_b, clock)  # same connection, identity and pool names

    async def run() -> list[float]:
        sent = [await call(one, clock) for _ in range(3)] + [await call(other, clock) for _ in range(3)]
        await one.tell_others(9.0)
        return [*sent, await call(other, clock)]

    assert asyncio.run(run()) == [1000.0] * 6 + [1002.0]  # b's own window is full; a's pause is not b's
    assert clock.sleeps == [2.0]


def test_pools_of_one_connection_do_not_share(redis_url: str) -> None:
    clock = Clock()
    shared = store(redis_url, clock)
    default, search = worker(shared, clock, pool="default"), worker(shared, clock, pool="search")

    async def run() -> list[float]:
        return [await call(default, clock) for _ in range(3)] + [await call(search, clock) for _ in range(3)]

    assert asyncio.run(run()) == [1000.0] * 6


def test_two_threads_on_the_server_clock_never_exceed_the_window(redis_url: str) -> None:
    """Real concurrency, real time: admissions are stamped by the server's clock, the same one that trims."""
    shared = SharedQuotas(redis_url, tenant="acme", prefix=fresh_prefix())
    window, calls, seconds = 0.3, 4, 1.5
    admitted: list[float] = []
    lock = threading.Lock()

    def run_worker() -> None:
        pool = Quota(configs.quota({"window": window, "calls": calls, "concurrency": 2}),
                     shared=shared.pool("pipedrive", "cred-1", "default"))
        assert pool.shared is not None

        async def spend() -> None:
            end = time.monotonic() + seconds

            async def one() -> None:
                while time.monotonic() < end:
                    async with pool:
                        assert pool.shared is not None and pool.shared.last_admitted is not None
                        with lock:
                            admitted.append(pool.shared.last_admitted)

            await asyncio.gather(one(), one())

        asyncio.run(spend())

    threads = [threading.Thread(target=run_worker) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    admitted.sort()
    for index in range(len(admitted) - calls):
        assert admitted[index + calls] - admitted[index] >= window, admitted[index:index + calls + 1]
    assert len(admitted) >= calls * (int(seconds / window) - 2), len(admitted)  # the quota is used, not only kept


def test_an_unreachable_store_is_an_error_naming_the_setting_never_unshared_calls() -> None:
    shared = SharedQuotas("redis://127.0.0.1:1/0", tenant="acme", prefix=fresh_prefix(), clock=Clock())
    pool = worker(shared, Clock())

    with pytest.raises(SharedQuotaUnavailable) as caught:
        asyncio.run(call(pool, Clock()))
    message = str(caught.value)
    assert message.startswith(f"{SETTING}: cannot reach the shared quota store at redis://127.0.0.1:1/0")
    assert "no call is made" in message


def test_settings_from_the_workspace() -> None:
    assert SharedQuotaSettings.of(None) is None
    assert SharedQuotaSettings.of("redis://h:6379/0") == SharedQuotaSettings("redis://h:6379/0")
    assert SharedQuotaSettings.of({"redis": "redis://h:6379/2", "password": "env:REDIS_PASSWORD",
                                   "tenant": "acme"}) == \
        SharedQuotaSettings("redis://h:6379/2", password="env:REDIS_PASSWORD", tenant="acme")
    with pytest.raises(SharedQuotaUnavailable, match=f"{SETTING}: put the password in {SETTING}.password"):
        SharedQuotaSettings.of("redis://:hunter2@h:6379/0")


def test_the_credential_identity_names_no_secret_and_follows_the_references(monkeypatch: pytest.MonkeyPatch) \
        -> None:
    monkeypatch.setenv("FAKE_KEY", "k-secret-123456")
    base = {"connector": "fake", "auth": "key", "base_url": "http://api.test/v2"}
    one = credential_identity(**base, secret_refs={"key": "env:FAKE_KEY"})
    assert one == credential_identity(**base, secret_refs={"key": "env:FAKE_KEY"})
    assert one != credential_identity(**base, secret_refs={"key": "env:OTHER_KEY"})
    moved = {**base, "base_url": "http://other.test/v2"}
    assert one != credential_identity(**moved, secret_refs={"key": "env:FAKE_KEY"})
    assert "k-secret" not in one and len(one) == 16


API_KEY = {"auth": {"key": {"type": "api_key", "header": "x-key", "value": "{{ secrets.key }}"}}}
POOLS = {"quotas": {"default": {"window": 10, "calls": 100, "remaining_header": "x-left", "reset_header": "x-reset"}}}


def client(api: FakeAPI, shared: SharedQuotas, clock: Clock, waits: list[float]) -> ConnectorClient:
    config = configs.connector({"connector": "fake", "base_url": "http://api.test/v2", "retries": 3,
                                **API_KEY, **POOLS})
    connection = Connection("api", config, {}, {"key": "env:FAKE_KEY"}, None)

    async def sleep(seconds: float) -> None:
        waits.append(round(seconds, 1))
        clock.now += seconds

    return ConnectorClient(connection, State(":memory:").credentials, transport=httpx.ASGITransport(app=api.app),
                           sleep=sleep, clock=clock, shared_quotas=shared)


def test_a_429_answered_to_one_client_makes_the_other_wait_before_its_call(redis_url: str,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAKE_KEY", "k-secret-123456")
    api = FakeAPI()
    api.on("GET", "/v2/things", 429, {"error": "slow down"}, {"Retry-After": "6"})
    api.on("GET", "/v2/things", 200, {"data": []})
    clock = Clock()
    shared = store(redis_url, clock)
    waits_one: list[float] = []
    waits_two: list[float] = []
    one, two = client(api, shared, clock, waits_one), client(api, shared, clock, waits_two)

    async def run() -> None:
        with pytest.raises(Exception, match="rate limited"):
            await one._once("GET", "/things", None, None, one.default_quota, True, True)
        await two.request("GET", "/things")
        await one.aclose()
        await two.aclose()

    asyncio.run(run())
    assert waits_two == [6.0]  # two never met the 429 itself: the pause one learnt held it back
    assert [r["path"] for r in api.requests] == ["/v2/things", "/v2/things"]
    keys = redis.Redis.from_url(redis_url).keys("*")
    assert keys and all(b"k-secret" not in key for key in keys)


def test_the_cli_says_in_one_line_that_the_store_cannot_be_reached(tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAKE_KEY", "k-123456")
    workspace = write_workspace(tmp_path)
    workspace.write_text(workspace.read_text() + "quotas_shared: {redis: 'redis://127.0.0.1:1/0', tenant: acme}\n")
    result = CliRunner().invoke(main, ["run", "-w", str(workspace)])
    assert "Traceback" not in result.output
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("ml-connector: quotas_shared: cannot reach the shared quota store at "
                               "redis://127.0.0.1:1/0"), lines
    assert result.exit_code == 3


class Spec:
    def __init__(self, data: dict[str, Any]) -> None:
        self.data = data


def test_a_workspace_without_the_setting_keeps_pools_in_process_and_one_with_it_gets_its_tenant() -> None:
    assert shared_quotas_for(Spec({"connections": {}}), None) is None
    named = shared_quotas_for(Spec({SETTING: {"redis": "redis://h:6379/0", "tenant": "acme"}}), None)
    assert named is not None and named.tenant == "acme"
    by_schema = shared_quotas_for(Spec({SETTING: "redis://h:6379/0",
                                        "state": {"postgresql": "postgresql://u@h/db", "schema": "tenant_b"}}), None)
    assert by_schema is not None and by_schema.tenant == "tenant_b"  # the tenant's own PostgreSQL schema
    assert shared_quotas_for(Spec({SETTING: {"redis": "redis://h:6379/0", "tenant": "acme"}}), None) is named


def test_a_password_reference_is_resolved_and_never_shown(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REDIS_PW", "pw-secret-42")
    shared = shared_quotas_for(Spec({SETTING: {"redis": "redis://127.0.0.1:1/0", "password": "env:REDIS_PW"}}), None)
    assert shared is not None and shared.password == "pw-secret-42"
    with pytest.raises(SharedQuotaUnavailable) as caught:
        shared.check()
    assert "pw-secret-42" not in str(caught.value)
    monkeypatch.delenv("REDIS_PW")
    with pytest.raises(SharedQuotaUnavailable, match="quotas_shared.password: env:REDIS_UNSET is not set"):
        shared_quotas_for(Spec({SETTING: {"redis": "redis://h:6379/0", "password": "env:REDIS_UNSET"}}), None)


def test_a_store_lost_after_an_answer_keeps_the_answer_and_stops_the_next_call(caplog: pytest.LogCaptureFixture) \
        -> None:
    """The call was made (a write may be confirmed): telling the others fails quietly; no further call starts."""
    clock = Clock()
    pool = worker(SharedQuotas("redis://127.0.0.1:1/0", prefix=fresh_prefix(), clock=clock), clock)
    asyncio.run(pool.tell_others(5.0))
    assert "quotas_shared: cannot reach the shared quota store" in caplog.text
    with pytest.raises(SharedQuotaUnavailable):
        asyncio.run(call(pool, clock))


def test_a_password_in_the_url_is_a_validation_error_at_its_line(tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAKE_KEY", "k-123456")
    workspace = write_workspace(tmp_path)
    workspace.write_text(workspace.read_text() + "quotas_shared: 'redis://:hunter2@127.0.0.1:6379/0'\n")
    result = CliRunner().invoke(main, ["validate", "-w", str(workspace)])
    assert result.exit_code == 1, result.output
    assert f"{workspace}:5: quotas_shared: does not match any allowed form" in result.stdout, result.stdout
    assert "hunter2" not in result.output
