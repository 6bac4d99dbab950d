"""The Marketo sandbox's bulk extract jobs (facts §2.6): create, enqueue, status by the clock, file, limits.

Every request goes through the app (identity, limits, envelope); time moves only through a ManualClock.
"""

from __future__ import annotations

import hashlib
from typing import Any

import httpx

from ml_connector.sandbox.core import ManualClock
from tests.sandbox.test_marketo_activities import DAY, T0, Api, error, make, run

LEADS = "/bulk/v1/leads/export"
ACTS = "/bulk/v1/activities/export"
JAN = {"startAt": "2025-12-01T00:00:00Z", "endAt": "2025-12-31T00:00:00Z"}
SEEDED = [(T0 - 20 * DAY, {"email": "ada@example.com", "firstName": "Ada", "lastName": "Lovelace"}),
          (T0 - 10 * DAY, {"email": "bob@example.com", "firstName": "Bob"}),
          (T0 - 40 * DAY, {"email": "old@example.com"})]


def lead_job(**overrides: Any) -> dict[str, Any]:
    return {"fields": ["id", "email", "lastName"], "format": "CSV", "columnHeaderNames": {"id": "Marketo Id"},
            "filter": {"createdAt": JAN}, **overrides}


async def file(api: Api, base: str, export_id: str, **headers: str) -> httpx.Response:
    return await api.call("GET", f"{base}/{export_id}/file.json", headers=headers)


def test_create_checks_the_request() -> None:
    sandbox = make(ManualClock(T0), bulk_updated_at_filter=False)

    async def scenario(api: Api) -> list[dict[str, Any]]:
        create = f"{LEADS}/create.json"
        return [
            await api.post(create, lead_job(filter={"createdAt": JAN, "updatedAt": JAN})),
            await api.post(create, lead_job(filter={"createdAt": {"startAt": "2025-12-01T00:00:00Z",
                                                                   "endAt": "2026-01-01T00:00:01Z"}})),
            await api.post(create, lead_job(format="XML")),
            await api.post(create, lead_job(fields=["id", "shoeSize"])),
            await api.post(create, lead_job(filter={"updatedAt": JAN})),
            await api.post(create, lead_job(filter={"staticListId": 5})),
            await api.post(create, lead_job(filter={})),
            await api.post(f"{ACTS}/create.json", {"filter": {"activityTypeIds": [1]}}),
            await api.post(create, [1, 2]),
        ]

    assert [error(body) for body in run(sandbox, scenario)] == [
        (False, "1003", "Exactly one filter type is allowed"),
        (False, "1003", "Date range exceeds 31 days"),
        (False, "1003", "Invalid format: XML"),
        (False, "1006", "Field 'shoeSize' not found"),
        (False, "1035", "Unsupported filter type for target subscription: updatedAt"),
        (False, "1003", "staticListId 5 not found"),
        (False, "701", "filter cannot be blank"),
        (False, "701", "createdAt cannot be blank"),
        (False, "609", "Invalid JSON"),
    ]


def test_a_job_moves_once_a_minute_and_its_file_is_ready_when_completed() -> None:
    clock = ManualClock(T0)
    sandbox = make(clock, leads=SEEDED)

    async def scenario(api: Api) -> dict[str, Any]:
        out: dict[str, Any] = {}
        created = await api.post(f"{LEADS}/create.json", lead_job())
        job = created["result"][0]["exportId"]
        out["created"] = created["result"]
        out["early_file"] = await file(api, LEADS, job)
        clock.advance(5)
        out["enqueued"] = (await api.post(f"{LEADS}/{job}/enqueue.json"))["result"]
        out["again"] = await api.post(f"{LEADS}/{job}/enqueue.json")
        statuses = []
        for step in (59, 1, 59, 1):
            clock.advance(step)
            statuses.append((await api.get(f"{LEADS}/{job}/status.json"))["result"][0]["status"])
        out["statuses"] = statuses
        out["done"] = (await api.get(f"{LEADS}/{job}/status.json"))["result"][0]
        out["file"] = await file(api, LEADS, job)
        return out

    out = run(sandbox, scenario)
    job = out["created"][0]["exportId"]
    assert out["created"] == [{"exportId": job, "format": "CSV", "status": "Created",
                               "createdAt": "2026-01-01T00:00:00Z"}]
    assert out["early_file"].status_code == 404
    assert out["early_file"].headers["content-type"].startswith("text/plain")
    assert out["early_file"].text == "Not Found"
    assert out["enqueued"] == [{"exportId": job, "format": "CSV", "status": "Queued",
                                "createdAt": "2026-01-01T00:00:00Z", "queuedAt": "2026-01-01T00:00:05Z"}]
    assert error(out["again"]) == (False, "1029", "Export job already queued")
    assert out["statuses"] == ["Queued", "Processing", "Processing", "Completed"]
    text = "Marketo Id,email,lastName\n1,ada@example.com,Lovelace\n2,bob@example.com,null\n"
    assert out["file"].status_code == 200
    assert out["file"].content == text.encode()
    assert out["done"] == {
        "exportId": job, "format": "CSV", "status": "Completed", "createdAt": "2026-01-01T00:00:00Z",
        "queuedAt": "2026-01-01T00:00:05Z", "startedAt": "2026-01-01T00:01:05Z",
        "finishedAt": "2026-01-01T00:02:05Z", "numberOfRecords": 2, "fileSize": len(text),
        "fileChecksum": hashlib.sha256(text.encode()).hexdigest()}


