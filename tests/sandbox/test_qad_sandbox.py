"""Tests of the QAD Adaptive ERP sandbox (api-facts §3.5 contract)."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import httpx
import pytest

from ml_connector.sandbox.core import ManualClock
from ml_connector.sandbox.qad import QadSandbox, create_qad_sandbox, iso_ms, parse_timestamp_ms

T = TypeVar("T")
TOKEN_URL = "/clouderp/oauth/token"
CUSTOMERS = "/clouderp/api/erp/customerV2s"
ITEMS = "/clouderp/api/erp/items"
ORDERS = "/clouderp/api/erp/salesOrders"
BROWSES = "/clouderp/api/qracore/browses"
SCOPE = {"x-qad-workspace-id": "10USA_10USACO"}
LOGIN = {"client_id": "ml-connector", "grant_type": "password",
         "username": "demo", "password": "demo-password"}
ISO_MS = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$")


def run(sandbox: QadSandbox, scenario: Callable[[httpx.AsyncClient], Awaitable[T]]) -> T:
    """Run ``scenario`` against the sandbox over an in-process ASGI transport."""
    async def go() -> T:
        transport = httpx.ASGITransport(app=sandbox)
        async with httpx.AsyncClient(transport=transport, base_url="http://qad.test") as client:
            return await scenario(client)
    return asyncio.run(go())


async def login(client: httpx.AsyncClient) -> dict[str, str]:
    """Headers (bearer + scope) of a fresh password-grant session."""
    response = await client.post(TOKEN_URL, params=LOGIN)
    assert response.status_code == 200, response.text
    return {"Authorization": f"Bearer {response.json()['access_token']}", **SCOPE}


def sort_key(record: dict[str, Any]) -> tuple[str, str]:
    return record["lastModifiedDate"], record["uri"]


@pytest.fixture()
def clock() -> ManualClock:
    """The sandbox's time: it stands still until a test moves it."""
    return ManualClock()


@pytest.fixture()
def sandbox(clock: ManualClock) -> QadSandbox:
    box = create_qad_sandbox(customers=300, items=200, sales_orders=30, clock=clock)
    box.config["rate_per_second"] = 10_000
    return box


# ---- token -------------------------------------------------------------------------------------------

def test_password_grant_in_query_and_form_body(sandbox: QadSandbox) -> None:
    async def scenario(c: httpx.AsyncClient) -> None:
        by_query = await c.post(TOKEN_URL, params=LOGIN)
        by_form = await c.post(TOKEN_URL, data=LOGIN)
        for response in (by_query, by_form):
            assert response.status_code == 200
            assert response.headers["content-type"].startswith("application/json")
            body = response.json()
            assert body["token_type"] == "bearer" and body["scope"] == "read write"
            assert body["expires_in"] == 3600 and body["access_token"] and body["refresh_token"]
        assert by_query.json()["access_token"] != by_form.json()["access_token"]
    run(sandbox, scenario)


def test_token_errors(sandbox: QadSandbox) -> None:
    async def scenario(c: httpx.AsyncClient) -> None:
        bad_password = await c.post(TOKEN_URL, params={**LOGIN, "password": "nope"})
        assert bad_password.status_code == 400 and bad_password.json()["error"] == "invalid_grant"
        bad_client = await c.post(TOKEN_URL, params={**LOGIN, "client_id": "other"})
        assert bad_client.status_code == 401 and bad_client.json()["error"] == "invalid_client"
        forged = {"client_id": "ml-connector", "grant_type": "refresh_token", "refresh_token": "forged"}
        bad_refresh = await c.post(TOKEN_URL, params=forged)
        assert bad_refresh.status_code == 400 and bad_refresh.json()["error"] == "invalid_grant"
        odd_grant = await c.post(TOKEN_URL, params={**LOGIN, "grant_type": "client_credentials"})
        assert odd_grant.status_code == 400 and odd_grant.json()["error"] == "unsupported_grant_type"
    run(sandbox, scenario)


