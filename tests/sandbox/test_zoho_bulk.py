"""Tests of the Zoho sandbox's Bulk Read jobs (`/crm/bulk/v8/read`): create, states by the clock, ZIP, paging."""

from __future__ import annotations

import asyncio
import csv
import io
import json
import zipfile
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
from starlette.applications import Starlette

from ml_connector.sandbox.core import ManualClock
from ml_connector.sandbox.zoho import bulk
from tests.sandbox.test_zoho_coql import T0, USER, FakeCtx, seeded

AUTH = {"authorization": "Zoho-oauthtoken good"}
JSON = {**AUTH, "content-type": "application/json"}
BASE = "https://www.zohoapis.com"
Scenario = Callable[[httpx.AsyncClient], Awaitable[Any]]


def run(ctx: FakeCtx, scenario: Scenario) -> Any:
    app = Starlette(routes=bulk.routes(ctx) + bulk.admin_routes(ctx))  # type: ignore[arg-type]

    async def main() -> Any:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=BASE) as client:
            return await scenario(client)

    return asyncio.run(main())


def create(client: httpx.AsyncClient, query: dict[str, Any], **extra: Any) -> Awaitable[httpx.Response]:
    return client.post("/crm/bulk/v8/read", content=json.dumps({"query": query, **extra}), headers=JSON)


def unzip(answer: httpx.Response, job_id: str) -> list[list[str]]:
    with zipfile.ZipFile(io.BytesIO(answer.content)) as archive:
        assert archive.namelist() == [f"{job_id}.csv"]
        text = archive.read(f"{job_id}.csv").decode()
    return list(csv.reader(io.StringIO(text)))


PRODUCTS = {"module": {"api_name": "Products"}, "fields": ["Product_Code", "Vendor_Name", "Vendor_Name.Vendor_Name"]}


def test_content_type_must_be_json() -> None:
    ctx = FakeCtx(seeded()[0])

    async def scenario(client: httpx.AsyncClient) -> httpx.Response:
        return await client.post("/crm/bulk/v8/read", content=json.dumps({"query": PRODUCTS}), headers=AUTH)

    answer = run(ctx, scenario)
    assert answer.status_code == 415
    assert answer.json() == {"code": "MEDIA_TYPE_NOT_SUPPORTED", "details": {},
                             "message": "the media type given is not supported", "status": "error"}
    assert ctx.charged == []


def test_job_moves_through_states_by_the_clock() -> None:
    clock = ManualClock(T0)
    store, ids = seeded(clock)  # the clock is at T0 + 360 s
    ctx = FakeCtx(store)

    async def scenario(client: httpx.AsyncClient) -> tuple[httpx.Response, list[str], dict[str, Any]]:
        created = await create(client, PRODUCTS)
        job_id = created.json()["data"][0]["details"]["id"]
        states = []
        for _ in range(4):
            states.append((await client.get(f"/crm/bulk/v8/read/{job_id}", headers=AUTH)).json()["data"][0]["state"])
            clock.advance(2)
        done = (await client.get(f"/crm/bulk/v8/read/{job_id}", headers=AUTH)).json()
        return created, states, done

    created, states, done = run(ctx, scenario)
    job_id = created.json()["data"][0]["details"]["id"]
    assert created.status_code == 201
    assert created.json() == {"data": [{"status": "success", "code": "ADDED_SUCCESSFULLY",
                                        "message": "Added successfully.", "details": {
                                            "id": job_id, "operation": "read", "state": "ADDED",
                                            "created_by": {"id": USER["id"], "name": "P Boyle"},
                                            "created_time": "2026-01-01T00:06:00+00:00"}}], "info": {}}
    assert states == ["ADDED", "QUEUED", "IN PROGRESS", "COMPLETED"]
    assert done == {"data": [{
        "id": job_id, "operation": "read", "state": "COMPLETED",
        "query": {**PRODUCTS, "page": 1},
        "created_by": {"id": USER["id"], "name": "P Boyle"}, "created_time": "2026-01-01T00:06:00+00:00",
        "file_type": "csv",
        "result": {"page": 1, "per_page": 200000, "count": 4, "download_url": f"/crm/bulk/v8/read/{job_id}/result",
                   "more_records": False, "next_page_token": None}}]}
    assert ctx.charged == [50] + [1] * 5  # a status poll costs one credit
    assert ctx.scopes[0] == "ZohoCRM.bulk.read"


