"""The shipped Zoho CRM connector against the Zoho sandbox in process, with the sandbox's clock in the test's hand:
channel renewal ahead of expiry, and list paging past 2,000 records by page_token (issue 20)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import httpx
import pytest

from ml_connector.events.channels import maintain_channels
from ml_connector.http.reader import EntityReader
from ml_connector.sandbox.core import Fault, ManualClock
from ml_connector.sandbox.workspace import SANDBOX_ENV, write_workspace
from ml_connector.sandbox.zoho import create_zoho_sandbox
from ml_connector.sandbox.zoho.app import ZohoSandbox
from ml_connector.store import State
from ml_connector.sync.runner import Runner
from ml_connector.workspace import Workspace

URLS = {"qad": "http://qad.test", "zoho": "http://127.0.0.1:8703"}  # in process: the hosts only pick the DC


@pytest.fixture
def world(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Workspace, State, ManualClock]]:
    for key, value in SANDBOX_ENV.items():
        monkeypatch.setenv(key, value)
    workspace = Workspace.open(write_workspace(tmp_path, URLS))
    state = workspace.state()
    try:
        yield workspace, state, ManualClock()
    finally:
        state.close()


def channels(zoho: ZohoSandbox) -> list[dict[str, Any]]:
    async def listing() -> Any:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=zoho), base_url="http://127.0.0.2") as http:
            return (await http.get("/_admin/watch/channels")).json()

    return [c for org in asyncio.run(listing()).values() for c in org]


def test_a_zoho_channel_is_renewed_a_day_before_it_expires_and_not_before(
        world: tuple[Workspace, State, ManualClock]) -> None:
    workspace, state, clock = world
    zoho = create_zoho_sandbox(clock=clock)
    transport = httpx.ASGITransport(app=zoho)

    def maintain() -> list[Any]:
        now = datetime.fromtimestamp(clock.now, UTC)
        return asyncio.run(maintain_channels(workspace.project, state, public_url="https://erp.example",
                                             now=now, transport=transport))

    start = datetime.fromtimestamp(clock.now, UTC)
    live = maintain()
    assert sorted(c.entity for c in live) == ["account", "sales_order"]
    first = {c["channel_id"]: c for c in channels(zoho)}
    week = (start + timedelta(days=7)).isoformat(timespec="seconds")
    assert {c["channel_expiry"] for c in first.values()} == {week}      # the most Zoho allows: one week
    assert {c["notify_url"] for c in first.values()} == {"https://erp.example/hooks/zoho/changes/account",
                                                         "https://erp.example/hooks/zoho/changes/sales_order"}

    zoho.log.reset()
    clock.advance(6 * 86400 - 60)  # a day and a minute left: nothing to do yet
    maintain()
    assert "POST /crm/v8/actions/watch" not in zoho.log.summary()["counts"]

    clock.advance(120)             # less than a day left: each channel renewed once, under its own id
    maintain()
    posts = [e.status for e in zoho.log.entries() if e.method == "POST" and e.path == "/crm/v8/actions/watch"]
    # six days on, the access token cached at registration has expired: refused once, renewed, then both sent
    assert posts == [401, 201, 201]
    assert zoho.log.summary()["counts"]["POST /oauth/v2/token"] == 1
    renewed = {c["channel_id"]: c for c in channels(zoho)}
    assert set(renewed) == set(first)
    later = (datetime.fromtimestamp(clock.now, UTC) + timedelta(days=7)).isoformat(timespec="seconds")
    assert {c["channel_expiry"] for c in renewed.values()} == {later}


def test_a_list_read_pages_past_two_thousand_records_by_page_token(
        world: tuple[Workspace, State, ManualClock]) -> None:
    workspace, state, clock = world
    zoho = create_zoho_sandbox(accounts=2_500, clock=clock)
    runner = Runner(workspace.project, state, transport=httpx.ASGITransport(app=zoho))
    client = runner.client("zoho")
    reader = EntityReader(client, "account", runner.entity("zoho", "account"))

    async def read() -> list[str]:
        try:
            return [r["id"] async for page in reader.pages(bulk=False) for r in page]
        finally:
            await runner.aclose()

    ids = asyncio.run(read())
    assert len(ids) == len(set(ids)) == 2_500
    lists = [e for e in zoho.log.entries() if e.path == "/crm/v8/Accounts"]
    queries = [parse_qs(e.query) for e in lists]
    assert len(lists) == 13 and all(e.status == 200 for e in lists)   # 200 per page, the API's maximum
    assert all("page" not in q and q["per_page"] == ["200"] for q in queries)
    assert "page_token" not in queries[0] and all("page_token" in q for q in queries[1:])


class _ByHost(httpx.AsyncBaseTransport):
    """QAD on its own host, Zoho on loopback hosts (its data centers): each sandbox behind one transport."""

    def __init__(self, qad: Any, zoho: Any) -> None:
        self.qad, self.zoho = httpx.ASGITransport(app=qad), httpx.ASGITransport(app=zoho)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        target = self.qad if request.url.host == "qad.test" else self.zoho
        return await target.handle_async_request(request)


def test_a_429_from_zoho_waits_and_the_batch_is_sent_again_once(
        world: tuple[Workspace, State, ManualClock]) -> None:
    from ml_connector.sandbox.qad import create_qad_sandbox

    workspace, state, _clock = world
    qad, zoho = create_qad_sandbox(customers=0, items=40), create_zoho_sandbox()
    zoho.faults.add(Fault(method="POST", path="/crm/v8/Products/upsert", status=429, times=1,
                          body={"code": "TOO_MANY_REQUESTS", "details": {}, "message": "limit exceeded",
                                "status": "error"}))
    runner = Runner(workspace.project, state, transport=_ByHost(qad, zoho))
    waits: list[float] = []

    async def sleep(seconds: float) -> None:
        waits.append(seconds)

    runner.client("zoho")._sleep = sleep   # the test's clock: no real 30 s wait
    summary = asyncio.run(runner.run(["items_to_zoho_products"]))
    flow = summary.flows[0]
    assert (flow.status, flow.created, flow.failed, flow.rate_limited) == ("ok", 40, 0, 1)
    assert len(waits) == 1 and 30 <= waits[0] <= 30.1        # the connector's wait (Zoho sends no Retry-After)
    upserts = [e.status for e in zoho.log.entries() if e.path == "/crm/v8/Products/upsert"]
    assert len(upserts) == 2 and upserts[0] == 429 and 200 <= upserts[1] < 300  # one batch, sent again once
    assert zoho.store.count("Products") == 40