def test_refresh_token_reuse_and_rotation(sandbox: QadSandbox) -> None:
    async def refresh(c: httpx.AsyncClient, token: str) -> httpx.Response:
        return await c.post(TOKEN_URL, params={"client_id": "ml-connector", "grant_type": "refresh_token",
                                               "refresh_token": token})

    async def scenario(c: httpx.AsyncClient) -> None:
        first = (await c.post(TOKEN_URL, params=LOGIN)).json()
        again = await refresh(c, first["refresh_token"])
        assert again.status_code == 200 and again.json()["refresh_token"] == first["refresh_token"]
        assert (await refresh(c, first["refresh_token"])).status_code == 200  # no rotation by default
        sandbox.config["rotate_refresh_token"] = True
        rotated = await refresh(c, first["refresh_token"])
        assert rotated.status_code == 200 and rotated.json()["refresh_token"] != first["refresh_token"]
        assert (await refresh(c, first["refresh_token"])).json()["error"] == "invalid_grant"
        assert (await refresh(c, rotated.json()["refresh_token"])).status_code == 200
    run(sandbox, scenario)


def test_bearer_token_required_and_expiry(sandbox: QadSandbox, clock: ManualClock) -> None:
    async def scenario(c: httpx.AsyncClient) -> None:
        missing = await c.get(CUSTOMERS, headers=SCOPE)
        assert missing.status_code == 401 and missing.json()["error"] == "invalid_token"
        unknown = await c.get(CUSTOMERS, headers={**SCOPE, "Authorization": "Bearer forged"})
        assert unknown.status_code == 401 and unknown.json()["error"] == "invalid_token"
        headers = await login(c)
        assert (await c.get(CUSTOMERS, headers=headers)).status_code == 200
        sandbox.config["token_ttl"] = 0.2
        clock.advance(0.19)
        assert (await c.get(CUSTOMERS, headers=headers)).status_code == 200
        clock.advance(0.02)
        expired = await c.get(CUSTOMERS, headers=headers)
        token = headers["Authorization"].split()[1]
        assert expired.status_code == 401
        assert expired.json() == {"error": "invalid_token",
                                  "error_description": f"Access token expired: {token}"}
        sandbox.config["token_ttl"] = 3600
        assert (await c.post("/_admin/tokens/expire")).json()["expired"] == 1
        assert (await c.get(CUSTOMERS, headers=headers)).status_code == 401
    run(sandbox, scenario)


# ---- scope -------------------------------------------------------------------------------------------

def test_scope_required_and_checked(sandbox: QadSandbox) -> None:
    async def scenario(c: httpx.AsyncClient) -> None:
        headers = await login(c)
        bearer = {"Authorization": headers["Authorization"]}
        missing = await c.get(CUSTOMERS, headers=bearer)
        assert missing.status_code == 400
        assert missing.json()["submitResult"]["success"] is False
        assert missing.json()["submitResult"]["errors"][0]["message"]
        assert (await c.get(CUSTOMERS, headers=bearer, params={"domainCode": "10USA"})).status_code == 200
        other = await c.get(CUSTOMERS, headers={**bearer, "x-qad-workspace-id": "20CAN_20CANCO"})
        assert other.status_code == 403
        assert (await c.get(CUSTOMERS, headers=bearer, params={"domainCode": "20CAN"})).status_code == 403
        assert (await c.get(CUSTOMERS, headers={**bearer, "x-qad-workspace-id": "10USA"})).status_code == 400
        assert (await c.get(f"{CUSTOMERS}/C000001", headers=bearer)).status_code == 400
    run(sandbox, scenario)


# ---- reads -------------------------------------------------------------------------------------------

