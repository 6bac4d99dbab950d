"""Tests of the Pipedrive sandbox (in-process through httpx.ASGITransport)."""

from __future__ import annotations

import asyncio
import base64
import json
import time
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import pytest

from ml_connector.sandbox.core import ManualClock
from ml_connector.sandbox.pipedrive import PipedriveSandbox, create_pipedrive_sandbox
from ml_connector.sandbox.pipedrive import index as pipedrive_index

TOKEN = "0123456789abcdef0123456789abcdef01234567"
BASE = "http://acme.pipedrive.test"
BASIC = "Basic " + base64.b64encode(b"ml-connector-app:app-secret").decode()
FORM = {"content-type": "application/x-www-form-urlencoded"}
Scenario = Callable[[httpx.AsyncClient], Awaitable[Any]]


def make(deals: int = 0, clock: ManualClock | None = None, **config: Any) -> PipedriveSandbox:
    """A sandbox with rate limits out of the way unless a test sets them; time stands still unless moved."""
    sandbox = create_pipedrive_sandbox(deals=deals, clock=clock or ManualClock())
    sandbox.config.update(
        {
            "burst_limit": 100_000,
            "burst_limit_oauth": 100_000,
            "search_burst_limit": 100_000,
            "daily_budget": 100_000_000,
            **config,
        }
    )
    return sandbox


def run(sandbox: PipedriveSandbox, scenario: Scenario, headers: dict[str, str] | None = None) -> Any:
    async def main() -> Any:
        transport = httpx.ASGITransport(app=sandbox)
        auth = {"x-api-token": TOKEN} if headers is None else headers
        async with httpx.AsyncClient(transport=transport, base_url=BASE, headers=auth) as client:
            return await scenario(client)

    return asyncio.run(main())


def cursor_payload(cursor: str) -> dict[str, Any]:
    return json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))


async def collect(client: httpx.AsyncClient, path: str, **params: Any) -> list[dict[str, Any]]:
    """Every row of a cursor-paginated list."""
    rows: list[dict[str, Any]] = []
    cursor = None
    while True:
        query = {**params, **({"cursor": cursor} if cursor else {})}
        response = await client.get(path, params=query)
        assert response.status_code == 200, response.text
        rows += response.json()["data"]
        cursor = response.json()["additional_data"]["next_cursor"]
        if cursor is None:
            return rows


# -- auth ---------------------------------------------------------------------------------------------------


def test_auth_by_header_query_and_rejections() -> None:
    sandbox = make()

    async def go(c: httpx.AsyncClient) -> None:
        ok = await c.get("/api/v2/organizations", headers={"x-api-token": TOKEN})
        assert ok.status_code == 200 and ok.headers["content-type"] == "application/json"
        assert ok.json() == {"success": True, "data": [], "additional_data": {"next_cursor": None}}
        assert (await c.get("/api/v2/organizations", params={"api_token": TOKEN})).status_code == 200
        assert (await c.get("/v1/users/me", params={"api_token": TOKEN})).json()["data"]["id"] == 18
        for headers, params in (
            ({"x-api-token": "f" * 40}, {}),
            ({}, {}),
            ({"x-api-token": "x"}, {"api_token": TOKEN}),
        ):
            bad = await c.get("/api/v2/organizations", headers=headers, params=params)
            assert bad.status_code == 401
            assert bad.headers["x-401-by-gw"] == "true"
            assert bad.json() == {
                "success": False,
                "error": "unauthorized access",
                "errorCode": 401,
                "error_info": "Please check developers.pipedrive.com",
            }
        sandbox.config["accept_query_token"] = False
        assert (await c.get("/api/v2/organizations", params={"api_token": TOKEN})).status_code == 401

    run(sandbox, go, headers={})