def test_the_file_supports_ranges() -> None:
    clock = ManualClock(T0)
    sandbox = make(clock, leads=SEEDED)

    async def scenario(api: Api) -> list[httpx.Response]:
        job = (await api.post(f"{LEADS}/create.json", lead_job(format="TSV")))["result"][0]["exportId"]
        await api.post(f"{LEADS}/{job}/enqueue.json")
        clock.advance(120)
        return [await file(api, LEADS, job, Range="bytes=0-9"), await file(api, LEADS, job, Range="bytes=-5"),
                await file(api, LEADS, job, Range="bytes=10-"), await file(api, LEADS, job, Range="bytes=999-")]

    head, tail, rest, beyond = run(sandbox, scenario)
    text = b"Marketo Id\temail\tlastName\n1\tada@example.com\tLovelace\n2\tbob@example.com\tnull\n"
    assert (head.status_code, head.content, head.headers["content-range"]) == (206, text[:10],
                                                                               f"bytes 0-9/{len(text)}")
    assert (tail.status_code, tail.content) == (206, text[-5:])
    assert (rest.status_code, rest.content) == (206, text[10:])
    assert (beyond.status_code, beyond.headers["content-range"]) == (416, f"bytes */{len(text)}")


def test_two_process_at_once_and_ten_may_be_queued() -> None:
    clock = ManualClock(T0)
    sandbox = make(clock, leads=SEEDED)

    async def scenario(api: Api) -> tuple[list[str], dict[str, Any], list[str], list[str]]:
        jobs = []
        for _ in range(11):
            jobs.append((await api.post(f"{LEADS}/create.json", lead_job()))["result"][0]["exportId"])
        for job in jobs[:10]:
            await api.post(f"{LEADS}/{job}/enqueue.json")
        full = await api.post(f"{LEADS}/{jobs[10]}/enqueue.json")
        clock.advance(60)
        first = [(await api.get(f"{LEADS}/{j}/status.json"))["result"][0]["status"] for j in jobs[:4]]
        clock.advance(60 * 3)  # two finish every minute, the next two start at once
        later = [(await api.get(f"{LEADS}/{j}/status.json"))["result"][0]["status"] for j in jobs[:10]]
        return first, full, later, [j["status"] for j in (await api.get(f"{LEADS}.json"))["result"]]

    first, full, later, listed = run(sandbox, scenario)
    assert error(full) == (False, "1029", "Too many jobs (10) in queue")
    assert first == ["Processing", "Processing", "Queued", "Queued"]
    assert later == ["Completed"] * 6 + ["Processing"] * 2 + ["Queued"] * 2
    assert listed == ["Completed"] * 6 + ["Processing"] * 2 + ["Queued"] * 2 + ["Created"]


def test_the_daily_export_bytes_reset_at_midnight_central() -> None:
    clock = ManualClock(T0)  # 2025-12-31 18:00 in Chicago
    sandbox = make(clock, leads=SEEDED, bulk_daily_bytes=50)

    async def scenario(api: Api) -> tuple[dict[str, Any], dict[str, Any]]:
        one = (await api.post(f"{LEADS}/create.json", lead_job()))["result"][0]["exportId"]
        two = (await api.post(f"{LEADS}/create.json", lead_job()))["result"][0]["exportId"]
        await api.post(f"{LEADS}/{one}/enqueue.json")
        clock.advance(120)
        refused = await api.post(f"{LEADS}/{two}/enqueue.json")
        clock.advance(6 * 3600)  # past midnight in Chicago
        return refused, await api.post(f"{LEADS}/{two}/enqueue.json")

    refused, accepted = run(sandbox, scenario)
    assert error(refused) == (False, "1029", "Export daily quota exceeded")
    assert accepted["success"] is True and accepted["result"][0]["status"] == "Queued"