def test_paging_returns_every_customer_once_in_order(sandbox: QadSandbox) -> None:
    async def scenario(c: httpx.AsyncClient) -> list[dict[str, Any]]:
        headers = await login(c)
        rows: list[dict[str, Any]] = []
        page = 1
        while True:
            body = (await c.get(CUSTOMERS, headers=headers, params={
                "page": page, "pageSize": 100, "sort": "lastModifiedDate,asc"})).json()
            assert body["page"] == page and body["pageSize"] == 100 and body["totalCount"] == 300
            rows += body["data"]
            if not body["hasMore"]:
                break
            page += 1
        past = (await c.get(CUSTOMERS, headers=headers, params={"page": 9, "pageSize": 100})).json()
        assert past["data"] == [] and past["hasMore"] is False
        return rows

    rows = run(sandbox, scenario)
    codes = [r["customerCode"] for r in rows]
    assert len(codes) == 300 and len(set(codes)) == 300
    assert [sort_key(r) for r in rows] == sorted(sort_key(r) for r in rows)
    stamps = [r["lastModifiedDate"] for r in rows]
    assert len(set(stamps)) < len(stamps), "seed data should contain timestamp ties resolved by uri"
    assert all(ISO_MS.match(s) and s >= "2025-01-01" for s in stamps)


def test_paging_parameters_are_validated(sandbox: QadSandbox) -> None:
    async def scenario(c: httpx.AsyncClient) -> None:
        headers = await login(c)
        for params in ({"pageSize": 1001}, {"page": 0}, {"pageSize": "x"}, {"sort": "name,asc"},
                       {"modifiedSince": "yesterday"}, {"modifiedSince": "2025-01-01T00:00:00"},
                       {"modifiedSince": "2025-13-01T00:00:00Z"}):
            response = await c.get(CUSTOMERS, headers=headers, params=params)
            assert response.status_code == 400, params
            assert response.json()["submitResult"]["success"] is False
        assert (await c.get(CUSTOMERS, headers=headers, params={"pageSize": 1000})).status_code == 200
    run(sandbox, scenario)


def test_modified_since_is_inclusive(sandbox: QadSandbox) -> None:
    ordered = sandbox.store.all("customerV2s")
    pivot = ordered[150]
    pivot_ms = parse_timestamp_ms(pivot["lastModifiedDate"])
    expected = [r["customerCode"] for r in ordered if r["lastModifiedDate"] >= pivot["lastModifiedDate"]]

    whole_second = pivot["lastModifiedDate"][:19] + "Z"  # no milliseconds: includes the pivot's second
    second_ms = parse_timestamp_ms(whole_second)
    expected_second = [r["customerCode"] for r in ordered
                       if parse_timestamp_ms(r["lastModifiedDate"]) >= second_ms]

    async def scenario(c: httpx.AsyncClient) -> None:
        headers = await login(c)
        for since, want in ((pivot["lastModifiedDate"], expected), (whole_second, expected_second)):
            body = (await c.get(CUSTOMERS, headers=headers,
                                params={"modifiedSince": since, "pageSize": 1000})).json()
            assert [r["customerCode"] for r in body["data"]] == want
            assert body["totalCount"] == len(want) and body["hasMore"] is False
        assert pivot["customerCode"] in expected and len(expected_second) >= len(expected)
        after = (await c.get(CUSTOMERS, headers=headers,
                             params={"modifiedSince": iso_ms(pivot_ms + 1), "pageSize": 1000})).json()
        assert pivot["customerCode"] not in [r["customerCode"] for r in after["data"]]
        offset = (await c.get(CUSTOMERS, headers=headers, params={
            "modifiedSince": iso_ms(pivot_ms).replace("Z", "+00:00"), "pageSize": 1000})).json()
        assert [r["customerCode"] for r in offset["data"]] == expected
    run(sandbox, scenario)