def test_oauth_refresh_without_rotation_and_bearer_use() -> None:
    sandbox = make()

    async def go(c: httpx.AsyncClient) -> None:
        form = {"grant_type": "refresh_token", "refresh_token": "1:1:seeded-refresh-token"}
        r = await c.post("/oauth/token", data=form, headers={"authorization": BASIC})
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["token_type"] == "Bearer" and body["expires_in"] == 3599
        assert body["refresh_token"] == "1:1:seeded-refresh-token"
        assert body["scope"] == "base,deals:full,contacts:full,products:full"
        assert body["api_domain"] == BASE
        me = await c.get("/v1/users/me", headers={"authorization": f"Bearer {body['access_token']}"})
        assert me.status_code == 200 and me.json()["data"]["company_domain"] == "acme"
        assert me.headers["x-ratelimit-limit"] == "100000"  # the OAuth burst limit applies
        again = await c.post("/oauth/token", data=form, headers={"authorization": BASIC})
        assert again.json()["refresh_token"] == "1:1:seeded-refresh-token"
        in_body = await c.post(
            "/oauth/token", data={**form, "client_id": "ml-connector-app", "client_secret": "app-secret"}
        )
        assert in_body.status_code == 200
        as_json = await c.post("/oauth/token", json=form, headers={"authorization": BASIC})
        assert as_json.status_code == 400 and as_json.json()["error"] == "invalid_request"
        bad_client = await c.post(
            "/oauth/token", data=form, headers={"authorization": "Basic " + base64.b64encode(b"x:y").decode()}
        )
        assert bad_client.status_code == 400 and bad_client.json()["error"] == "invalid_client"
        unknown = await c.get("/api/v2/deals", headers={"authorization": "Bearer nope"})
        assert unknown.status_code == 401 and unknown.json()["error"] == "unauthorized access"

    run(sandbox, go, headers={})


def test_oauth_rotation_revocation_and_expiry() -> None:
    clock = ManualClock()
    sandbox = make(clock=clock, rotate_refresh_token=True, access_token_ttl=0.2)

    async def go(c: httpx.AsyncClient) -> None:
        old = "1:1:seeded-refresh-token"
        r = await c.post(
            "/oauth/token",
            data={"grant_type": "refresh_token", "refresh_token": old},
            headers={"authorization": BASIC},
        )
        new = r.json()["refresh_token"]
        assert new != old and new.startswith("1:1:")
        replay = await c.post(
            "/oauth/token",
            data={"grant_type": "refresh_token", "refresh_token": old},
            headers={"authorization": BASIC},
        )
        assert replay.status_code == 400
        assert replay.json() == {
            "error": "invalid_grant",
            "message": "Invalid grant: refresh_token is invalid",
        }
        bearer = {"authorization": f"Bearer {r.json()['access_token']}"}
        clock.advance(0.19)
        assert (await c.get("/api/v2/deals", headers=bearer)).status_code == 200
        clock.advance(0.02)
        expired = await c.get("/api/v2/deals", headers=bearer)
        assert expired.status_code == 401
        assert expired.json()["error"] == "Invalid token: access_token is invalid"
        code = (await c.post("/_admin/oauth/code", json={"redirect_uri": "https://app/cb"})).json()["code"]
        exchanged = await c.post(
            "/oauth/token",
            headers={"authorization": BASIC},
            data={"grant_type": "authorization_code", "code": code, "redirect_uri": "https://app/cb"},
        )
        assert exchanged.status_code == 200 and exchanged.json()["refresh_token"] not in {old, new}
        sandbox.config["revoked"] = True
        revoked = await c.post(
            "/oauth/token",
            data={"grant_type": "refresh_token", "refresh_token": new},
            headers={"authorization": BASIC},
        )
        assert revoked.status_code == 400 and revoked.json()["error"] == "invalid_grant"

    run(sandbox, go, headers={})


# -- lists and paging ---------------------------------------------------------------------------------------


def test_cursor_paging_returns_every_org_once() -> None:
    sandbox = make()
    for i in range(1234):
        sandbox.store.insert("organizations", {"name": f"Org {i}"})

    async def go(c: httpx.AsyncClient) -> None:
        seen: list[int] = []
        cursor, pages = None, 0
        while True:
            r = await c.get(
                "/api/v2/organizations", params={"limit": 500, **({"cursor": cursor} if cursor else {})}
            )
            data, cursor = r.json()["data"], r.json()["additional_data"]["next_cursor"]
            seen += [row["id"] for row in data]
            pages += 1
            if cursor is None:
                break
            assert cursor_payload(cursor) == {
                "field": "id",
                "fieldValue": seen[-1],
                "sortDirection": "asc",
                "id": seen[-1],
            }
        assert pages == 3 and len(data) == 234
        assert sorted(seen) == seen and len(set(seen)) == 1234
        desc = await collect(c, "/api/v2/organizations", limit=500, sort_direction="desc")
        assert [row["id"] for row in desc] == seen[::-1]
        too_many = await c.get("/api/v2/organizations", params={"limit": 501})
        assert too_many.status_code == 400 and too_many.json()["code"] == "ERR_SCHEMA_VALIDATION_FAILED"
        assert (await c.get("/api/v2/organizations", params={"limit": 500, "bogus": "1"})).status_code == 200

    run(sandbox, go)


