"""The Marketo sandbox against the real ``marketorestpython`` client, over real HTTP.

The client builds ``https://<munchkin>.mktorest.com`` URLs from one attribute, ``host``; pointing it at the
served sandbox (plain HTTP) is all it takes — every call it makes goes to ``self.host + path``.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
from marketorestpython.client import MarketoClient

from ml_connector.sandbox.core import ManualClock
from ml_connector.sandbox.marketo import MarketoSandbox, create_marketo_sandbox
from ml_connector.sandbox.serve import SandboxServer

T0 = 1_767_225_600.0  # 2026-01-01T00:00:00Z


@pytest.fixture()
def served() -> Iterator[tuple[MarketoSandbox, ManualClock, str]]:
    clock = ManualClock(T0)
    sandbox = create_marketo_sandbox(leads=3, clock=clock)
    server = SandboxServer()
    try:
        url = server.start("marketo", sandbox).url
        yield sandbox, clock, url
    finally:
        server.stop()


def client_for(sandbox: MarketoSandbox, url: str) -> MarketoClient:
    client = MarketoClient(sandbox.config["munchkin_id"], sandbox.config["client_id"],
                           sandbox.config["client_secret"], max_retry_time=5)
    assert client.host == f"https://{sandbox.config['munchkin_id']}.mktorest.com"
    client.host = url
    return client


def calls(sandbox: MarketoSandbox, count: int) -> list[str]:
    """The logged calls once ``count`` are in (the server logs a call just after its answer left)."""
    deadline = time.monotonic() + 5
    while len(sandbox.log.entries()) < count and time.monotonic() < deadline:
        time.sleep(0.01)
    return [f"{e.method} {e.path}" for e in sandbox.log.entries()]


def test_token_and_lead_upsert(served: tuple[MarketoSandbox, ManualClock, str]) -> None:
    sandbox, _clock, url = served
    client = client_for(sandbox, url)
    created = client.execute(method="create_update_leads", leads=[
        {"email": "new@example.com", "firstName": "Nia"}, {"email": "lead1@customer.example", "title": "CFO"}],
        action="createOrUpdate", lookupField="email")
    assert created == [{"id": 4, "status": "created"}, {"id": 1, "status": "updated"}]
    assert client.token is not None and client.token.endswith(":" + sandbox.config["pod"])
    assert client.expires_in == 3600 and client.scope == sandbox.config["api_user"]
    assert calls(sandbox, 2) == ["GET /identity/oauth/token", "POST /rest/v1/leads.json"]
    assert sandbox.store.get("leads", 1)["title"] == "CFO"  # type: ignore[index]


def test_activity_paging_with_a_paging_token(served: tuple[MarketoSandbox, ManualClock, str]) -> None:
    sandbox, clock, url = served
    client = client_for(sandbox, url)
    token = client.execute(method="get_paging_token", sinceDatetime="2026-01-01T00:00:00Z")
    for n in range(5):
        clock.advance(10)
        client.execute(method="create_update_leads", leads=[{"email": f"p{n}@example.com", "firstName": "P"}])
    clock.advance(10)
    client.execute(method="create_update_leads", leads=[{"email": "p0@example.com", "firstName": "Q"}])
    activities = client.execute(method="get_lead_activities", activityTypeIds=["12", "13"], nextPageToken=token,
                                batchSize=2)
    assert [(a["activityTypeId"], a["leadId"]) for a in activities] == [
        (12, 4), (12, 5), (12, 6), (12, 7), (12, 8), (13, 4)]
    assert calls(sandbox, 11)[-3:] == ["GET /rest/v1/activities.json"] * 3  # token, paging token, 6 upserts
    reads = [e for e in sandbox.log.entries() if e.path == "/rest/v1/activities.json"]
    assert [(e.method, e.query.count("nextPageToken="), e.query.count("batchSize=2")) for e in reads] == [
        ("GET", 1, 1)] * 3  # pages of 2, 2, 2: the last one says moreResult false
    changes = client.execute(method="get_lead_changes", fields=["firstName"], sinceDatetime="2026-01-01T00:00:55Z")
    assert [(c["activityTypeId"], c["fields"]) for c in changes] == [
        (13, [{"id": 3, "name": "firstName", "newValue": "Q", "oldValue": "P"}])]
    seeded = client.execute(method="get_lead_activities", activityTypeIds=["1", "2", "3"],
                            sinceDatetime="2025-12-31T00:00:00Z")
    assert seeded and {a["leadId"] for a in seeded} <= {1, 2, 3}


def test_bulk_lead_export(served: tuple[MarketoSandbox, ManualClock, str]) -> None:
    sandbox, clock, url = served
    client = client_for(sandbox, url)
    job: list[dict[str, Any]] = client.execute(
        method="create_leads_export_job", fields=["id", "email"],
        filters={"createdAt": {"startAt": "2025-12-31T00:00:00Z", "endAt": "2026-01-01T00:00:00Z"}})
    export_id = job[0]["exportId"]
    assert client.execute(method="enqueue_leads_export_job", job_id=export_id)[0]["status"] == "Queued"
    clock.advance(120)
    assert client.execute(method="get_leads_export_job_status", job_id=export_id)[0]["status"] == "Completed"
    content = client.execute(method="get_leads_export_job_file", job_id=export_id)
    assert content == (b"id,email\n1,lead1@customer.example\n2,lead2@customer.example\n"
                       b"3,lead3@customer.example\n")
    listed = client.execute(method="get_leads_export_jobs_list")
    assert [j["exportId"] for j in listed] == [export_id]