def test_get_one_and_not_found(sandbox: QadSandbox) -> None:
    async def scenario(c: httpx.AsyncClient) -> None:
        headers = await login(c)
        found = await c.get(f"{CUSTOMERS}/C000042", headers=headers)
        assert found.status_code == 200
        record = found.json()["data"][0]
        assert record["customerCode"] == "C000042" and record["domainCode"] == "10USA"
        assert record["uri"] == "urn:be:com.qad.base.customer.ICustomerV2:10USA.C000042"
        missing = await c.get(f"{CUSTOMERS}/C999999", headers=headers)
        assert missing.status_code == 404
        assert missing.json() == {"submitResult": {"success": False,
                                                   "errors": [{"message": "Record not found"}]}}
        assert missing.headers["content-type"].startswith("application/json")
        assert (await c.get(f"{ITEMS}/10-1001", headers=headers)).json()["data"][0]["itemCode"] == "10-1001"
        order = (await c.get(f"{ORDERS}/S0000001", headers=headers)).json()["data"][0]
        assert sandbox.store.get("customerV2s", order["customerCode"]) is not None
        assert all(sandbox.store.get("items", ln["itemCode"]) for ln in order["lines"])
    run(sandbox, scenario)


def test_seed_data_shape_and_determinism() -> None:
    box = create_qad_sandbox(customers=400, items=150, seed=11)
    same = create_qad_sandbox(customers=400, items=150, seed=11)
    other = create_qad_sandbox(customers=400, items=150, seed=12)
    customers = box.store.all("customerV2s")
    assert customers == same.store.all("customerV2s")
    assert customers != other.store.all("customerV2s")
    contact_ids = [c["contactId"] for r in customers for c in r["contacts"]]
    assert len(contact_ids) == len(set(contact_ids))
    for record in customers:
        assert 1 <= len(record["contacts"]) <= 3 and any(c["isKeyContact"] for c in record["contacts"])
        assert record["addresses"][0]["addressType"] == "HEADER" and record["name"]
        assert isinstance(record["creditLimit"], float) and isinstance(record["isActive"], bool)
    active = sum(r["isActive"] for r in customers) / len(customers)
    assert 0.8 < active < 0.97
    items = box.store.all("items")
    assert sum(r["itemStatus"] == "ACTIVE" for r in items) > len(items) * 0.75
    assert all(round(r["listPrice"], 2) == r["listPrice"] and len(r["description"]) <= 24 for r in items)


# ---- admin mutation ------------------------------------------------------------------------------------

def test_admin_patch_moves_record_to_end(sandbox: QadSandbox) -> None:
    async def scenario(c: httpx.AsyncClient) -> None:
        headers = await login(c)
        before = (await c.get("/_admin/records/customerV2s/C000007")).json()
        patched = await c.patch("/_admin/records/customerV2s/C000007", json={"name": "Renamed Corp."})
        assert patched.status_code == 200
        after = patched.json()
        assert after["name"] == "Renamed Corp." and after["concurrencyHash"] != before["concurrencyHash"]
        assert after["lastModifiedDate"] > before["lastModifiedDate"]
        last_page = (await c.get(CUSTOMERS, headers=headers, params={"page": 3, "pageSize": 100})).json()
        assert last_page["data"][-1]["customerCode"] == "C000007"
        since = (await c.get(CUSTOMERS, headers=headers,
                             params={"modifiedSince": after["lastModifiedDate"]})).json()
        assert [r["customerCode"] for r in since["data"]] == ["C000007"]
        assert (await c.patch("/_admin/records/customerV2s/C999999", json={"name": "x"})).status_code == 404
        listing = (await c.get("/_admin/records/customerV2s", params={"limit": 5})).json()
        assert listing["count"] == 300 and len(listing["records"]) == 5
        inserted = await c.post("/_admin/records/customerV2s", json={"customerCode": "A0001", "name": "Adm"})
        assert inserted.status_code == 201 and inserted.json()["dataOperation"] == "C"
        again = await c.post("/_admin/records/customerV2s", json={"customerCode": "A0001", "name": "Adm"})
        assert again.status_code == 409
        assert (await c.get(f"{CUSTOMERS}/A0001", headers=headers)).json()["data"][0]["name"] == "Adm"
    run(sandbox, scenario)