def test_updated_since_filter_and_millisecond_rejection() -> None:
    sandbox = make()
    for i, stamp in enumerate(["2025-01-01T10:00:00Z", "2025-01-01T10:00:05Z", "2025-01-02T00:00:00Z"]):
        sandbox.store.insert("organizations", {"name": f"O{i}", "add_time": stamp, "update_time": stamp})
        sandbox.store.insert("products", {"name": f"P{i}", "add_time": stamp, "update_time": stamp})

    async def go(c: httpx.AsyncClient) -> None:
        since = await collect(c, "/api/v2/organizations", updated_since="2025-01-01T10:00:05Z")
        assert [o["name"] for o in since] == ["O1", "O2"]
        window = await collect(
            c,
            "/api/v2/organizations",
            updated_since="2025-01-01T10:00:00Z",
            updated_until="2025-01-02T00:00:00Z",
            sort_by="update_time",
        )
        assert [o["name"] for o in window] == ["O0", "O1"]
        millis = await c.get("/api/v2/organizations", params={"updated_since": "2025-01-01T10:00:00.000Z"})
        assert millis.status_code == 400
        assert (
            millis.json()["code"] == "ERR_SCHEMA_VALIDATION_FAILED"
            and "not a valid datetime" in millis.json()["error"]
        )
        ignored = await collect(c, "/api/v2/products", updated_since="2025-01-02T00:00:00Z")
        assert len(ignored) == 3  # not supported on products: ignored like any unknown parameter
        sandbox.config["products_updated_since"] = True
        assert len(await collect(c, "/api/v2/products", updated_since="2025-01-02T00:00:00Z")) == 1

    run(sandbox, go)


@pytest.mark.parametrize("candidate_limit", [0, 250_000])
def test_seeded_deal_filters_match_brute_force(monkeypatch: pytest.MonkeyPatch, candidate_limit: int) -> None:
    """Index scans (limit 0) and candidate sets give exactly the brute-force answer, page by page."""
    monkeypatch.setattr(pipedrive_index, "CANDIDATE_LIMIT", candidate_limit)
    sandbox = make(deals=3000)
    for rid in (5, 17, 2999):
        sandbox.store.patch("deals", rid, {"title": "touched"})
    sandbox.store.delete("deals", 40)
    every = sandbox.store.all("deals")

    def expect(pred: Callable[[dict[str, Any]], bool], key: str, desc: bool = False) -> list[int]:
        rows = sorted((r for r in every if pred(r)), key=lambda r: (r[key], r["id"]), reverse=desc)
        return [r["id"] for r in rows]

    async def go(c: httpx.AsyncClient) -> None:
        since = every[1500]["update_time"]
        cases = [
            ({"status": "won"}, lambda r: r["status"] == "won" and not r["is_deleted"], "id", False),
            (
                {"updated_since": since},
                lambda r: r["update_time"] >= since and not r["is_deleted"],
                "id",
                False,
            ),
            (
                {
                    "updated_since": since,
                    "status": "lost,won",
                    "sort_by": "update_time",
                    "sort_direction": "desc",
                },
                lambda r: (
                    r["update_time"] >= since and r["status"] in {"won", "lost"} and not r["is_deleted"]
                ),
                "update_time",
                True,
            ),
            ({"status": "deleted"}, lambda r: r["is_deleted"], "id", False),
            (
                {"updated_until": since, "sort_by": "update_time", "owner_id": 18},
                lambda r: r["update_time"] < since and not r["is_deleted"],
                "update_time",
                False,
            ),
            ({"sort_by": "add_time"}, lambda r: not r["is_deleted"], "add_time", False),
        ]
        for params, pred, key, desc in cases:
            got = [r["id"] for r in await collect(c, "/api/v2/deals", limit=137, **params)]
            assert got and got == expect(pred, key, desc), params
        assert len(await collect(c, "/api/v2/deals", ids="1,2,40,9999")) == 2

    run(sandbox, go)