def test_jobs_are_seen_only_by_their_creator() -> None:
    sandbox = make(ManualClock(T0), leads=SEEDED)

    async def scenario(api: Api) -> tuple[str, dict[str, Any], dict[str, Any], dict[str, Any]]:
        job = (await api.post(f"{LEADS}/create.json", lead_job()))["result"][0]["exportId"]
        mine = await api.get(f"{LEADS}.json")
        await api.login("another-client-id")
        return job, mine, await api.get(f"{LEADS}/{job}/status.json"), await api.get(f"{LEADS}.json")

    job, mine, theirs, listed = run(sandbox, scenario)
    assert [j["exportId"] for j in mine["result"]] == [job]
    assert error(theirs) == (False, "1003", f"Export id {job} not found")
    assert listed["result"] == []


def test_cancel_and_list_by_status() -> None:
    clock = ManualClock(T0)
    sandbox = make(clock, leads=SEEDED)

    async def scenario(api: Api) -> tuple[dict[str, Any], dict[str, Any], list[str], dict[str, Any]]:
        one = (await api.post(f"{LEADS}/create.json", lead_job()))["result"][0]["exportId"]
        two = (await api.post(f"{LEADS}/create.json", lead_job()))["result"][0]["exportId"]
        await api.post(f"{LEADS}/{one}/enqueue.json")
        canceled = await api.post(f"{LEADS}/{one}/cancel.json")
        again = await api.post(f"{LEADS}/{one}/cancel.json")
        listed = await api.get(f"{LEADS}.json", status="Canceled,Completed")
        return canceled, again, [j["exportId"] for j in listed["result"]], {"one": one, "two": two}

    canceled, again, listed, ids = run(sandbox, scenario)
    assert canceled["result"][0]["status"] == "Canceled"
    assert error(again) == (False, "1003", "Export job is Canceled")
    assert listed == [ids["one"]]


def test_activity_export_filters_by_date_and_type() -> None:
    clock = ManualClock(T0)
    sandbox = make(clock)

    async def scenario(api: Api) -> tuple[dict[str, Any], bytes]:
        lead = sandbox.store.insert("leads", {"email": "a@example.com", "firstName": "A"})
        clock.advance(30)
        sandbox.store.update("leads", lead["id"], {"firstName": "B"})
        clock.advance(30)
        body = {"fields": ["leadId", "activityDate", "activityTypeId", "primaryAttributeValue", "attributes"],
                "format": "SSV", "filter": {"createdAt": {"startAt": "2026-01-01T00:00:00Z",
                                                          "endAt": "2026-01-02T00:00:00Z"},
                                            "activityTypeIds": [13]}}
        job = (await api.post(f"{ACTS}/create.json", body))["result"][0]["exportId"]
        await api.post(f"{ACTS}/{job}/enqueue.json")
        clock.advance(120)
        status = (await api.get(f"{ACTS}/{job}/status.json"))["result"][0]
        wrong_kind = await api.get(f"{LEADS}/{job}/status.json")
        assert error(wrong_kind)[:2] == (False, "1003")
        return status, (await file(api, ACTS, job)).content

    status, content = run(sandbox, scenario)
    assert status["status"] == "Completed" and status["numberOfRecords"] == 1
    assert content == (b'leadId activityDate activityTypeId primaryAttributeValue attributes\n'
                       b'1 2026-01-01T00:00:30Z 13 firstName '
                       b'"{""New Value"":""B"",""Old Value"":""A"",""Reason"":""Web service API"",'
                       b'""Source"":""Web service API""}"\n')


def test_files_are_kept_seven_days_and_jobs_listed_as_long() -> None:
    clock = ManualClock(T0)
    sandbox = make(clock, leads=SEEDED)

    async def scenario(api: Api) -> tuple[int, int, list[dict[str, Any]]]:
        job = (await api.post(f"{LEADS}/create.json", lead_job()))["result"][0]["exportId"]
        await api.post(f"{LEADS}/{job}/enqueue.json")
        clock.advance(120)
        clock.advance(7 * DAY - 120)
        kept = (await file(api, LEADS, job)).status_code
        clock.advance(121)
        gone = (await file(api, LEADS, job)).status_code
        return kept, gone, (await api.get(f"{LEADS}.json"))["result"]

    kept, gone, listed = run(sandbox, scenario)
    assert (kept, gone, listed) == (200, 404, [])