def test_store_python_api(sandbox: QadSandbox) -> None:
    store = sandbox.store
    record = store.get("items", "10-1005")
    assert record is not None
    record["description"] = "mutating a copy"
    assert store.get("items", "10-1005")["description"] != "mutating a copy"  # type: ignore[index]
    patched = store.patch("items", "10-1005", {"listPrice": 9.99})
    assert patched["listPrice"] == 9.99 and patched["dataOperation"] == "U"
    assert store.all("items")[-1]["itemCode"] == "10-1005"
    backdated = store.patch("items", "10-1006", {"lastModifiedDate": "2020-01-01T00:00:00Z"})
    assert backdated["lastModifiedDate"] == "2020-01-01T00:00:00.000Z"
    assert store.all("items")[0]["itemCode"] == "10-1006"
    with pytest.raises(KeyError):
        store.patch("items", "99-9999", {"listPrice": 1.0})
    inserted = store.insert("items", {"itemCode": "X-1", "description": "Direct"})
    assert inserted["itemStatus"] == "ACTIVE" and store.get("items", "X-1") is not None
    assert len(store.all("items")) == 201


def test_stamps_token_expiry_order_dates_and_the_request_log_read_the_injected_clock() -> None:
    clock = ManualClock(1_767_225_600.0)  # 2026-01-01T00:00:00Z
    box = create_qad_sandbox(customers=5, items=5, clock=clock)
    inserted = box.store.insert("items", {"itemCode": "CLK-1", "description": "Clocked"})
    assert inserted["lastModifiedDate"] == "2026-01-01T00:00:00.000Z"
    customer = next(r for r in box.store.all("customerV2s") if r["isActive"])
    order = {"salesOrderNumber": "CLK00001", "customerCode": customer["customerCode"], "currencyCode": "USD",
             "lines": [{"itemCode": "CLK-1", "quantityOrdered": 1}]}

    async def scenario(c: httpx.AsyncClient) -> None:
        headers = await login(c)
        clock.advance(86_400.5)  # a day later: the token (3600 s) is dead
        assert (await c.get(ITEMS, headers=headers)).status_code == 401
        headers = await login(c)
        saved = (await c.post(ORDERS, headers=headers, json={"salesOrders": [order]})).json()["salesOrders"][0]
        assert saved["orderDate"] == "2026-01-02" and saved["lastModifiedDate"] == "2026-01-02T00:00:00.500Z"
    run(box, scenario)
    assert [e.at - 1_767_225_600.0 for e in box.log.entries()] == [0.0, 86_400.5, 86_400.5, 86_400.5]


# ---- writes ------------------------------------------------------------------------------------------

def new_customer(code: str, **extra: Any) -> dict[str, Any]:
    return {"customerCode": code, "name": f"Test {code} LLC", "currencyCode": "USD", **extra}


