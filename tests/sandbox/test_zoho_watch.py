"""Tests of the Zoho sandbox's notifications (`/crm/v8/actions/watch`): channels and the callbacks they get."""

from __future__ import annotations

import asyncio
import io
import json
import zipfile
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
from starlette.applications import Starlette

from ml_connector.sandbox.core import ManualClock
from ml_connector.sandbox.zoho import watch
from tests.sandbox.test_zoho_coql import T0, USER, FakeCtx, make_store

AUTH = {"authorization": "Zoho-oauthtoken good"}
BASE = "https://www.zohoapis.com"
URL = "https://erp.example/zoho/notify?key=abc&x=1"
Scenario = Callable[[httpx.AsyncClient], Awaitable[Any]]


def setup(**config: Any) -> tuple[FakeCtx, ManualClock]:
    clock = ManualClock(T0)
    ctx = FakeCtx(make_store(clock))
    ctx.config.update(config)
    return ctx, clock


def run(ctx: FakeCtx, scenario: Scenario) -> Any:
    app = Starlette(routes=watch.routes(ctx) + watch.admin_routes(ctx))  # type: ignore[arg-type]

    async def main() -> Any:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=BASE) as client:
            return await scenario(client)

    return asyncio.run(main())


def call(client: httpx.AsyncClient, method: str, body: Any = None, **params: str) -> Awaitable[httpx.Response]:
    content = None if body is None else json.dumps(body)
    return client.request(method, "/crm/v8/actions/watch", content=content, params=params, headers=AUTH)


def channel(channel_id: Any = "1000000068001", **extra: Any) -> dict[str, Any]:
    return {"channel_id": channel_id, "events": ["Vendors.all", "Products.edit"], "notify_url": URL,
            "token": "secret-token", **extra}


def module_id(ctx: FakeCtx, module: str) -> str:
    return str(ctx.store.module(module).summary()["id"])


def test_enable_and_list() -> None:
    ctx, clock = setup()

    async def scenario(client: httpx.AsyncClient) -> tuple[httpx.Response, httpx.Response, httpx.Response]:
        empty = await call(client, "GET")
        created = await call(client, "POST", {"watch": [channel(1000000068001, return_affected_field_values=True)]})
        return empty, created, await call(client, "GET")

    empty, created, listed = run(ctx, scenario)
    expiry = "2026-01-01T01:00:00+00:00"  # absent: one hour
    assert (empty.status_code, empty.content) == (204, b"")
    assert created.status_code == 201
    assert created.json() == {"watch": [{"code": "SUCCESS", "details": {"events": [
        {"channel_expiry": expiry, "resource_uri": "https://www.zohoapis.com/crm/v2/Vendors",
         "resource_id": module_id(ctx, "Vendors"), "resource_name": "Vendors", "channel_id": "1000000068001"},
        {"channel_expiry": expiry, "resource_uri": "https://www.zohoapis.com/crm/v2/Products",
         "resource_id": module_id(ctx, "Products"), "resource_name": "Products", "channel_id": "1000000068001"},
    ]}, "message": "Successfully subscribed for actions-watch of the given module", "status": "success"}]}
    common = {"channel_id": "1000000068001", "notify_url": URL, "token": "secret-token", "channel_expiry": expiry,
              "return_affected_field_values": True, "notify_on_related_action": True,
              "notification_condition": []}
    assert listed.json() == {"watch": [
        {**common, "events": ["Vendors.all"], "resource_uri": "https://www.zohoapis.com/crm/v2/Vendors",
         "resource_id": module_id(ctx, "Vendors"), "resource_name": "Vendors"},
        {**common, "events": ["Products.edit"], "resource_uri": "https://www.zohoapis.com/crm/v2/Products",
         "resource_id": module_id(ctx, "Products"), "resource_name": "Products"},
    ], "info": {"per_page": 200, "page": 1, "count": 2, "more_records": False}}
    assert ctx.scopes == ["ZohoCRM.notifications.READ", "ZohoCRM.notifications.CREATE",
                          "ZohoCRM.notifications.READ"]
    assert ctx.charged == [1, 1, 1]


def test_channel_expiry_rules() -> None:
    ctx, clock = setup()

    async def scenario(client: httpx.AsyncClient) -> list[str]:
        out = []
        for expiry in ("2026-01-07T23:00:00+00:00", "2026-01-08T00:00:01+00:00", "2026-01-01T07:30:00+05:30"):
            answer = await call(client, "POST", {"watch": [channel(channel_expiry=expiry)]})
            out.append(answer.json()["watch"][0]["details"]["events"][0]["channel_expiry"])
        return out

    # within a week: kept; beyond a week: one hour; offsets are instants
    assert run(ctx, scenario) == ["2026-01-07T23:00:00+00:00", "2026-01-01T01:00:00+00:00",
                                  "2026-01-01T02:00:00+00:00"]