def test_result_is_a_zip_of_the_snapshot_at_completion() -> None:
    store, ids = seeded()
    ctx = FakeCtx(store)
    clock = store.clock
    assert isinstance(clock, ManualClock)

    async def scenario(client: httpx.AsyncClient) -> tuple[str, httpx.Response, httpx.Response]:
        created = await create(client, {**PRODUCTS, "criteria": {
            "group_operator": "and", "group": [
                {"field": {"api_name": "Product_Code"}, "comparator": "starts_with", "value": "SKU"},
                {"field": {"api_name": "Unit_Price"}, "comparator": "greater_equal", "value": 10}]}})
        job_id = created.json()["data"][0]["details"]["id"]
        before = await client.get(f"/crm/bulk/v8/read/{job_id}/result", headers=AUTH)
        clock.advance(6)
        await client.get(f"/crm/bulk/v8/read/{job_id}", headers=AUTH)  # completes: the snapshot is taken
        clock.advance(1)
        store.update("Products", ids["SKU-1"], {"Product_Code": "SKU-1b"}, USER)
        return job_id, before, await client.get(f"/crm/bulk/v8/read/{job_id}/result", headers=AUTH)

    job_id, before, answer = run(ctx, scenario)
    assert before.status_code == 404 and before.json()["code"] == "RESOURCE_NOT_FOUND"
    assert answer.status_code == 200
    assert answer.headers["content-type"] == "application/x-download"
    assert unzip(answer, job_id) == [
        ["id", "Product_Code", "Vendor_Name", "Vendor_Name.Vendor_Name"],
        [ids["SKU-1"], "SKU-1", ids["Acme Supply"], "Acme Supply"],
        [ids["SKU-2"], "SKU-2", ids["Bolt Works"], "Bolt Works"],
    ]


def test_criteria_comparators() -> None:
    store, ids = seeded()
    ctx = FakeCtx(store)
    clock = store.clock
    assert isinstance(clock, ManualClock)

    async def codes(client: httpx.AsyncClient, criteria: dict[str, Any]) -> list[str]:
        created = await create(client, {"module": {"api_name": "Products"}, "fields": ["Product_Code"],
                                        "criteria": criteria})
        assert created.status_code == 201, created.text
        job_id = created.json()["data"][0]["details"]["id"]
        clock.advance(6)
        rows = unzip(await client.get(f"/crm/bulk/v8/read/{job_id}/result", headers=AUTH), job_id)
        clock.advance(60)  # out of the download rate window
        return [row[1] for row in rows[1:]]

    def one(field: str, comparator: str, value: Any) -> dict[str, Any]:
        return {"field": {"api_name": field}, "comparator": comparator, "value": value}

    async def scenario(client: httpx.AsyncClient) -> list[list[str]]:
        return [
            await codes(client, one("Product_Code", "equal", "SKU-2")),
            await codes(client, one("Product_Code", "not_equal", "SKU-2")),
            await codes(client, one("Product_Code", "in", ["SKU-2", "SKU-4"])),
            await codes(client, one("Product_Code", "not_in", ["SKU-2", "SKU-4"])),
            await codes(client, one("Unit_Price", "less_than", 10)),
            await codes(client, one("Unit_Price", "between", [10, 25.5])),
            await codes(client, one("Unit_Price", "not_between", [10, 25.5])),
            await codes(client, one("Product_Code", "contains", "KU-")),
            await codes(client, one("Product_Code", "not_contains", "X")),
            await codes(client, one("Product_Code", "ends_with", "-4")),
            await codes(client, one("Vendor_Name", "equal", "${EMPTY}")),
            await codes(client, one("Vendor_Name", "in", [ids["Bolt Works"]])),
            await codes(client, one("Modified_Time", "greater_than", "2026-01-01T05:33:00+05:30")),
            await codes(client, {"group_operator": "or", "group": [one("Product_Code", "equal", "SKU-1"),
                                                                   one("Unit_Price", "greater_than", 50)]}),
        ]

    assert run(ctx, scenario) == [
        ["SKU-2"], ["SKU-1", "XSKU-3", "SKU-4"], ["SKU-2", "SKU-4"], ["SKU-1", "XSKU-3"], ["SKU-4"],
        ["SKU-1", "SKU-2"], ["XSKU-3", "SKU-4"], ["SKU-1", "SKU-2", "XSKU-3", "SKU-4"], ["SKU-1", "SKU-2", "SKU-4"],
        ["SKU-4"], ["XSKU-3"], ["SKU-2"], ["XSKU-3", "SKU-4"], ["SKU-1", "XSKU-3"],
    ]