def test_create_then_update_needs_current_concurrency_hash(sandbox: QadSandbox) -> None:
    async def write(c: httpx.AsyncClient, headers: dict[str, str], *records: dict[str, Any]
                    ) -> dict[str, Any]:
        response = await c.post(CUSTOMERS, headers=headers,
                                json={"supplementaryMessages": [], "customerV2s": list(records)})
        assert response.status_code == 200 and response.headers["content-type"].startswith("application/json")
        return response.json()

    async def scenario(c: httpx.AsyncClient) -> None:
        headers = await login(c)
        created = await write(c, headers, new_customer("N0001", contacts=[{"firstName": "A", "lastName": "B",
                                                                          "email": "a.b@test.com"}]))
        assert created["submitResult"] == {"success": True, "errors": []}
        saved = created["customerV2s"][0]
        assert saved["dataOperation"] == "C" and saved["lastModifiedUser"] == "demo"
        assert saved["contacts"][0]["contactId"] == "N0001-01" and saved["isActive"] is True
        assert ISO_MS.match(saved["lastModifiedDate"])

        no_hash = await write(c, headers, new_customer("N0001", name="Again"))
        assert no_hash["submitResult"]["success"] is False and no_hash["customerV2s"] == []
        assert no_hash["submitResult"]["errors"][0] == {
            "index": 0, "fieldName": "customerCode", "message": "Record already exists", "severity": "error"}

        updated = await write(c, headers, {"customerCode": "N0001", "creditLimit": 5000,
                                           "concurrencyHash": saved["concurrencyHash"]})
        assert updated["submitResult"]["success"] is True
        after = updated["customerV2s"][0]
        assert after["dataOperation"] == "U" and after["creditLimit"] == 5000
        assert after["name"] == saved["name"]
        assert after["concurrencyHash"] != saved["concurrencyHash"]
        assert after["lastModifiedDate"] > saved["lastModifiedDate"]

        stale = await write(c, headers, {"customerCode": "N0001", "creditLimit": 1,
                                         "concurrencyHash": saved["concurrencyHash"]})
        assert stale["submitResult"]["errors"][0]["message"] == "Record changed by another user"
        assert sandbox.store.get("customerV2s", "N0001")["creditLimit"] == 5000  # type: ignore[index]

        ghost = await write(c, headers, new_customer("N0404", concurrencyHash="abc"))
        assert ghost["submitResult"]["errors"][0]["message"] == "Record not found"
    run(sandbox, scenario)


def test_batch_is_all_or_nothing_with_indexed_errors(sandbox: QadSandbox) -> None:
    async def scenario(c: httpx.AsyncClient) -> None:
        headers = await login(c)
        batch = [new_customer("B0001"),
                 {"customerCode": "B0002", "currencyCode": "USD"},
                 new_customer("B0003", creditLimit="lots", currencyCode="XXX", colour="red"),
                 new_customer("B0001")]
        body = (await c.post(CUSTOMERS, headers=headers, json={"customerV2s": batch})).json()
        assert body["submitResult"]["success"] is False and body["customerV2s"] == []
        errors = {(e["index"], e["fieldName"]) for e in body["submitResult"]["errors"]}
        assert errors == {(1, "name"), (2, "creditLimit"), (2, "currencyCode"), (2, "colour"),
                          (3, "customerCode")}
        assert all(e["severity"] == "error" and e["message"] for e in body["submitResult"]["errors"])
        assert sandbox.store.get("customerV2s", "B0001") is None

        ok = (await c.post(CUSTOMERS, headers=headers,
                           json={"customerV2s": [new_customer("B0001"), new_customer("B0002")]})).json()
        assert ok["submitResult"]["success"] is True
        stamps = [r["lastModifiedDate"] for r in ok["customerV2s"]]
        assert stamps[0] < stamps[1], "timestamps strictly increase within one batch"
        assert sandbox.store.all("customerV2s")[-1]["customerCode"] == "B0002"
    run(sandbox, scenario)