def test_item_errors() -> None:
    ctx, clock = setup()

    async def scenario(client: httpx.AsyncClient) -> list[httpx.Response]:
        return [
            await call(client, "POST", {"watch": [{"events": ["Vendors.all"], "notify_url": URL},
                                                   channel("abc"), channel(token="t" * 51),
                                                   channel(events=["Vendors.update"]),
                                                   channel(events=["Nowhere.all"]),
                                                   channel(notify_url="not a url")]}),
            await call(client, "POST", {"watch": [channel("1"), {"channel_id": "2", "notify_url": URL}]}),
            await call(client, "POST", {"nothing": []}),
        ]

    all_failed, mixed, no_watch = run(ctx, scenario)
    assert all_failed.status_code == 202
    assert all_failed.json() == {"watch": [
        {"code": "MANDATORY_NOT_FOUND", "details": {"api_name": "channel_id", "json_path": "$.watch[0].channel_id"},
         "message": "required field not found", "status": "error"},
        {"code": "INVALID_DATA", "details": {"api_name": "channel_id", "json_path": "$.watch[1].channel_id",
                                             "expected_data_type": "long"}, "message": "invalid data",
         "status": "error"},
        {"code": "INVALID_DATA", "details": {"api_name": "token", "json_path": "$.watch[2].token",
                                             "maximum_length": 50}, "message": "invalid data", "status": "error"},
        {"code": "INVALID_DATA", "details": {"api_name": "events", "json_path": "$.watch[3].events[0]"},
         "message": "invalid data", "status": "error"},
        {"code": "INVALID_DATA", "details": {"api_name": "events", "json_path": "$.watch[4].events[0]"},
         "message": "invalid data", "status": "error"},
        {"code": "INVALID_DATA", "details": {"api_name": "notify_url", "json_path": "$.watch[5].notify_url"},
         "message": "invalid data", "status": "error"},
    ]}
    assert mixed.status_code == 201
    assert [item["status"] for item in mixed.json()["watch"]] == ["success", "error"]
    assert mixed.json()["watch"][1]["details"] == {"api_name": "events", "json_path": "$.watch[1].events"}
    assert no_watch.status_code == 400
    assert no_watch.json() == {"code": "MANDATORY_NOT_FOUND", "details": {"api_name": "watch", "json_path": "$.watch"},
                               "message": "required field not found", "status": "error"}


def test_callbacks_for_inserts_updates_and_deletes() -> None:
    ctx, clock = setup()
    store = ctx.store

    async def scenario(client: httpx.AsyncClient) -> list[Any]:
        await call(client, "POST", {"watch": [channel(return_affected_field_values=True)]})
        vendor = store.insert("Vendors", {"Vendor_Name": "Acme"}, USER)
        product = store.insert("Products", {"Product_Name": "P1"}, USER)  # Products.edit only: no callback
        assert ctx.delivered == []  # never inside the write
        await client.post("/_admin/watch/flush")
        clock.advance(5)
        store.update("Vendors", vendor["id"], {"Email": "ap@acme.test", "Phone": "1"}, USER)
        store.update("Products", product["id"], {"Product_Code": "SKU-1"}, USER)
        store.delete("Vendors", vendor["id"])
        await client.post("/_admin/watch/flush")
        deliveries = (await client.get("/_admin/watch/deliveries")).json()
        return [vendor["id"], product["id"], deliveries]

    vendor_id, product_id, deliveries = run(ctx, scenario)
    base = {"query_params": {"key": "abc", "x": "1"}, "channel_id": "1000000068001", "token": "secret-token"}
    vendors = {"module": "Vendors", "resource_uri": "https://www.zohoapis.com/crm/v2/Vendors"}
    assert [body for _, body in ctx.delivered] == [
        {"server_time": int(T0 * 1000), **base, **vendors, "ids": [vendor_id], "affected_fields": [],
         "operation": "insert"},
        {"server_time": int((T0 + 5) * 1000), **base, **vendors, "ids": [vendor_id],
         "affected_fields": [{vendor_id: ["Email", "Phone"]}],
         "affected_values": [{"record_id": vendor_id, "values": {"Email": "ap@acme.test", "Phone": "1"}}],
         "operation": "update"},
        {"server_time": int((T0 + 5) * 1000), **base, "module": "Products",
         "resource_uri": "https://www.zohoapis.com/crm/v2/Products", "ids": [product_id],
         "affected_fields": [{product_id: ["Product_Code"]}],
         "affected_values": [{"record_id": product_id, "values": {"Product_Code": "SKU-1"}}],
         "operation": "update"},
        {"server_time": int((T0 + 5) * 1000), **base, **vendors, "ids": [vendor_id], "affected_fields": [],
         "operation": "delete"},
    ]
    assert {url for url, _ in ctx.delivered} == {URL}
    assert [(d["url"], d["status"], d["dropped"], d["body"]["operation"]) for d in deliveries["deliveries"]] == [
        (URL, 200, False, "insert"), (URL, 200, False, "update"), (URL, 200, False, "update"),
        (URL, 200, False, "delete")]
    assert deliveries["queued"] == 0