def test_validation_errors() -> None:
    ctx = FakeCtx(seeded()[0])

    async def scenario(client: httpx.AsyncClient) -> list[httpx.Response]:
        return [
            await create(client, {"module": {"api_name": "Nowhere"}}),
            await create(client, {"module": {"api_name": "Ordered_Items"}}),
            await create(client, {"module": {"api_name": "Products"}, "fields": ["Product_Code", "Nope"]}),
            await create(client, {"module": {"api_name": "Products"}, "criteria": {
                "field": {"api_name": "Product_Code"}, "comparator": "like", "value": "x"}}),
            await create(client, {"module": {"api_name": "Products"}, "criteria": {
                "field": {"api_name": "Nope"}, "comparator": "equal", "value": "x"}}),
            await create(client, {"module": {"api_name": "Products"}, "criteria": {
                "field": {"api_name": "Unit_Price"}, "comparator": "equal", "value": "ten"}}),
            await create(client, {"module": {"api_name": "Products"}, "page": 6}),
            await client.post("/crm/bulk/v8/read", content=json.dumps({"callback": {"url": "x"}}), headers=JSON),
            await create(client, {"module": {"api_name": "Products"}}, callback={"url": "ftp://x", "method": "post"}),
        ]

    answers = run(ctx, scenario)
    assert [(a.status_code, a.json()["code"]) for a in answers] == [
        (400, "MODULE_NOT_SUPPORTED"), (400, "MODULE_NOT_SUPPORTED"), (400, "FIELD_NOT_AVAILABLE"),
        (400, "INVALID_CRITERIA"), (400, "INVALID_CRITERIA"), (400, "INVALID_CRITERIA"),
        (400, "PAGE_RANGE_EXCEEDED"), (400, "MANDATORY_NOT_FOUND"), (400, "INVALID_CALLBACK_URL"),
    ]
    assert answers[2].json()["details"] == {"api_name": "Nope"}
    assert answers[6].json()["details"] == {"max_limit": 5}
    assert answers[7].json()["details"] == {"api_name": "query", "json_path": "$.query"}
    assert ctx.charged == []


def test_pages_and_page_token() -> None:
    store, ids = seeded()
    ctx = FakeCtx(store)
    ctx.config["bulk_per_page"] = 3
    clock = store.clock
    assert isinstance(clock, ManualClock)
    query = {"module": {"api_name": "Products"}, "fields": ["Product_Code"]}

    async def finished(client: httpx.AsyncClient, created: httpx.Response) -> tuple[dict[str, Any], list[str]]:
        assert created.status_code == 201, created.text
        job_id = created.json()["data"][0]["details"]["id"]
        clock.advance(6)
        status = (await client.get(f"/crm/bulk/v8/read/{job_id}", headers=AUTH)).json()["data"][0]
        rows = unzip(await client.get(f"/crm/bulk/v8/read/{job_id}/result", headers=AUTH), job_id)
        return status["result"], [row[1] for row in rows[1:]]

    async def scenario(client: httpx.AsyncClient) -> list[Any]:
        first = await finished(client, await create(client, query))
        token = first[0]["next_page_token"]
        second = await finished(client, await create(client, {**query, "page_token": token}))
        page2 = await finished(client, await create(client, {**query, "page": 2}))
        bound = await create(client, {"module": {"api_name": "Vendors"}, "page_token": token})
        bogus = await create(client, {**query, "page_token": "nope"})
        return [first, second, page2, bound, bogus]

    first, second, page2, bound, bogus = run(ctx, scenario)
    assert first[1] == ["SKU-1", "SKU-2", "XSKU-3"]
    assert first[0]["more_records"] is True and first[0]["count"] == 3 and first[0]["per_page"] == 3
    assert isinstance(first[0]["next_page_token"], str)
    assert second == ({**second[0], "page": 2, "count": 1, "more_records": False, "next_page_token": None}, ["SKU-4"])
    assert page2[1] == ["SKU-4"]
    assert (bound.status_code, bound.json()["code"]) == (400, "TOKEN_BOUND_DATA_MISMATCH")
    assert (bogus.status_code, bogus.json()["code"]) == (400, "INVALID_DATA")