def test_sales_order_references_are_checked(sandbox: QadSandbox) -> None:
    store = sandbox.store
    active = [r for r in store.all("items") if r["itemStatus"] == "ACTIVE"][:2]
    customer = next(r for r in store.all("customerV2s") if r["isActive"])
    order = {"salesOrderNumber": "W0000001", "customerCode": customer["customerCode"], "currencyCode": "USD",
             "externalReference": "CRM-42",
             "lines": [{"itemCode": active[0]["itemCode"], "quantityOrdered": 2},
                       {"itemCode": "NO-SUCH-ITEM", "quantityOrdered": 1}]}

    async def scenario(c: httpx.AsyncClient) -> None:
        headers = await login(c)
        bad = (await c.post(ORDERS, headers=headers, json={"salesOrders": [order]})).json()
        assert bad["submitResult"]["success"] is False
        found = [(e["index"], e["fieldName"]) for e in bad["submitResult"]["errors"]]
        assert found == [(0, "lines[1].itemCode")]
        unknown_customer = {**order, "customerCode": "C999999", "lines": order["lines"][:1]}
        body = (await c.post(ORDERS, headers=headers, json={"salesOrders": [unknown_customer]})).json()
        assert [e["fieldName"] for e in body["submitResult"]["errors"]] == ["customerCode"]
        second = {"itemCode": active[1]["itemCode"], "quantityOrdered": 3, "netPrice": 10.0}
        good = {**order, "lines": [order["lines"][0], second]}
        saved = (await c.post(ORDERS, headers=headers, json={"salesOrders": [good]})).json()
        assert saved["submitResult"]["success"] is True, saved
        record = saved["salesOrders"][0]
        assert record["externalReference"] == "CRM-42" and record["status"] == "open"
        assert [ln["lineNumber"] for ln in record["lines"]] == [1, 2]
        assert record["totalAmount"] == round(2 * active[0]["listPrice"] + 30.0, 2)
    run(sandbox, scenario)


def test_write_request_errors_are_http_400(sandbox: QadSandbox) -> None:
    async def scenario(c: httpx.AsyncClient) -> None:
        headers = await login(c)
        too_many = [new_customer(f"M{i:04d}") for i in range(101)]
        assert (await c.post(CUSTOMERS, headers=headers, json={"customerV2s": too_many})).status_code == 400
        malformed = await c.post(CUSTOMERS, headers={**headers, "content-type": "application/json"},
                                 content=b"{not json")
        assert malformed.status_code == 400 and malformed.json()["submitResult"]["success"] is False
        assert (await c.post(CUSTOMERS, headers=headers, json={"items": []})).status_code == 400
        assert sandbox.store.count("customerV2s") == 300
    run(sandbox, scenario)


# ---- rate limit, browse, observation ------------------------------------------------------------------

def test_rate_limit_returns_429_with_retry_after(sandbox: QadSandbox, clock: ManualClock) -> None:
    sandbox.config["rate_per_second"] = 5

    async def scenario(c: httpx.AsyncClient) -> None:
        headers = await login(c)
        statuses = [(await c.get(f"{CUSTOMERS}/C000001", headers=headers)).status_code for _ in range(5)]
        assert statuses == [200] * 5
        limited = await c.get(f"{CUSTOMERS}/C000001", headers=headers)
        assert limited.status_code == 429 and int(limited.headers["retry-after"]) >= 1
        assert limited.json()["error"] == "too_many_requests"
        other = await login(c)  # the limit is per access token
        assert (await c.get(f"{CUSTOMERS}/C000001", headers=other)).status_code == 200
        clock.advance(0.99)
        assert (await c.get(f"{CUSTOMERS}/C000001", headers=headers)).status_code == 429  # same second
        clock.advance(0.02)
        assert (await c.get(f"{CUSTOMERS}/C000001", headers=headers)).status_code == 200
    run(sandbox, scenario)


def test_browse_requires_page_and_page_action(sandbox: QadSandbox) -> None:
    browse_id = "urn:browse:bebrowse:com.qad.erp.base.customerV2s"

    async def scenario(c: httpx.AsyncClient) -> None:
        headers = await login(c)
        quirk = await c.get(BROWSES, headers=headers, params={"browseId": browse_id, "pageSize": 10})
        assert quirk.status_code == 200 and quirk.json() == {"data": []}
        rows = (await c.get(BROWSES, headers=headers, params={
            "browseId": browse_id, "page": 1, "pageSize": 10, "pageAction": "first"})).json()["data"]
        assert len(rows) == 10 and all(not isinstance(v, list | dict) for r in rows for v in r.values())
        assert [r["customerCode"] for r in rows] == [r["customerCode"] for r in sandbox.store.all(
            "customerV2s", 10)]
        filtered = (await c.get(BROWSES, headers=headers, params={
            "browseId": browse_id, "page": 1, "pageSize": 100, "pageAction": "first",
            "filter": "customerV2.customerCode,eq,C000005,literal"})).json()["data"]
        assert [r["customerCode"] for r in filtered] == ["C000005"]
        wrong = await c.get(BROWSES, headers=headers, params={
            "browseId": "urn:browse:bebrowse:com.qad.erp.sales.customerV2s", "page": 1,
            "pageAction": "first"})
        assert wrong.status_code == 400
        orders = (await c.get(BROWSES, headers=headers, params={
            "browseId": "urn:browse:bebrowse:com.qad.erp.sales.salesOrders", "page": 1,
            "pageAction": "first"})).json()["data"]
        assert len(orders) == 30 and "lines" not in orders[0]
    run(sandbox, scenario)