def test_deliveries_happen_without_flush() -> None:
    """The write's request returns first; the callback follows in the background."""
    ctx, clock = setup()

    async def scenario(client: httpx.AsyncClient) -> int:
        await call(client, "POST", {"watch": [channel()]})
        ctx.store.insert("Vendors", {"Vendor_Name": "Acme"}, USER)
        for _ in range(20):
            await asyncio.sleep(0)
        return len(ctx.delivered)

    assert run(ctx, scenario) == 1


def test_batching_window() -> None:
    ctx, clock = setup(watch_batch_seconds=10)

    async def scenario(client: httpx.AsyncClient) -> list[str]:
        await call(client, "POST", {"watch": [channel()]})
        ids = [ctx.store.insert("Vendors", {"Vendor_Name": "A"}, USER)["id"]]
        clock.advance(1)
        ids.append(ctx.store.insert("Vendors", {"Vendor_Name": "B"}, USER)["id"])
        for _ in range(20):
            await asyncio.sleep(0)
        assert ctx.delivered == []  # the window is still open
        clock.advance(20)
        ids.append(ctx.store.insert("Vendors", {"Vendor_Name": "C"}, USER)["id"])
        for _ in range(20):
            await asyncio.sleep(0)
        await client.post("/_admin/watch/flush")
        return ids

    a, b, c = run(ctx, scenario)
    assert [body["ids"] for _, body in ctx.delivered] == [[a, b], [c]]


def test_expired_channels_and_dropped_deliveries() -> None:
    ctx, clock = setup()

    async def scenario(client: httpx.AsyncClient) -> dict[str, Any]:
        await call(client, "POST", {"watch": [channel()]})
        ctx.config["watch_drop_deliveries"] = True
        ctx.store.insert("Vendors", {"Vendor_Name": "Lost"}, USER)
        await client.post("/_admin/watch/flush")
        ctx.config["watch_drop_deliveries"] = False
        clock.advance(3600)
        ctx.store.insert("Vendors", {"Vendor_Name": "Too late"}, USER)
        await client.post("/_admin/watch/flush")
        listed = await call(client, "GET")
        deliveries = (await client.get("/_admin/watch/deliveries")).json()["deliveries"]
        return {"listed": listed.status_code, "deliveries": deliveries}

    out = run(ctx, scenario)
    assert ctx.delivered == []
    assert [(d["url"], d["status"], d["dropped"]) for d in out["deliveries"]] == [(URL, None, True)]
    assert out["listed"] == 204


def test_repost_put_patch_delete() -> None:
    ctx, clock = setup()

    async def scenario(client: httpx.AsyncClient) -> list[Any]:
        out: list[Any] = []
        await call(client, "POST", {"watch": [channel()]})
        clock.advance(1800)
        renewed = await call(client, "POST", {"watch": [channel(events=["Vendors.create"])]})
        out.append(renewed.json()["watch"][0]["details"]["events"][0]["channel_expiry"])
        put = await call(client, "PUT", {"watch": [channel(events=["Products.delete"], token="t2")]})
        out.append((put.status_code, put.json()["watch"][0]["message"]))
        listed = (await call(client, "GET")).json()["watch"]
        out.append([(w["events"], w["token"]) for w in listed])
        patch = await call(client, "PATCH", {"watch": [{"channel_id": "1000000068001", "events": ["Vendors.edit"],
                                                        "channel_expiry": "2026-01-05T00:00:00+00:00"}]})
        out.append((patch.status_code, patch.json()["watch"][0]["message"]))
        listed = (await call(client, "GET", channel_id="1000000068001")).json()["watch"]
        out.append([(w["events"], w["token"], w["channel_expiry"]) for w in listed])
        dropped = await call(client, "PATCH", {"watch": [{"channel_id": "1000000068001", "events": ["Vendors.edit"],
                                                          "_delete_events": True}]})
        out.append(dropped.status_code)
        listed = (await call(client, "GET", module="Vendors"))
        out.append(listed.status_code)
        unknown = await call(client, "PUT", {"watch": [channel("999")]})
        out.append((unknown.status_code, unknown.json()))
        deleted = await call(client, "DELETE", channel_ids="1000000068001,999")
        out.append((deleted.status_code, deleted.json()))
        out.append((await call(client, "GET")).status_code)
        missing = await call(client, "DELETE")
        out.append((missing.status_code, missing.json()["code"], missing.json()["details"]))
        return out

    out = run(ctx, scenario)
    assert out[0] == "2026-01-01T01:30:00+00:00"  # re-POSTing renews: one hour from now
    assert out[1] == (200, "Successfully updated the subscribe details")
    assert out[2] == [(["Products.delete"], "t2")]
    assert out[3] == (200, "Successfully updated the subscribe details")
    assert out[4] == [(["Products.delete"], "t2", "2026-01-05T00:00:00+00:00"),
                      (["Vendors.edit"], "t2", "2026-01-05T00:00:00+00:00")]
    assert out[5] == 200
    assert out[6] == 204  # no Vendors events left
    assert out[7] == (202, {"watch": [{"code": "NOT_SUBSCRIBED", "details": {"channel_id": "999"},
                                       "message": "the given channel is not subscribed", "status": "error"}]})
    assert out[8] == (200, {"watch": [
        {"code": "SUCCESS", "details": {"channel_id": "1000000068001"},
         "message": "Successfully removed the subscribe details", "status": "success"},
        {"code": "NOT_SUBSCRIBED", "details": {"channel_id": "999"}, "message": "the given channel is not subscribed",
         "status": "error"}]})
    assert out[9] == 204
    assert out[10] == (400, "REQUIRED_PARAM_MISSING", {"param_name": "channel_ids"})


