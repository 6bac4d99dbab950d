"""Bulk jobs over date windows (`read.bulk.windows`): an API that exports at most N days per job (Marketo's
createdAt filter, 31 days) reads a long history as one job per window, oldest first, the last ending now."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

import pytest

from ml_connector.http.errors import FatalError
from ml_connector.http.jobs import BulkRead
from tests.engine.fakeapi import FakeAPI
from tests.engine.test_bulk_jobs import BULK, Harness, flat, log, status, zipped
from tests.engine.test_bulk_jobs import created as created_answer


@pytest.fixture(autouse=True)
def key_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAKE_KEY", "k-123456")


NOW = datetime(2026, 3, 5, tzinfo=UTC).timestamp()
WINDOW_BODY = {"filter": {"createdAt": {"startAt": "{{ window.start }}", "endAt": "{{ window.end }}"}}}


def windowed(start: str, **extra: Any) -> dict[str, Any]:
    bulk = {**BULK, "create": {**BULK["create"], "body": WINDOW_BODY}, "windows": {"days": 31, "start": start, **extra}}
    del bulk["next"]
    return bulk


def read(harness: Harness, now: float = NOW) -> list[list[dict[str, Any]]]:
    assert harness.config.read is not None and harness.config.read.bulk is not None
    job = BulkRead(harness.client, "fake.thing", harness.config.read.bulk, harness.config.fields,
                   sleep=harness.sleep, clock=harness.clock, now=lambda: now)

    async def go() -> list[list[dict[str, Any]]]:
        return [page async for page in job.pages()]

    return asyncio.run(go())


def script(api: FakeAPI, jobs: int) -> FakeAPI:
    for number in range(1, jobs + 1):
        job = f"J{number}"
        api.on("POST", "/v2/bulk/read", 201, created_answer(job)) \
           .on("GET", f"/v2/bulk/read/{job}", 200, status(job, "COMPLETED")) \
           .on("GET", f"/v2/bulk/read/{job}/result", 200,
               zipped({f"{job}.csv": f"id,Code,Price,Vendor,Modified\n{number},C{number},1,V,t\n"}))
    return api


def test_a_history_is_read_one_job_per_window_oldest_first_the_last_ending_now() -> None:
    api = script(FakeAPI(), 3)
    harness = Harness(api, windowed("2026-01-01"))
    assert [r["id"] for r in flat(read(harness))] == ["1", "2", "3"]
    bodies = [b["filter"]["createdAt"] for m, _, _, b in log(api) if m == "POST"]
    assert bodies == [{"startAt": "2026-01-01T00:00:00Z", "endAt": "2026-02-01T00:00:00Z"},
                      {"startAt": "2026-02-01T00:00:00Z", "endAt": "2026-03-04T00:00:00Z"},
                      {"startAt": "2026-03-04T00:00:00Z", "endAt": "2026-03-05T00:00:00Z"}]


def test_an_empty_start_is_one_window_ending_now() -> None:
    api = script(FakeAPI(), 1)
    harness = Harness(api, windowed("{{ '' }}"))
    assert len(flat(read(harness))) == 1
    assert [b["filter"]["createdAt"] for m, _, _, b in log(api) if m == "POST"] == [
        {"startAt": "2026-02-02T00:00:00Z", "endAt": "2026-03-05T00:00:00Z"}]


def test_a_start_that_is_not_a_date_is_an_error_before_any_job() -> None:
    api = FakeAPI()
    with pytest.raises(FatalError, match=r"fake.thing: read.bulk.windows.start is not a date: 'last year'"):
        read(Harness(api, windowed("last year")))
    assert log(api) == []


def test_more_windows_than_the_connector_allows_is_an_error_before_any_job() -> None:
    api = FakeAPI()
    harness = Harness(api, windowed("1990-01-01"), extra={"limits": {"max_pages": 100}})
    with pytest.raises(FatalError, match=r"fake.thing: bulk read of 427 windows of 31 days is more than 100 jobs"):
        read(harness)
    assert log(api) == []


def test_a_cell_with_the_null_text_is_null_and_other_text_is_kept() -> None:
    bulk = {**BULK, "rows": {"null_text": "null"}}
    del bulk["next"]
    csv = "id,Code,Price,Vendor,Modified\n1,null,null,V,t\n2,nullable,3,null,t\n"
    api = FakeAPI().on("POST", "/v2/bulk/read", 201, created_answer("J1")) \
                   .on("GET", "/v2/bulk/read/J1", 200, status("J1", "COMPLETED")) \
                   .on("GET", "/v2/bulk/read/J1/result", 200, zipped({"J1.csv": csv}))
    records = flat(Harness(api, bulk).read())
    assert [(r["Code"], r["Price"], r["Vendor"]) for r in records] == [(None, None, "V"), ("nullable", 3, None)]