def test_request_log_counts_and_admin_is_not_logged(sandbox: QadSandbox) -> None:
    async def scenario(c: httpx.AsyncClient) -> None:
        headers = await login(c)
        await c.get(CUSTOMERS, headers=headers)
        await c.get(CUSTOMERS, headers=headers, params={"page": 2})
        await c.post(CUSTOMERS, headers=headers, json={"customerV2s": [new_customer("L0001")]})
        await c.get("/_admin/records/customerV2s/L0001")
        summary = (await c.get("/_admin/requests")).json()
        assert summary["total"] == 4 and summary["writes"] == 2 and summary["reads"] == 2
        assert summary["counts"]["GET /clouderp/api/erp/customerV2s"] == 2
        assert summary["counts"]["POST /clouderp/oauth/token"] == 1
    run(sandbox, scenario)


def test_fault_injection_fires_once(sandbox: QadSandbox) -> None:
    async def scenario(c: httpx.AsyncClient) -> None:
        headers = await login(c)
        await c.post("/_admin/faults", json={"method": "GET", "path": CUSTOMERS, "status": 503,
                                             "headers": {"Retry-After": "1"}})
        first = await c.get(CUSTOMERS, headers=headers)
        assert first.status_code == 503 and first.headers["retry-after"] == "1"
        assert (await c.get(CUSTOMERS, headers=headers)).status_code == 200
        statuses = (await c.get("/_admin/requests")).json()["statuses"]
        assert statuses["503"] == 1
    run(sandbox, scenario)


def test_unknown_routes_and_methods_answer_json(sandbox: QadSandbox) -> None:
    async def scenario(c: httpx.AsyncClient) -> None:
        headers = await login(c)
        for response in (await c.get("/clouderp/api/nowhere"), await c.delete(CUSTOMERS, headers=headers),
                         await c.get("/clouderp/api/erp/widgets", headers=headers),
                         await c.get(TOKEN_URL)):
            assert response.status_code in {404, 405}
            assert response.headers["content-type"].startswith("application/json")
    run(sandbox, scenario)


def test_late_page_of_a_large_sandbox() -> None:
    started = time.perf_counter()
    box = create_qad_sandbox(customers=200_000, items=10)
    seeded_in = time.perf_counter() - started
    box.config["rate_per_second"] = 0

    async def scenario(c: httpx.AsyncClient) -> tuple[dict[str, Any], dict[str, Any]]:
        headers = await login(c)
        late = (await c.get(CUSTOMERS, headers=headers, params={"page": 1500, "pageSize": 100})).json()
        before = (await c.get(CUSTOMERS, headers=headers, params={"page": 1499, "pageSize": 100})).json()
        return late, before

    late, before = run(box, scenario)
    assert late["totalCount"] == 200_000 and late["hasMore"] is True and len(late["data"]) == 100
    keys = [sort_key(r) for r in before["data"] + late["data"]]
    assert keys == sorted(keys) and len(set(keys)) == 200
    pivot = late["data"][0]
    assert box.store.get("customerV2s", pivot["customerCode"]) == pivot
    print(f"seeded 200k customers in {seeded_in:.2f}s")