# -- writes -------------------------------------------------------------------------------------------------


def test_create_patch_delete_organization() -> None:
    sandbox = make()
    erp, credit = (
        sandbox.store.field_key("organizations", "ERP Customer Id"),
        sandbox.store.field_key("organizations", "Credit Limit"),
    )

    async def go(c: httpx.AsyncClient) -> None:
        r = await c.post(
            "/api/v2/organizations",
            json={
                "name": "Acme GmbH",
                "custom_fields": {erp: "C-1"},
                "address": {"value": "Hauptstr 1, Berlin"},
            },
        )
        assert r.status_code == 200, r.text
        org = r.json()["data"]
        assert org["id"] == 1 and org["owner_id"] == 18 and org["is_deleted"] is False
        assert org["custom_fields"] == {
            erp: "C-1",
            credit: None,
            sandbox.store.field_key("organizations", "Payment Terms"): None,
        }
        assert org["add_time"].endswith("Z") and len(org["add_time"]) == 20
        patched = (await c.patch("/api/v2/organizations/1", json={"custom_fields": {credit: 500.5}})).json()[
            "data"
        ]
        assert patched["custom_fields"][erp] == "C-1" and patched["custom_fields"][credit] == 500.5
        assert patched["update_time"] >= org["update_time"] and patched["name"] == "Acme GmbH"
        assert (await c.put("/api/v2/organizations/1", json={"name": "x"})).status_code == 405
        deleted = await c.delete("/api/v2/organizations/1")
        assert deleted.json() == {"success": True, "data": {"id": 1}}
        gone = await c.get("/api/v2/organizations/1")
        assert gone.status_code == 404 and gone.json()["success"] is False and gone.json()["data"] is None
        assert (await c.patch("/api/v2/organizations/1", json={"name": "x"})).status_code == 404
        assert (await collect(c, "/api/v2/organizations")) == []
        sandbox.config["get_deleted_returns_entity"] = True
        shown = await c.get("/api/v2/organizations/1")
        assert shown.status_code == 200 and shown.json()["data"]["is_deleted"] is True
        assert sandbox.store.all("organizations")[0]["is_deleted"] is True

    run(sandbox, go)


def test_strict_validation_fails_the_whole_write() -> None:
    sandbox = make()
    erp = sandbox.store.field_key("organizations", "ERP Customer Id")
    credit = sandbox.store.field_key("organizations", "Credit Limit")
    unknown = "3b71d5b6" + "0" * 32

    async def go(c: httpx.AsyncClient) -> None:
        cases = [
            ({"name": "A", "custom_fields": {erp: "C-1", unknown: "x"}}, unknown),
            ({"name": "A", erp: "C-1"}, erp),
            ({"name": "A", "custom_fields": {credit: "500"}}, credit),
            ({"name": "A", "owner_id": "18"}, "owner_id"),
            ({"custom_fields": {erp: "C-1"}}, "name"),
            ({"name": "A", "colour": "red"}, "colour"),
        ]
        for body, key in cases:
            r = await c.post("/api/v2/organizations", json=body)
            assert r.status_code == 400, body
            assert r.json()["code"] == "ERR_SCHEMA_VALIDATION_FAILED"
            assert r.json()["error"].startswith(f"Validation failed: {key}: ")
        msg = (await c.post("/api/v2/organizations", json={"name": "A", unknown: 1})).json()["error"]
        assert msg == f"Validation failed: {unknown}: Parameter '{unknown}' is not allowed for this request"
        assert sandbox.store.all("organizations") == []
        assert (await c.post("/api/v2/deals", json={"title": "D", "value": "100"})).status_code == 400
        assert (await c.post("/api/v2/deals", json={"title": "D", "org_id": 99})).status_code == 400
        assert (
            await c.post("/api/v2/persons", json={"name": "P", "emails": [{"value": "a@b", "x": 1}]})
        ).status_code == 400
        form = await c.post("/api/v2/organizations", content="name=A", headers=FORM)
        assert form.status_code == 400
        deal = (await c.post("/api/v2/deals", json={"title": "D", "value": 10, "status": "won"})).json()[
            "data"
        ]
        assert deal["won_time"] == deal["close_time"] and deal["stage_id"] == 1 and deal["origin"] == "API"

    run(sandbox, go)