# --- through the whole sandbox (create_zoho_sandbox, in-process) --------------------------------------------------


def test_jobs_through_the_sandbox() -> None:
    """COQL, Bulk Read and a notification, each mounted by app.py, with a real token of the EU org."""
    from tests.sandbox.test_zoho_sandbox import EU, make, token
    from tests.sandbox.test_zoho_sandbox import run as run_sandbox

    clock = ManualClock()
    sandbox = make(clock, vendors=3)
    sent: list[tuple[str, dict[str, Any]]] = []

    async def sender(url: str, body: dict[str, Any]) -> None:
        sent.append((url, body))

    sandbox.ctx.sender = sender

    async def scenario(client: httpx.AsyncClient) -> dict[str, Any]:
        auth = await token(client)
        out: dict[str, Any] = {}
        enabled = await client.post("/crm/v8/actions/watch", json={"watch": [channel()]}, headers=auth)
        out["enabled"] = enabled.status_code
        inserted = await client.post("/crm/v8/Vendors", json={"data": [{"Vendor_Name": "Zeta Parts"}]},
                                     headers=auth)
        out["new_id"] = inserted.json()["data"][0]["details"]["id"]
        await client.post("/_admin/watch/flush")
        coql_answer = await client.post("/crm/v8/coql", headers=auth, json={
            "select_query": "select Vendor_Name from Vendors where Vendor_Name = 'Zeta Parts'"})
        out["coql"] = (coql_answer.status_code, coql_answer.json())
        created = await client.post("/crm/bulk/v8/read", headers=auth, json={
            "query": {"module": {"api_name": "Vendors"}, "fields": ["Vendor_Name"]}})
        job_id = created.json()["data"][0]["details"]["id"]
        clock.advance(6)
        status = await client.get(f"/crm/bulk/v8/read/{job_id}", headers=auth)
        out["bulk"] = (created.status_code, status.json()["data"][0]["result"]["count"])
        download = await client.get(f"/crm/bulk/v8/read/{job_id}/result", headers=auth)
        with zipfile.ZipFile(io.BytesIO(download.content)) as archive:
            out["csv"] = archive.read(f"{job_id}.csv").decode().splitlines()
        out["deliveries"] = (await client.get("/_admin/watch/deliveries")).json()
        patched = await client.patch("/_admin/config", json={"watch_drop_deliveries": True, "bulk_per_page": 2,
                                                             "coql_empty_status": 200})
        out["config"] = patched.status_code
        return out

    out = run_sandbox(sandbox, scenario)
    assert out["enabled"] == 201
    assert [(url, body["ids"], body["operation"], body["resource_uri"]) for url, body in sent] == [
        (URL, [out["new_id"]], "insert", f"{EU}/crm/v2/Vendors")]
    assert out["coql"] == (200, {"data": [{"Vendor_Name": "Zeta Parts", "id": out["new_id"]}],
                                 "info": {"count": 1, "more_records": False}})
    assert out["bulk"] == (201, 4)
    assert out["csv"][0] == "id,Vendor_Name" and out["csv"][-1] == f"{out['new_id']},Zeta Parts"
    assert [d["status"] for d in out["deliveries"]["deliveries"]] == [None]
    assert out["config"] == 200  # the jobs' switches are in the sandbox's tunable config
    assert sandbox.config["watch_drop_deliveries"] is True and sandbox.config["bulk_per_page"] == 2