def test_unknown_job_download_rate_and_retention() -> None:
    store, ids = seeded()
    ctx = FakeCtx(store)
    clock = store.clock
    assert isinstance(clock, ManualClock)

    async def scenario(client: httpx.AsyncClient) -> tuple[Any, ...]:
        unknown = await client.get("/crm/bulk/v8/read/4150868000009999999", headers=AUTH)
        job_id = (await create(client, PRODUCTS)).json()["data"][0]["details"]["id"]
        clock.advance(6)
        statuses = [(await client.get(f"/crm/bulk/v8/read/{job_id}/result", headers=AUTH)).status_code
                    for _ in range(11)]
        clock.advance(61)
        again = await client.get(f"/crm/bulk/v8/read/{job_id}/result", headers=AUTH)
        clock.advance(86_400)
        expired = await client.get(f"/crm/bulk/v8/read/{job_id}/result", headers=AUTH)
        return unknown, statuses, again, expired

    unknown, statuses, again, expired = run(ctx, scenario)
    assert unknown.status_code == 404
    assert unknown.json() == {"code": "RESOURCE_NOT_FOUND", "details": {"resource": "job_id"},
                              "message": "the requested resource is not found", "status": "error"}
    assert statuses == [200] * 10 + [429]
    assert again.status_code == 200
    assert (expired.status_code, expired.json()["code"]) == (404, "RESOURCE_NOT_FOUND")


def test_failure_injection_and_callbacks() -> None:
    store, ids = seeded()
    ctx = FakeCtx(store)
    clock = store.clock
    assert isinstance(clock, ManualClock)
    callback = {"url": "https://erp.example/cb", "method": "post"}

    async def scenario(client: httpx.AsyncClient) -> tuple[str, str, dict[str, Any], list[Any]]:
        ok = (await create(client, PRODUCTS, callback=callback)).json()["data"][0]["details"]["id"]
        bad = (await create(client, PRODUCTS, callback=callback)).json()["data"][0]["details"]["id"]
        injected = await client.post("/_admin/bulk/fail", json={"job_id": bad, "code": "INTERNAL_ERROR",
                                                                 "message": "Internal Server Error"})
        assert injected.status_code == 200
        clock.advance(5)
        await client.post("/_admin/bulk/tick")
        early = list(ctx.delivered)
        clock.advance(1)
        await client.post("/_admin/bulk/tick")
        await client.post("/_admin/bulk/tick")  # once per job
        failed = (await client.get(f"/crm/bulk/v8/read/{bad}", headers=AUTH)).json()["data"][0]
        return ok, bad, failed, early

    ok, bad, failed, early = run(ctx, scenario)
    assert early == []
    assert failed["state"] == "FAILURE"
    assert failed["result"] == {"error_message": {"status": "error", "code": "INTERNAL_ERROR",
                                                  "message": "Internal Server Error", "details": {}}}
    assert [(url, body["data"][0]["id"], body["data"][0]["state"]) for url, body in ctx.delivered] == [
        ("https://erp.example/cb", ok, "COMPLETED"), ("https://erp.example/cb", bad, "FAILURE")]
    assert ctx.delivered[1][1] == {"data": [failed]}