# -- search -------------------------------------------------------------------------------------------------


def test_exact_search_on_custom_field_and_product_code() -> None:
    sandbox = make()
    assert sandbox.config["search_index_lag_seconds"] > 0  # by default a fresh record is not searchable at once
    sandbox.config["search_index_lag_seconds"] = 0
    store = sandbox.store
    store.insert(
        "organizations",
        {
            "name": "Acme GmbH",
            "custom_fields": {"ERP Customer Id": "C-10042"},
            "address": {"value": "Hauptstr 1"},
        },
    )
    store.insert("organizations", {"name": "Other", "custom_fields": {"ERP Customer Id": "C-100421"}})
    store.insert("products", {"name": "Mechanical Pencil", "code": "MPENCIL"})
    erp = store.field_key("organizations", "ERP Customer Id")

    async def go(c: httpx.AsyncClient) -> None:
        r = await c.get(
            "/api/v2/organizations/search",
            params={"term": "c-10042", "fields": "custom_fields", "exact_match": "true", "limit": 2},
        )
        assert r.status_code == 200
        items = r.json()["data"]["items"]
        assert len(items) == 1 and r.json()["additional_data"] == {"next_cursor": None}
        assert items[0]["item"] == {
            "id": 1,
            "type": "organization",
            "name": "Acme GmbH",
            "address": "Hauptstr 1",
            "visible_to": 3,
            "owner": {"id": 18},
            "custom_fields": ["C-10042"],
            "notes": [],
        }
        loose = await c.get(
            "/api/v2/organizations/search", params={"term": "C-1004", "fields": "custom_fields"}
        )
        assert sorted(i["item"]["id"] for i in loose.json()["data"]["items"]) == [1, 2]
        code = await c.get(
            "/api/v2/products/search", params={"term": "MPENCIL", "fields": "code", "exact_match": "1"}
        )
        assert code.json()["data"]["items"][0]["item"] == {
            "id": 1,
            "type": "product",
            "name": "Mechanical Pencil",
            "code": "MPENCIL",
            "visible_to": 3,
            "owner": {"id": 18},
            "custom_fields": [],
        }
        assert (await c.get("/api/v2/products/search", params={"term": "M"})).status_code == 400
        field = await c.get(
            "/api/v2/itemSearch/field",
            params={"term": "C-10042", "entity_type": "organization", "field": erp, "match": "exact"},
        )
        assert field.json()["data"] == [{"id": 1, "name": "Acme GmbH"}]
        lower = await c.get(
            "/api/v2/itemSearch/field",
            params={"term": "c-10042", "entity_type": "organization", "field": erp},
        )
        assert lower.json()["data"] == []  # itemSearch/field is case-sensitive
        sandbox.config["search_index_lag_seconds"] = 60
        store.insert("organizations", {"name": "Fresh", "custom_fields": {"ERP Customer Id": "C-9"}})
        lagged = await c.get(
            "/api/v2/organizations/search",
            params={"term": "C-9", "fields": "custom_fields", "exact_match": "true"},
        )
        assert lagged.json()["data"]["items"] == []

    run(sandbox, go)


def test_stamps_search_lag_and_the_request_log_read_the_injected_clock() -> None:
    clock = ManualClock(1_767_225_600.0)  # 2026-01-01T00:00:00Z
    sandbox = make(clock=clock, search_index_lag_seconds=5.0)
    exact = {"term": "Clocked", "fields": "name", "exact_match": "true"}

    async def go(c: httpx.AsyncClient) -> None:
        org = (await c.post("/api/v2/organizations", json={"name": "Clocked"})).json()["data"]
        assert org["add_time"] == org["update_time"] == "2026-01-01T00:00:00Z"
        clock.advance(4.5)
        assert (await c.get("/api/v2/organizations/search", params=exact)).json()["data"]["items"] == []
        clock.advance(0.5)  # exactly the lag: searchable now
        found = (await c.get("/api/v2/organizations/search", params=exact)).json()["data"]["items"]
        assert [i["item"]["id"] for i in found] == [org["id"]]
        clock.advance(3600)
        patched = (await c.patch(f"/api/v2/organizations/{org['id']}", json={"name": "Later"})).json()["data"]
        assert patched["update_time"] == "2026-01-01T01:00:05Z" and patched["add_time"] == org["add_time"]

    run(sandbox, go)
    assert [e.at - 1_767_225_600.0 for e in sandbox.log.entries()] == [0.0, 4.5, 5.0, 3605.0]
    assert sandbox.store.insert("products", {"name": "P"})["add_time"] == "2026-01-01T01:00:05Z"


# -- field metadata -----------------------------------------------------------------------------------------


def test_field_endpoints_v1_offset_and_v2_cursor() -> None:
    sandbox = make()

    async def go(c: httpx.AsyncClient) -> None:
        first = (await c.get("/v1/organizationFields", params={"start": 0, "limit": 5})).json()
        assert first["additional_data"]["pagination"] == {
            "start": 0,
            "limit": 5,
            "more_items_in_collection": True,
            "next_start": 5,
        }
        rest = (await c.get("/api/v1/organizationFields", params={"start": 5, "limit": 500})).json()
        assert rest["additional_data"]["pagination"]["more_items_in_collection"] is False
        assert "next_start" not in rest["additional_data"]["pagination"]
        every = first["data"] + rest["data"]
        custom = {f["name"]: f["key"] for f in every if f["edit_flag"]}
        assert custom == (await c.get("/_admin/fields/organizations")).json()
        assert set(custom) == {"ERP Customer Id", "Credit Limit", "Payment Terms"}
        assert all(len(k) == 40 and int(k, 16) >= 0 and k == k.lower() for k in custom.values())
        system = {f["key"] for f in every if not f["edit_flag"]}
        assert {"name", "owner_id", "address"} <= system
        source = next(
            f
            for f in (await c.get("/v1/dealFields", params={"limit": 500})).json()["data"]
            if f["name"] == "Source"
        )
        assert source["field_type"] == "enum" and [o["label"] for o in source["options"]][:2] == [
            "ERP",
            "Web",
        ]
        v2 = await collect(c, "/api/v2/personFields", limit=4)
        assert {f["field_name"] for f in v2 if f["is_custom_field"]} == {"ERP Contact Id"}
        assert set(v2[0]) >= {"field_code", "field_name", "field_type", "is_custom_field", "options"}
        created = await c.post("/v1/productFields", json={"name": "Weight", "field_type": "double"})
        key = created.json()["data"]["key"]
        product = await c.post("/api/v2/products", json={"name": "P", "custom_fields": {key: 1.5}})
        assert product.status_code == 201 and product.json()["data"]["custom_fields"][key] == 1.5

    run(sandbox, go)


# -- deal products ------------------------------------------------------------------------------------------


def test_deal_products_bulk_and_list_by_deal_ids() -> None:
    sandbox = make()
    store = sandbox.store
    p1, p2 = store.insert("products", {"name": "Pencil"}), store.insert("products", {"name": "Pen"})
    d1 = store.insert("deals", {"title": "SO-1", "update_time": "2025-01-01T00:00:00Z"})
    d2 = store.insert("deals", {"title": "SO-2"})

    async def go(c: httpx.AsyncClient) -> None:
        lines = [
            {"product_id": p1["id"], "item_price": 5, "quantity": 250},
            {"product_id": p2["id"], "item_price": 2.5, "quantity": 3, "comments": "L2"},
        ]
        bulk = await c.post(f"/api/v2/deals/{d1['id']}/products/bulk", json={"data": lines})
        assert bulk.status_code == 201, bulk.text
        assert [row["sum"] for row in bulk.json()["data"]] == [1250, 7.5]
        single = await c.post(
            f"/api/v2/deals/{d2['id']}/products",
            json={"product_id": p1["id"], "item_price": 1, "quantity": 2},
        )
        assert single.status_code == 201 and single.json()["data"]["deal_id"] == d2["id"]
        bad = await c.post(
            f"/api/v2/deals/{d1['id']}/products/bulk",
            json={"data": [lines[0], {"product_id": 999, "item_price": 1, "quantity": 1}]},
        )
        assert bad.status_code == 400
        missing = await c.post(
            f"/api/v2/deals/{d1['id']}/products", json={"product_id": p1["id"], "quantity": 1}
        )
        assert missing.status_code == 400
        rows = await collect(c, "/api/v2/deals/products", deal_ids=f"{d1['id']},{d2['id']}", limit=2)
        assert [(r["deal_id"], r["product_id"], r["name"]) for r in rows] == [
            (d1["id"], p1["id"], "Pencil"),
            (d1["id"], p2["id"], "Pen"),
            (d2["id"], p1["id"], "Pencil"),
        ]
        assert rows[1]["comments"] == "L2" and rows[0]["comments"] == "" and rows[0]["order_nr"] == 1
        too_many = await c.get(
            "/api/v2/deals/products", params={"deal_ids": ",".join(map(str, range(1, 102)))}
        )
        assert too_many.status_code == 400
        patched = await c.patch(f"/api/v2/deals/{d1['id']}/products/{rows[0]['id']}", json={"quantity": 10})
        assert patched.json()["data"]["sum"] == 50
        assert (await c.delete(f"/api/v2/deals/{d1['id']}/products/{rows[1]['id']}")).json()["data"] == {
            "id": rows[1]["id"]
        }
        assert len(await collect(c, f"/api/v2/deals/{d1['id']}/products")) == 1
        deal = (await c.get(f"/api/v2/deals/{d1['id']}")).json()["data"]
        assert deal["update_time"] == "2025-01-01T00:00:00Z"  # child changes do not bump the parent

    run(sandbox, go)


# -- rate limits --------------------------------------------------------------------------------------------


def test_burst_limit_429_headers_and_recovery() -> None:
    clock = ManualClock()
    sandbox = make(clock=clock, burst_limit=3, burst_window_seconds=0.4, search_burst_limit=1)

    async def go(c: httpx.AsyncClient) -> None:
        remaining = []
        for _ in range(3):
            r = await c.get("/api/v2/organizations")
            assert r.status_code == 200
            remaining.append(r.headers["x-ratelimit-remaining"])
            assert r.headers["x-ratelimit-limit"] == "3"
            assert int(r.headers["x-daily-ratelimit-token-remaining"]) < 100_000_000
        assert remaining == ["2", "1", "0"]
        limited = await c.get("/api/v2/organizations")
        assert limited.status_code == 429
        assert limited.json() == {
            "success": False,
            "error": "Request over limit",
            "errorCode": 429,
            "error_info": "Please check developers.pipedrive.com",
        }
        assert (
            limited.headers["x-ratelimit-remaining"] == "0" and int(limited.headers["x-ratelimit-reset"]) >= 1
        )
        clock.advance(0.39)
        assert (await c.get("/api/v2/organizations")).status_code == 429  # the window has not passed yet
        clock.advance(0.02)
        assert (await c.get("/api/v2/organizations")).status_code == 200
        assert (await c.get("/api/v2/organizations/search", params={"term": "ab"})).status_code == 200
        searched = await c.get("/api/v2/organizations/search", params={"term": "ab"})
        assert searched.status_code == 429 and searched.headers["x-ratelimit-limit"] == "1"

    run(sandbox, go)


def test_daily_budget_exhaustion_and_reset() -> None:
    clock = ManualClock()
    sandbox = make(clock=clock, daily_budget=25, daily_reset_seconds=0.3)

    async def go(c: httpx.AsyncClient) -> None:
        first = await c.get("/api/v2/deals")
        assert first.headers["x-daily-ratelimit-token-limit"] == "25"
        assert first.headers["x-daily-ratelimit-token-remaining"] == "15"
        assert (await c.get("/api/v2/deals")).headers["x-daily-ratelimit-token-remaining"] == "5"
        over = await c.get("/api/v2/deals")
        assert over.status_code == 429 and over.headers["x-daily-ratelimit-token-remaining"] == "5"
        assert int(over.headers["x-ratelimit-reset"]) >= 1
        cheap = await c.get("/v1/users/me")  # 2 tokens still fit; a 429 consumed nothing
        assert cheap.status_code == 200 and cheap.headers["x-daily-ratelimit-token-remaining"] == "3"
        clock.advance(0.29)
        assert (await c.get("/api/v2/deals")).status_code == 429  # not reset yet
        clock.advance(0.02)
        back = await c.get("/api/v2/deals")
        assert back.status_code == 200 and back.headers["x-daily-ratelimit-token-remaining"] == "15"

    run(sandbox, go)


def test_abuse_block_returns_cloudflare_html() -> None:
    clock = ManualClock()
    sandbox = make(clock=clock, burst_limit=2, burst_window_seconds=0.3, abuse_block_after=3)

    async def go(c: httpx.AsyncClient) -> None:
        statuses = [(await c.get("/api/v2/persons")).status_code for _ in range(5)]
        assert statuses == [200, 200, 429, 429, 429]
        blocked = await c.get("/api/v2/persons")
        assert blocked.status_code == 403 and blocked.headers["content-type"].startswith("text/html")
        assert "Cloudflare" in blocked.text
        clock.advance(0.29)
        assert (await c.get("/api/v2/persons")).status_code == 403  # still blocked
        clock.advance(0.02)
        assert (await c.get("/api/v2/persons")).status_code == 200

    run(sandbox, go)


# -- observation tools and admin ----------------------------------------------------------------------------


def test_request_log_faults_and_admin_routes() -> None:
    sandbox = make()

    async def go(c: httpx.AsyncClient) -> None:
        inserted = (
            await c.post(
                "/_admin/records/organizations",
                json={"name": "Seeded", "custom_fields": {"ERP Customer Id": "C-7"}},
            )
        ).json()
        key = sandbox.store.field_key("organizations", "ERP Customer Id")
        assert inserted["custom_fields"][key] == "C-7"
        patched = (
            await c.patch(f"/_admin/records/organizations/{inserted['id']}", json={"name": "Renamed"})
        ).json()
        assert patched["name"] == "Renamed" and patched["update_time"] >= inserted["update_time"]
        assert (await c.get(f"/_admin/records/organizations/{inserted['id']}")).json()["name"] == "Renamed"
        await c.post("/_admin/faults", json={"path": "/api/v2/organizations", "status": 503, "times": 1})
        assert (await c.get("/api/v2/organizations")).status_code == 503
        assert (await c.get("/api/v2/organizations")).status_code == 200
        await c.post("/api/v2/organizations", json={"name": "Via API"})
        await c.get(f"/api/v2/organizations/{inserted['id']}")
        log = (await c.get("/_admin/requests")).json()
        assert log["total"] == 4 and log["writes"] == 1
        assert log["counts"] == {
            "GET /api/v2/organizations": 2,
            "GET /api/v2/organizations/{id}": 1,
            "POST /api/v2/organizations": 1,
        }
        assert log["statuses"] == {"503": 1, "200": 3}
        dump = (await c.get("/_admin/records/organizations")).json()
        assert dump["count"] == 2 and {r["name"] for r in dump["records"]} == {"Renamed", "Via API"}
        deal = sandbox.store.insert("deals", {"title": "D"})
        product = sandbox.store.insert("products", {"name": "P"})
        line = (
            await c.post(
                f"/_admin/records/deals/{deal['id']}/products",
                json={"product_id": product["id"], "item_price": 3, "quantity": 2},
            )
        ).json()
        assert line["sum"] == 6 and sandbox.store.all("deal_products")[0]["id"] == line["id"]
        pipelines = (await c.get("/api/v2/pipelines")).json()["data"]
        stages = (await c.get("/api/v2/stages", params={"pipeline_id": 1})).json()["data"]
        assert pipelines[0]["name"] == "Sales" and [s["id"] for s in stages] == [1, 2, 3, 4, 5]

    run(sandbox, go)


def test_store_helpers_without_http() -> None:
    sandbox = create_pipedrive_sandbox(seed=5)
    other = create_pipedrive_sandbox(seed=6)
    label_key = sandbox.store.field_key("deals", "ERP Order Number")
    assert label_key != other.store.field_key("deals", "ERP Order Number")
    assert label_key == create_pipedrive_sandbox(seed=5).store.field_key("deals", "ERP Order Number")
    deal = sandbox.store.insert("deals", {"title": "X", "custom_fields": {"ERP Order Number": "SO-1"}})
    won = sandbox.store.patch("deals", deal["id"], {"status": "won"})
    assert won["won_time"] is not None and won["close_time"] == won["won_time"]
    assert sandbox.store.all("deals")[0]["custom_fields"][label_key] == "SO-1"
    started = time.perf_counter()
    big = create_pipedrive_sandbox(deals=20_000)
    assert len(big.store.all("deals")) == 20_000 and time.perf_counter() - started < 5
