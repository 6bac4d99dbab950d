"""Tests of the Zoho CRM sandbox (in-process through httpx.ASGITransport; facts: shared/api-facts/zoho-crm.md)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import httpx
import pytest

from ml_connector.sandbox.core import ManualClock
from ml_connector.sandbox.registry import create_sandbox, default_port
from ml_connector.sandbox.zoho import ZohoSandbox, create_zoho_sandbox
from ml_connector.sandbox.zoho import store as store_module
from ml_connector.sandbox.zoho.store import Change, ZohoStore

T = TypeVar("T")
US = "http://127.0.0.1"
EU = "http://127.0.0.2"
IN = "http://127.0.0.3"
START = 1_767_225_600.0  # ManualClock's default: 2026-01-01T00:00:00Z
EU_ORG = {"client_id": "1000.SANDBOXEUCLIENT0000000000000", "client_secret": "sandbox-eu-client-secret",
          "refresh_token": "1000.sandbox-eu-refresh-token.0000000000000000", "grant_type": "refresh_token"}
US_ORG = {"client_id": "1000.SANDBOXUSCLIENT0000000000000", "client_secret": "sandbox-us-client-secret",
          "refresh_token": "1000.sandbox-us-refresh-token.0000000000000000", "grant_type": "refresh_token"}
VENDOR_FIELDS = "Vendor_Name,Email,ERP_Key,Modified_Time"


def make(clock: ManualClock | None = None, **options: Any) -> ZohoSandbox:
    return create_zoho_sandbox(clock=clock or ManualClock(), **options)


def run(sandbox: ZohoSandbox, scenario: Callable[[httpx.AsyncClient], Awaitable[T]]) -> T:
    async def go() -> T:
        transport = httpx.ASGITransport(app=sandbox)
        async with httpx.AsyncClient(transport=transport, base_url=EU) as client:
            return await scenario(client)

    return asyncio.run(go())


async def token(client: httpx.AsyncClient, base: str = EU, org: dict[str, str] | None = None) -> dict[str, str]:
    response = await client.post(f"{base}/oauth/v2/token", data=org or EU_ORG)
    assert response.status_code == 200 and "access_token" in response.json(), response.text
    return {"Authorization": f"Zoho-oauthtoken {response.json()['access_token']}"}


def vendor(n: int, **extra: Any) -> dict[str, Any]:
    return {"Vendor_Name": f"Vendor {n}", "ERP_Key": f"V-{n}", **extra}


# -- data centers and OAuth ---------------------------------------------------------------------------------------
def test_token_refresh_answers_the_orgs_api_domain_with_the_request_port() -> None:
    async def scenario(client: httpx.AsyncClient) -> list[dict[str, Any]]:
        form = await client.post("http://127.0.0.2:8703/oauth/v2/token", data=EU_ORG)
        query = await client.post(f"{US}/oauth/v2/token", params=US_ORG)
        return [form.json(), query.json()]

    eu, us = run(make(), scenario)
    assert eu["api_domain"] == "http://127.0.0.2:8703" and us["api_domain"] == "http://127.0.0.1"
    assert {k: v for k, v in eu.items() if k != "access_token"} == {
        "scope": eu["scope"], "api_domain": "http://127.0.0.2:8703", "token_type": "Bearer", "expires_in": 3600}
    assert "ZohoCRM.modules.ALL" in eu["scope"].split() and eu["access_token"].startswith("1000.")


def test_token_errors_come_back_as_http_200_with_an_error_body() -> None:
    async def scenario(client: httpx.AsyncClient) -> list[tuple[int, Any]]:
        out = []
        for change in ({"refresh_token": "1000.nope"}, {"client_id": "1000.UNKNOWN"}, {"client_secret": "x"}):
            response = await client.post(f"{EU}/oauth/v2/token", data={**EU_ORG, **change})
            out.append((response.status_code, response.json()))
        return out

    assert run(make(), scenario) == [(200, {"error": "invalid_code"}), (200, {"error": "invalid_client"}),
                                     (200, {"error": "invalid_client_secret"})]


def test_a_refresh_token_at_another_dcs_accounts_host_is_invalid_client_unless_switched_off() -> None:
    async def scenario(client: httpx.AsyncClient) -> Any:
        return (await client.post(f"{US}/oauth/v2/token", data=EU_ORG)).json()

    assert run(make(), scenario) == {"error": "invalid_client"}
    assert run(make(accounts_must_match_dc=False), scenario)["api_domain"] == "http://127.0.0.2"


def test_eleven_token_requests_in_ten_minutes_are_access_denied() -> None:
    clock = ManualClock()

    async def scenario(client: httpx.AsyncClient) -> list[tuple[int, Any]]:
        answers = [await client.post(f"{EU}/oauth/v2/token", data=EU_ORG) for _ in range(11)]
        clock.advance(600)
        answers.append(await client.post(f"{EU}/oauth/v2/token", data=EU_ORG))
        return [(a.status_code, "access_token" in a.json() or a.json()) for a in answers]

    results = run(make(clock), scenario)
    assert results[:10] == [(200, True)] * 10 and results[11] == (200, True)
    assert results[10] == (400, {"error_description": "You have made too many requests continuously. Please try "
                                 "again after some time.", "error": "Access Denied", "status": "failure"})


def test_the_sixteenth_access_token_invalidates_the_oldest() -> None:
    async def scenario(client: httpx.AsyncClient) -> list[int]:
        headers = [await token(client) for _ in range(16)]
        return [(await client.get(f"{EU}/crm/v8/org", headers=h)).status_code for h in (headers[0], headers[1])]

    assert run(make(token_requests_per_10min=100), scenario) == [401, 200]


def test_api_calls_need_a_live_zoho_oauthtoken_of_the_hosts_dc() -> None:
    clock = ManualClock()

    async def scenario(client: httpx.AsyncClient) -> list[tuple[int, str]]:
        auth = await token(client)
        bearer = {"Authorization": auth["Authorization"].replace("Zoho-oauthtoken", "Bearer")}
        answers = [await client.get(f"{EU}/crm/v8/org", headers=auth),
                   await client.get(f"{EU}/crm/v8/org", headers=bearer),
                   await client.get(f"{EU}/crm/v8/org"),
                   await client.get(f"{US}/crm/v8/org", headers=auth),
                   await client.get("http://127.0.0.9/crm/v8/org", headers=auth)]
        clock.advance(3600)
        answers.append(await client.get(f"{EU}/crm/v8/org", headers=auth))
        return [(a.status_code, a.json()["code"] if a.status_code != 200 else "") for a in answers]

    assert run(make(clock), scenario) == [(200, ""), (401, "INVALID_TOKEN"), (401, "AUTHENTICATION_FAILURE"),
                                          (401, "INVALID_TOKEN"), (400, "INVALID_HOST"), (401, "INVALID_TOKEN")]


def test_invalid_token_envelope_and_admin_expiry() -> None:
    sandbox = make()

    async def scenario(client: httpx.AsyncClient) -> httpx.Response:
        auth = await token(client)
        assert (await client.get(f"{EU}/crm/v8/org", headers=auth)).status_code == 200
        assert (await client.post(f"{EU}/_admin/tokens/expire")).json() == {"expired": 1}
        return await client.get(f"{EU}/crm/v8/org", headers=auth)

    response = run(sandbox, scenario)
    assert response.status_code == 401
    assert response.headers["content-type"] == "application/json;charset=UTF-8"
    assert response.json() == {"code": "INVALID_TOKEN", "details": {}, "message": "invalid oauth token",
                               "status": "error"}


def test_each_org_has_its_own_records_and_the_in_dc_has_no_org() -> None:
    async def scenario(client: httpx.AsyncClient) -> list[Any]:
        us = await token(client, US, US_ORG)
        eu = await token(client)
        inserted = await client.post(f"{US}/crm/v8/Vendors", json={"data": [vendor(1)]}, headers=us)
        listed_us = await client.get(f"{US}/crm/v8/Vendors", params={"fields": "Vendor_Name"}, headers=us)
        listed_eu = await client.get(f"{EU}/crm/v8/Vendors", params={"fields": "Vendor_Name"}, headers=eu)
        india = await client.post(f"{IN}/oauth/v2/token", data=EU_ORG)
        return [inserted.status_code, [r["Vendor_Name"] for r in listed_us.json()["data"]], listed_eu.status_code,
                india.json()]

    assert run(make(), scenario) == [201, ["Vendor 1"], 204, {"error": "invalid_client"}]


# -- list ---------------------------------------------------------------------------------------------------------
def test_list_needs_fields_and_at_most_fifty() -> None:
    async def scenario(client: httpx.AsyncClient) -> list[Any]:
        auth = await token(client)
        missing = await client.get(f"{EU}/crm/v8/Vendors", headers=auth)
        too_many = await client.get(f"{EU}/crm/v8/Vendors", params={"fields": ",".join(["Email"] * 51)},
                                    headers=auth)
        unknown = await client.get(f"{EU}/crm/v8/Vendorz", params={"fields": "Email"}, headers=auth)
        return [(r.status_code, r.json()) for r in (missing, too_many, unknown)]

    missing, too_many, unknown = run(make(vendors=1), scenario)
    assert missing == (400, {"code": "REQUIRED_PARAM_MISSING", "details": {"param_name": "fields"},
                             "message": "One of the expected parameter is missing", "status": "error"})
    assert too_many[0] == 400 and too_many[1]["code"] == "LIMIT_EXCEEDED"
    assert unknown == (400, {"code": "INVALID_MODULE", "details": {"resource_path_index": 0},
                             "message": "the module name given seems to be invalid", "status": "error"})


def test_list_pages_by_id_descending_with_a_next_page_token_from_page_one() -> None:
    sandbox = make(vendors=5)
    ids = [r["id"] for r in sandbox.store.all_raw("Vendors")]

    async def scenario(client: httpx.AsyncClient) -> list[Any]:
        auth = await token(client)
        first = await client.get(f"{EU}/crm/v8/Vendors", params={"fields": "Vendor_Name", "per_page": 2},
                                 headers=auth)
        last = await client.get(f"{EU}/crm/v8/Vendors", params={"fields": "Vendor_Name", "per_page": 2, "page": 3},
                                headers=auth)
        beyond = await client.get(f"{EU}/crm/v8/Vendors", params={"fields": "Vendor_Name", "per_page": 2,
                                                                  "page": 4}, headers=auth)
        return [first.json(), last.json(), beyond.status_code, beyond.content]

    first, last, beyond_status, beyond_body = run(sandbox, scenario)
    assert [r["id"] for r in first["data"]] == [ids[4], ids[3]]
    assert set(first["data"][0]) == {"id", "Vendor_Name"}
    info = first["info"]
    assert info["per_page"] == 2 and info["count"] == 2 and info["page"] == 1 and info["more_records"] is True
    assert info["sort_by"] == "id" and info["sort_order"] == "desc" and info["next_page_token"]
    assert info["page_token_expiry"] == "2026-01-02T00:00:00+00:00"
    assert [r["id"] for r in last["data"]] == [ids[0]]
    assert last["info"]["more_records"] is False and last["info"]["next_page_token"] is None
    assert (beyond_status, beyond_body) == (204, b"")


def test_page_numbers_stop_at_2000_records_and_page_tokens_go_on() -> None:
    sandbox = make(vendors=2_010)

    async def scenario(client: httpx.AsyncClient) -> list[Any]:
        auth = await token(client)
        params = {"fields": "Vendor_Name", "sort_order": "asc"}
        too_far = await client.get(f"{EU}/crm/v8/Vendors", params={**params, "page": 11}, headers=auth)
        seen: list[str] = []
        page = await client.get(f"{EU}/crm/v8/Vendors", params={**params, "page": 10}, headers=auth)
        seen += [r["id"] for r in page.json()["data"]]
        tok = page.json()["info"]["next_page_token"]
        page = await client.get(f"{EU}/crm/v8/Vendors", params={**params, "page_token": tok}, headers=auth)
        seen += [r["id"] for r in page.json()["data"]]
        return [too_far.json()["code"], seen, page.json()["info"]]

    code, seen, info = run(sandbox, scenario)
    ids = [r["id"] for r in sandbox.store.all_raw("Vendors")]
    assert code == "DISCRETE_PAGINATION_LIMIT_EXCEEDED"
    assert seen == ids[1800:]
    assert info["more_records"] is False and info["count"] == 10 and info["page"] == 11


def test_page_token_errors() -> None:
    clock = ManualClock()
    sandbox = make(clock, vendors=9, page_token_cap=4)

    async def scenario(client: httpx.AsyncClient) -> list[str]:
        auth = await token(client)
        params = {"fields": "Vendor_Name", "per_page": 2}
        tok = (await client.get(f"{EU}/crm/v8/Vendors", params=params, headers=auth)).json()["info"]["next_page_token"]
        tok2 = (await client.get(f"{EU}/crm/v8/Vendors", params={**params, "page_token": tok},
                                 headers=auth)).json()["info"]["next_page_token"]
        cases = [{**params, "page_token": tok, "page": 2}, {**params, "page_token": tok, "fields": "Email"},
                 {**params, "page_token": "garbage"}, {**params, "page_token": tok2}]
        codes = [(await client.get(f"{EU}/crm/v8/Vendors", params=p, headers=auth)).json()["code"] for p in cases]
        clock.advance(86_400)
        auth = await token(client)
        codes.append((await client.get(f"{EU}/crm/v8/Vendors", params={**params, "page_token": tok},
                                       headers=auth)).json()["code"])
        return codes

    assert run(sandbox, scenario) == ["AMBIGUITY_DURING_PROCESSING", "TOKEN_BOUND_DATA_MISMATCH", "INVALID_DATA",
                                      "PAGINATION_LIMIT_EXCEEDED", "EXPIRED_VALUE"]


def test_if_modified_since_returns_newer_records_by_modified_time_or_304() -> None:
    clock = ManualClock()
    sandbox = make(clock, vendors=3)
    ids = [r["id"] for r in sandbox.store.all_raw("Vendors")]

    async def scenario(client: httpx.AsyncClient) -> list[Any]:
        auth = await token(client)
        since = {**auth, "If-Modified-Since": "2026-01-01T00:00:00+00:00"}
        params = {"fields": "Vendor_Name", "sort_by": "Modified_Time", "sort_order": "asc"}
        none = await client.get(f"{EU}/crm/v8/Vendors", params=params, headers=since)
        clock.advance(10)
        await client.put(f"{EU}/crm/v8/Vendors/{ids[0]}", json={"data": [{"Email": "a@b.example"}]}, headers=auth)
        one = await client.get(f"{EU}/crm/v8/Vendors", params=params, headers=since)
        by_id = await client.get(f"{EU}/crm/v8/Vendors", params={"fields": "Vendor_Name"},
                                 headers={**auth, "If-Modified-Since": "2026-01-01T01:00:00+01:00"})
        return [none.status_code, none.content, [r["id"] for r in one.json()["data"]],
                [r["id"] for r in by_id.json()["data"]]]

    assert run(sandbox, scenario) == [304, b"", [ids[0]], [ids[0]]]


def test_get_by_id_has_line_items_and_unknown_ids_are_204_or_invalid_data() -> None:
    sandbox = make(vendors=1, products=2, purchase_orders=1)
    po = sandbox.store.all_raw("Purchase_Orders")[0]

    async def scenario(client: httpx.AsyncClient) -> list[Any]:
        auth = await token(client)
        one = await client.get(f"{EU}/crm/v8/Purchase_Orders/{po['id']}", headers=auth)
        listed = await client.get(f"{EU}/crm/v8/Purchase_Orders", params={"fields": "Subject,Purchase_Items"},
                                  headers=auth)
        unknown = await client.get(f"{EU}/crm/v8/Purchase_Orders/4150868999999999999", headers=auth)
        return [one.json()["data"][0], listed.json()["data"], unknown.status_code]

    one, listed, unknown = run(sandbox, scenario)
    assert one["Purchase_Items"] and one["$has_more"] == {"Purchase_Items": False}
    row = one["Purchase_Items"][0]
    assert row["Product_Name"]["name"].endswith(("00001", "00002")) and row["Parent_Id"]["id"] == po["id"]
    assert row["Total"] == round(row["Quantity"] * row["List_Price"], 2)
    assert one["Vendor_Name"] == {"id": po["Vendor_Name"]["id"], "name": po["Vendor_Name"]["name"]}
    assert listed == [{"id": po["id"], "Subject": "PO-00001"}]
    assert unknown == 204

    strict = make(vendors=1, unknown_id_status=400)

    async def invalid(client: httpx.AsyncClient) -> Any:
        return (await client.get(f"{EU}/crm/v8/Vendors/4150868999999999999", headers=await token(client))).json()

    assert run(strict, invalid)["code"] == "INVALID_DATA"


def test_list_by_ids() -> None:
    sandbox = make(vendors=3)
    ids = [r["id"] for r in sandbox.store.all_raw("Vendors")]

    async def scenario(client: httpx.AsyncClient) -> list[str]:
        response = await client.get(f"{EU}/crm/v8/Vendors", params={"fields": "Vendor_Name",
                                                                   "ids": f"{ids[2]},{ids[0]},4150868999999999999"},
                                    headers=await token(client))
        return [r["id"] for r in response.json()["data"]]

    assert run(sandbox, scenario) == [ids[2], ids[0]]


def test_a_page_reads_only_its_own_records_whatever_the_store_size(monkeypatch: pytest.MonkeyPatch) -> None:
    sandbox = make(vendors=5_000)
    calls: list[str] = []
    original = ZohoStore._public

    def counted(self: ZohoStore, module: str, rec: dict[str, Any], subforms: bool) -> dict[str, Any]:
        calls.append(rec["id"])
        return original(self, module, rec, subforms)

    monkeypatch.setattr(ZohoStore, "_public", counted)

    async def scenario(client: httpx.AsyncClient) -> int:
        auth = await token(client)
        page = await client.get(f"{EU}/crm/v8/Vendors", params={"fields": "Vendor_Name", "page": 10, "per_page": 200,
                                                               "sort_by": "Modified_Time"}, headers=auth)
        tok = page.json()["info"]["next_page_token"]
        calls.clear()
        page = await client.get(f"{EU}/crm/v8/Vendors", params={"fields": "Vendor_Name", "page_token": tok,
                                                               "per_page": 200, "sort_by": "Modified_Time"},
                                headers=auth)
        return len(page.json()["data"])

    assert run(sandbox, scenario) == 200
    assert len(calls) == 200


# -- writes -------------------------------------------------------------------------------------------------------
def test_insert_answers_201_for_one_and_202_for_several_with_details() -> None:
    clock = ManualClock()
    sandbox = make(clock)

    async def scenario(client: httpx.AsyncClient) -> list[httpx.Response]:
        auth = await token(client)
        return [await client.post(f"{EU}/crm/v8/Vendors", json={"data": [vendor(1)]}, headers=auth),
                await client.post(f"{EU}/crm/v8/Vendors", json={"data": [vendor(2), vendor(3)]}, headers=auth)]

    changes: list[Change] = []
    sandbox.store.listen(changes.append)
    one, two = run(sandbox, scenario)
    assert (one.status_code, two.status_code) == (201, 202)
    assert [(c.operation, len(c.ids)) for c in changes] == [("insert", 1), ("insert", 2)]
    result = one.json()["data"][0]
    user = {"name": "Eva Lang", "id": "4150868000000225014"}
    assert result == {"code": "SUCCESS", "details": {
        "Modified_Time": "2026-01-01T00:00:00+00:00", "Modified_By": user, "Created_Time": "2026-01-01T00:00:00+00:00",
        "id": result["details"]["id"], "Created_By": user}, "message": "record added", "status": "success"}
    assert len(result["details"]["id"]) == 19
    assert [r["Vendor_Name"] for r in sandbox.store.all_raw("Vendors")] == ["Vendor 1", "Vendor 2", "Vendor 3"]


def test_write_validation_reports_each_record_in_input_order() -> None:
    sandbox = make(vendors=1)
    vendor_id = sandbox.store.all_raw("Vendors")[0]["id"]

    async def scenario(client: httpx.AsyncClient) -> httpx.Response:
        await client.post(f"{EU}/crm/v8/Products", json={"data": [{"Product_Name": "X", "ERP_Key": "P-1"}]},
                          headers=await token(client))
        data = [
            {"Product_Name": "ok", "Unit_Price": 2.5, "Vendor_Name": {"id": vendor_id}, "ERP_Key": "P-2"},
            {"Product_Code": "no name"},
            {"Product_Name": "bad price", "Unit_Price": "12"},
            {"Product_Name": "dup", "ERP_Key": "p-1"},
            {"Product_Name": "x" * 121},
            {"Product_Name": "bad unit", "Usage_Unit": "EA"},
            {"Product_Name": "ghost vendor", "Vendor_Name": {"id": "4150868999999999999"}},
            {"Product_Name": "read only", "Created_Time": "2025-01-01T00:00:00+00:00"},
            {"Product_Name": "unknown", "Colour": "red"},
            {"Product_Name": "bad flag", "Product_Active": "true"},
        ]
        return await client.post(f"{EU}/crm/v8/Products", json={"data": data}, headers=await token(client))

    response = run(sandbox, scenario)
    assert response.status_code == 207
    results = response.json()["data"]
    assert results[0]["status"] == "success"
    assert [(r["code"], r["details"].get("api_name")) for r in results[1:]] == [
        ("MANDATORY_NOT_FOUND", "Product_Name"), ("INVALID_DATA", "Unit_Price"), ("DUPLICATE_DATA", "ERP_Key"),
        ("INVALID_DATA", "Product_Name"), ("INVALID_DATA", "Usage_Unit"), ("INVALID_DATA", "Vendor_Name"),
        ("INVALID_DATA", "Created_Time"), ("INVALID_DATA", "Colour"), ("INVALID_DATA", "Product_Active")]
    assert results[1] == {"code": "MANDATORY_NOT_FOUND", "details": {"api_name": "Product_Name",
                                                                     "json_path": "$.data[1].Product_Name"},
                          "message": "required field not found", "status": "error"}
    assert results[2]["details"] == {"api_name": "Unit_Price", "json_path": "$.data[2].Unit_Price",
                                     "expected_data_type": "double"}
    products = sandbox.store.all_raw("Products")
    assert results[3]["details"]["duplicate_record"]["id"] == products[0]["id"]
    assert results[4]["details"]["maximum_length"] == 120
    assert [p["Product_Name"] for p in products] == ["X", "ok"]


def test_a_batch_where_every_record_fails_is_400_and_over_100_is_limit_exceeded() -> None:
    async def scenario(client: httpx.AsyncClient) -> list[Any]:
        auth = await token(client)
        failed = await client.post(f"{EU}/crm/v8/Vendors", json={"data": [{"Email": "x@y.example"}]}, headers=auth)
        big = await client.post(f"{EU}/crm/v8/Vendors", json={"data": [vendor(n) for n in range(101)]},
                                headers=auth)
        not_json = await client.post(f"{EU}/crm/v8/Vendors", content=b"{oops", headers=auth)
        return [failed.status_code, failed.json()["data"][0]["code"], big.status_code, big.json()["code"],
                not_json.json()["code"]]

    assert run(make(), scenario) == [400, "MANDATORY_NOT_FOUND", 400, "LIMIT_EXCEEDED", "INVALID_DATA"]


def test_update_bumps_modified_time_needs_ids_and_notifies_listeners() -> None:
    clock = ManualClock()
    sandbox = make(clock, vendors=2)
    ids = [r["id"] for r in sandbox.store.all_raw("Vendors")]
    changes: list[Change] = []
    sandbox.store.listen(changes.append)

    async def scenario(client: httpx.AsyncClient) -> list[Any]:
        auth = await token(client)
        clock.advance(30)
        many = await client.put(f"{EU}/crm/v8/Vendors", headers=auth, json={"data": [
            {"id": ids[0], "City": "Oslo"}, {"City": "no id"}, {"id": "4150868999999999999", "City": "ghost"}]})
        one = await client.put(f"{EU}/crm/v8/Vendors/{ids[1]}", headers=auth, json={"data": [{"Phone": "+1 5"}]})
        return [many.status_code, [r["code"] for r in many.json()["data"]], one.status_code,
                one.json()["data"][0]["details"]["Modified_Time"]]

    assert run(sandbox, scenario) == [207, ["SUCCESS", "MANDATORY_NOT_FOUND", "INVALID_DATA"], 200,
                                      "2026-01-01T00:00:30+00:00"]
    assert sandbox.store.get("Vendors", ids[0])["City"] == "Oslo"  # type: ignore[index]
    assert changes == [Change("Vendors", "update", (ids[0],), START + 30, ("City",)),
                       Change("Vendors", "update", (ids[1],), START + 30, ("Phone",))]


def test_upsert_matches_on_the_erp_key_and_reports_action_and_duplicate_field() -> None:
    clock = ManualClock()
    sandbox = make(clock)

    async def scenario(client: httpx.AsyncClient) -> list[Any]:
        auth = await token(client)
        body = {"data": [vendor(1, City="Rome")], "duplicate_check_fields": ["ERP_Key"]}
        first = await client.post(f"{EU}/crm/v8/Vendors/upsert", json=body, headers=auth)
        clock.advance(60)
        second = await client.post(f"{EU}/crm/v8/Vendors/upsert", json=body, headers=auth)
        renamed = await client.post(f"{EU}/crm/v8/Vendors/upsert", headers=auth,
                                    json={"data": [vendor(1, Vendor_Name="Renamed")]})
        bad = await client.post(f"{EU}/crm/v8/Vendors/upsert", headers=auth,
                                json={"data": [vendor(2)], "duplicate_check_fields": ["City"]})
        return [first, second, renamed, bad]

    first, second, renamed, bad = run(sandbox, scenario)
    a, b, c = (r.json()["data"][0] for r in (first, second, renamed))
    assert (a["action"], a["duplicate_field"], a["message"]) == ("insert", None, "record added")
    assert (b["action"], b["duplicate_field"], b["message"]) == ("update", "ERP_Key", "record updated")
    assert b["details"]["id"] == a["details"]["id"] and b["details"]["Modified_Time"] == "2026-01-01T00:01:00+00:00"
    assert (c["action"], c["duplicate_field"]) == ("update", "ERP_Key")  # Vendor_Name differs, ERP_Key matches
    assert first.status_code == 200 and bad.status_code == 400
    assert bad.json() == {"code": "INVALID_DATA", "details": {"api_name": "City",
                                                              "json_path": "$.duplicate_check_fields[0]"},
                          "message": "invalid data", "status": "error"}
    assert [r["Vendor_Name"] for r in sandbox.store.all_raw("Vendors")] == ["Renamed"]


def test_upsert_without_duplicate_check_fields_tries_the_system_field_first() -> None:
    sandbox = make()

    async def scenario(client: httpx.AsyncClient) -> list[Any]:
        auth = await token(client)
        await client.post(f"{EU}/crm/v8/Vendors", json={"data": [{"Vendor_Name": "Acme"}]}, headers=auth)
        response = await client.post(f"{EU}/crm/v8/Vendors/upsert", headers=auth,
                                     json={"data": [{"Vendor_Name": "ACME", "ERP_Key": "V-9"}]})
        return [response.json()["data"][0][k] for k in ("action", "duplicate_field")]

    assert run(sandbox, scenario) == ["update", "Vendor_Name"]


def test_line_items_rows_with_id_update_without_id_add_and_left_out_drop() -> None:
    sandbox = make(vendors=1, products=2)
    vendor_id = sandbox.store.all_raw("Vendors")[0]["id"]
    p1, p2 = (r["id"] for r in sandbox.store.all_raw("Products"))

    async def scenario(client: httpx.AsyncClient) -> list[Any]:
        auth = await token(client)
        created = await client.post(f"{EU}/crm/v8/Purchase_Orders", headers=auth, json={"data": [{
            "Subject": "PO-1", "Vendor_Name": {"id": vendor_id}, "Status": "Created", "Purchase_Items": [
                {"Product_Name": {"id": p1}, "Quantity": 2, "List_Price": 10.0},
                {"Product_Name": {"id": p2}, "Quantity": 1, "List_Price": 5.0}]}]})
        po_id = created.json()["data"][0]["details"]["id"]
        rows = (await client.get(f"{EU}/crm/v8/Purchase_Orders/{po_id}", headers=auth)).json()["data"][0]
        first = rows["Purchase_Items"][0]["id"]
        updated = await client.put(f"{EU}/crm/v8/Purchase_Orders/{po_id}", headers=auth, json={"data": [{
            "Purchase_Items": [{"id": first, "Quantity": 3}, {"Product_Name": {"id": p2}, "Quantity": 4,
                                                              "List_Price": 1.0}]}]})
        ghost = await client.post(f"{EU}/crm/v8/Purchase_Orders", headers=auth, json={"data": [{
            "Subject": "PO-2", "Vendor_Name": {"id": vendor_id},
            "Purchase_Items": [{"Product_Name": {"id": "4150868999999999999"}, "Quantity": 1}]}]})
        after = (await client.get(f"{EU}/crm/v8/Purchase_Orders/{po_id}", headers=auth)).json()["data"][0]
        return [updated.status_code, first, after, ghost.json()["data"][0]]

    changes: list[Change] = []
    sandbox.store.listen(changes.append)
    status, first, after, ghost = run(sandbox, scenario)
    assert status == 200
    assert [(c.operation, c.ids) for c in changes if c.operation == "update"] == [("update", (after["id"],))]
    items = after["Purchase_Items"]
    assert [(r["Product_Name"]["id"], r["Quantity"], r["Total"]) for r in items] == [(p1, 3, 30.0), (p2, 4, 4.0)]
    assert items[0]["id"] == first and after["Sub_Total"] == 34.0 and after["Grand_Total"] == 34.0
    assert ghost["details"] == {"api_name": "Product_Name", "expected_data_type": "lookup",
                                "json_path": "$.data[0].Purchase_Items[0].Product_Name"}


def test_line_items_left_out_are_kept_when_switched() -> None:
    sandbox = make(vendors=1, products=1, purchase_orders=1, drop_missing_rows=False)
    po = sandbox.store.all_raw("Purchase_Orders")[0]
    product = sandbox.store.all_raw("Products")[0]["id"]

    async def scenario(client: httpx.AsyncClient) -> int:
        auth = await token(client)
        await client.put(f"{EU}/crm/v8/Purchase_Orders/{po['id']}", headers=auth, json={"data": [{
            "Purchase_Items": [{"Product_Name": {"id": product}, "Quantity": 1}]}]})
        return len((await client.get(f"{EU}/crm/v8/Purchase_Orders/{po['id']}",
                                     headers=auth)).json()["data"][0]["Purchase_Items"])

    assert run(sandbox, scenario) == len(po["Purchase_Items"]) + 1


def test_sales_orders_need_an_account_and_a_known_status() -> None:
    sandbox = make(accounts=1, sales_order_statuses=["Created", "Won"])
    account = sandbox.store.all_raw("Accounts")[0]["id"]

    async def scenario(client: httpx.AsyncClient) -> list[str]:
        response = await client.post(f"{EU}/crm/v8/Sales_Orders", headers=await token(client), json={"data": [
            {"Subject": "SO-1"}, {"Subject": "SO-2", "Account_Name": {"id": account}, "Status": "Won"},
            {"Subject": "SO-3", "Account_Name": {"id": account}, "Status": "Delivered"}]})
        return [r["code"] for r in response.json()["data"]]

    assert run(sandbox, scenario) == ["MANDATORY_NOT_FOUND", "SUCCESS", "INVALID_DATA"]


def test_vendor_invoices_custom_module_with_lookups() -> None:
    sandbox = make(vendors=1, products=1, purchase_orders=1)
    vendor_id = sandbox.store.all_raw("Vendors")[0]["id"]
    po_id = sandbox.store.all_raw("Purchase_Orders")[0]["id"]

    async def scenario(client: httpx.AsyncClient) -> Any:
        auth = await token(client)
        response = await client.post(f"{EU}/crm/v8/Vendor_Invoices/upsert", headers=auth, json={"data": [{
            "Name": "INV-1", "Invoice_Reference": "R-1", "Invoice_Date": "2025-12-01", "Due_Date": "2025-12-31",
            "Total_Amount": 99.5, "Currency": "EUR", "Match_Status": "Pending", "Vendor": {"id": vendor_id},
            "Purchase_Order": {"id": po_id}, "ERP_Key": "VI-1"}], "duplicate_check_fields": ["ERP_Key"]})
        rid = response.json()["data"][0]["details"]["id"]
        return (await client.get(f"{EU}/crm/v8/Vendor_Invoices/{rid}", headers=auth)).json()["data"][0]

    record = run(sandbox, scenario)
    assert record["Purchase_Order"] == {"id": po_id, "name": "PO-00001"} and record["Match_Status"] == "Pending"


def test_sdk_style_json_without_content_type_is_accepted() -> None:
    async def scenario(client: httpx.AsyncClient) -> int:
        auth = await token(client)
        request = client.build_request("POST", f"{EU}/crm/v8/Vendors", content=b'{"data":[{"Vendor_Name":"A"}]}',
                                       headers=auth)
        assert "content-type" not in request.headers
        return (await client.send(request)).status_code

    assert run(make(), scenario) == 201


def test_delete_by_ids_and_by_id() -> None:
    sandbox = make(vendors=3)
    ids = [r["id"] for r in sandbox.store.all_raw("Vendors")]

    async def scenario(client: httpx.AsyncClient) -> list[Any]:
        auth = await token(client)
        many = await client.delete(f"{EU}/crm/v8/Vendors", params={"ids": f"{ids[0]},4150868999999999999"},
                                   headers=auth)
        one = await client.delete(f"{EU}/crm/v8/Vendors/{ids[1]}", headers=auth)
        return [many.status_code, many.json()["data"], one.status_code]

    status, results, one = run(sandbox, scenario)
    assert status == 207 and one == 200
    assert results[0] == {"code": "SUCCESS", "details": {"id": ids[0]}, "message": "record deleted",
                          "status": "success"}
    assert results[1]["code"] == "INVALID_DATA"
    assert [r["id"] for r in sandbox.store.all_raw("Vendors")] == [ids[2]]


# -- metadata -----------------------------------------------------------------------------------------------------
def test_settings_modules_and_fields_describe_what_records_accept() -> None:
    async def scenario(client: httpx.AsyncClient) -> list[Any]:
        auth = await token(client)
        modules = (await client.get(f"{EU}/crm/v8/settings/modules", headers=auth)).json()["modules"]
        one = (await client.get(f"{EU}/crm/v8/settings/modules/Vendor_Invoices", headers=auth)).json()["modules"]
        po = (await client.get(f"{EU}/crm/v8/settings/fields", params={"module": "Purchase_Orders"},
                               headers=auth)).json()["fields"]
        items = (await client.get(f"{EU}/crm/v8/settings/fields", params={"module": "Purchase_Items"},
                                  headers=auth)).json()["fields"]
        return [modules, one, po, items]

    modules, one, po, items = run(make(), scenario)
    assert [m["api_name"] for m in modules] == ["Vendors", "Products", "Accounts", "Contacts", "Purchase_Orders",
                                                "Sales_Orders", "Vendor_Invoices"]
    assert one[0]["generated_type"] == "custom" and one[0]["api_supported"] is True
    fields = {f["api_name"]: f for f in po}
    assert fields["Purchase_Items"]["data_type"] == "subform"
    assert fields["Purchase_Items"]["associated_module"]["module"] == "Purchase_Items"
    assert fields["ERP_Key"]["unique"] and fields["ERP_Key"]["custom_field"] is True
    assert fields["Vendor_Name"]["lookup"]["module"]["api_name"] == "Vendors"
    assert fields["Subject"]["system_mandatory"] is True
    assert [v["actual_value"] for v in fields["Status"]["pick_list_values"]] == [
        "-None-", "Created", "Approved", "Delivered", "Cancelled"]
    assert {f["api_name"] for f in items} >= {"Product_Name", "Quantity", "List_Price", "Discount", "Total"}


def test_current_user_and_org() -> None:
    async def scenario(client: httpx.AsyncClient) -> list[Any]:
        auth = await token(client)
        users = await client.get(f"{EU}/crm/v8/users", params={"type": "CurrentUser"}, headers=auth)
        org = await client.get(f"{EU}/crm/v8/org", headers=auth)
        return [users.json()["users"][0], org.json()["org"][0]]

    user, org = run(make(), scenario)
    assert (user["id"], user["email"]) == ("4150868000000225014", "admin@acme-eu.example")
    assert (org["id"], org["zgid"]) == ("20000000002", "20000000002")


# -- limits -------------------------------------------------------------------------------------------------------
def test_credits_are_charged_reported_from_half_and_refused_when_spent() -> None:
    clock = ManualClock()
    sandbox = make(clock, credits_per_day=10)

    async def scenario(client: httpx.AsyncClient) -> list[Any]:
        auth = await token(client)
        out = []
        write = await client.post(f"{EU}/crm/v8/Vendors", json={"data": [vendor(n) for n in range(25)]},
                                  headers=auth)  # 3 credits
        out.append(write.headers.get("x-api-credits-remaining"))
        for _ in range(2):  # 2 more: 5 of 10 used
            response = await client.get(f"{EU}/crm/v8/org", headers=auth)
        out.append(response.headers.get("x-api-credits-remaining"))
        for _ in range(5):
            response = await client.get(f"{EU}/crm/v8/org", headers=auth)
        over = await client.get(f"{EU}/crm/v8/org", headers=auth)
        out += [response.headers.get("x-api-credits-remaining"), over.status_code, over.json()["code"],
                "retry-after" in over.headers]
        clock.advance(86_400)
        out.append((await client.get(f"{EU}/crm/v8/org", headers=await token(client))).status_code)
        return out

    assert run(sandbox, scenario) == [None, "5", "0", 429, "TOO_MANY_REQUESTS", False, 200]


def test_concurrency_cap_and_sub_concurrency_for_big_writes() -> None:
    sandbox = make(concurrency=2, request_latency=0.05)

    async def scenario(client: httpx.AsyncClient) -> list[int]:
        auth = await token(client)
        calls = [client.get(f"{EU}/crm/v8/org", headers=auth) for _ in range(3)]
        return sorted(r.status_code for r in await asyncio.gather(*calls))

    assert run(sandbox, scenario) == [200, 200, 429]

    big = make(concurrency=5, sub_concurrency=1, request_latency=0.05)

    async def writes(client: httpx.AsyncClient) -> list[int]:
        auth = await token(client)
        calls = [client.post(f"{EU}/crm/v8/Vendors/upsert", json={"data": [vendor(n + 20 * i) for n in range(11)]},
                             headers=auth) for i in range(2)]
        small = client.post(f"{EU}/crm/v8/Vendors/upsert", json={"data": [vendor(99)]}, headers=auth)
        return [r.status_code for r in await asyncio.gather(*calls, small)]

    assert sorted(run(big, writes)) == [200, 200, 429]


# -- admin, seed, registry ----------------------------------------------------------------------------------------
def test_admin_routes_edit_records_like_the_ui_and_are_not_logged() -> None:
    clock = ManualClock()
    sandbox = make(clock, vendors=1)
    rid = sandbox.store.all_raw("Vendors")[0]["id"]
    changes: list[Change] = []
    sandbox.store.listen(changes.append)

    async def scenario(client: httpx.AsyncClient) -> list[Any]:
        clock.advance(5)
        patched = await client.patch(f"{EU}/_admin/records/Vendors/{rid}", json={"City": "Turin"})
        inserted = await client.post(f"{EU}/_admin/records/Vendors", json={"Vendor_Name": "UI made"})
        listed = await client.get(f"{EU}/_admin/records/Vendors")
        us = await client.get(f"{EU}/_admin/records/Vendors", params={"org": "20000000001"})
        deleted = await client.delete(f"{EU}/_admin/records/Vendors/{rid}")
        orgs = await client.get(f"{EU}/_admin/orgs")
        return [patched.json()["Modified_Time"], inserted.status_code, listed.json()["count"], us.json()["count"],
                deleted.json(), orgs.json()]

    modified, inserted, count, us_count, deleted, orgs = run(sandbox, scenario)
    assert (modified, inserted, count, us_count, deleted) == ("2026-01-01T00:00:05+00:00", 201, 2, 1,
                                                              {"deleted": True})
    assert [c.operation for c in changes] == ["update", "insert", "delete"]
    assert sandbox.log.summary()["total"] == 0
    assert orgs["default"] == "20000000002"
    eu = next(o for o in orgs["orgs"] if o["dc"] == "eu")
    assert {k: eu[k] for k in ("client_id", "client_secret", "refresh_token", "accounts_host", "api_host")} == {
        "client_id": EU_ORG["client_id"], "client_secret": EU_ORG["client_secret"],
        "refresh_token": EU_ORG["refresh_token"], "accounts_host": "127.0.0.2", "api_host": "127.0.0.2"}


def test_seed_is_deterministic_with_19_digit_string_ids() -> None:
    counts = {"vendors": 3, "products": 3, "accounts": 2, "contacts": 2, "purchase_orders": 2, "sales_orders": 2}
    a, b = make(**counts), make(**counts)
    for module in ("Vendors", "Products", "Accounts", "Contacts", "Purchase_Orders", "Sales_Orders"):
        assert a.store.all_raw(module) == b.store.all_raw(module)
        assert all(isinstance(r["id"], str) and len(r["id"]) == 19 for r in a.store.all_raw(module))
    assert a.store.all_raw("Contacts")[0]["Full_Name"].endswith("son")
    assert make(seed=8, **counts).store.all_raw("Vendors") != a.store.all_raw("Vendors")


def test_registry_knows_zoho_and_the_sandbox_lists_its_hosts() -> None:
    sandbox = create_sandbox("zoho", vendors=1)
    assert isinstance(sandbox, ZohoSandbox) and default_port("zoho") == 8703
    assert sandbox.hosts == ["127.0.0.1", "127.0.0.2", "127.0.0.3"]


def test_unknown_path_is_invalid_url_pattern() -> None:
    async def scenario(client: httpx.AsyncClient) -> Any:
        response = await client.get(f"{EU}/crm/v9/Vendors", headers=await token(client))
        return response.status_code, response.json()["code"]

    assert run(make(), scenario) == (404, "INVALID_URL_PATTERN")


def test_token_endpoint_on_an_unknown_host_is_invalid_host() -> None:
    async def scenario(client: httpx.AsyncClient) -> tuple[int, Any]:
        response = await client.post("http://127.0.0.9/oauth/v2/token", data=EU_ORG)
        return response.status_code, response.json()["code"]

    assert run(make(), scenario) == (400, "INVALID_HOST")


def test_if_unmodified_since_refuses_an_update_of_a_record_changed_later() -> None:
    clock = ManualClock()
    sandbox = make(clock, vendors=1)
    rid = sandbox.store.all_raw("Vendors")[0]["id"]

    async def scenario(client: httpx.AsyncClient) -> list[Any]:
        auth = await token(client)
        clock.advance(60)
        sandbox.store.update("Vendors", rid, {"City": "UI edit"}, sandbox.org().user_ref)
        stale = {**auth, "If-Unmodified-Since": "2026-01-01T00:00:30+00:00"}
        fresh = {**auth, "If-Unmodified-Since": "2026-01-01T00:01:00+00:00"}
        refused = await client.put(f"{EU}/crm/v8/Vendors/{rid}", json={"data": [{"City": "sync"}]}, headers=stale)
        accepted = await client.put(f"{EU}/crm/v8/Vendors", json={"data": [{"id": rid, "City": "sync"}]},
                                    headers=fresh)
        return [refused.status_code, refused.json()["code"], accepted.status_code]

    assert run(sandbox, scenario) == [412, "ALREADY_MODIFIED", 200]
    assert sandbox.store.get("Vendors", rid)["City"] == "sync"  # type: ignore[index]


def test_store_records_walk_the_indexes_and_hand_out_copies_without_line_items() -> None:
    clock = ManualClock()
    sandbox = make(clock, vendors=1, products=1, purchase_orders=3)
    store = sandbox.store
    ids = [r["id"] for r in store.all_raw("Purchase_Orders")]
    clock.advance(10)
    store.update("Purchase_Orders", ids[0], {"Status": "Approved"}, sandbox.org().user_ref)
    by_modified = list(store.records("Purchase_Orders", "Modified_Time", descending=True))
    assert [r["id"] for r in by_modified] == [ids[0], ids[2], ids[1]]
    assert all("Purchase_Items" not in r and "$has_more" not in r for r in by_modified)
    by_modified[0]["Status"] = "changed by a reader"
    assert store.get("Purchase_Orders", ids[0])["Status"] == "Approved"  # type: ignore[index]
    assert [r["id"] for r in store.records("Purchase_Orders", start=1)] == ids[1:]
    after = store.key("Purchase_Orders", ids[1], "id")
    assert [r["id"] for r in store.records("Purchase_Orders", after=after)] == [ids[2]]
    assert [r["id"] for r in store.records("Purchase_Orders", descending=True, after=after)] == [ids[0]]
    assert list(store.ids("Purchase_Orders", modified_after=START + 5)) == [ids[0]]
    assert list(store.ids("Purchase_Orders", "Modified_Time", modified_after=START + 5)) == [ids[0]]


def test_if_modified_since_ordered_by_id_reads_only_the_changed_records(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = ManualClock()
    sandbox = make(clock, vendors=3_000)
    ids = [r["id"] for r in sandbox.store.all_raw("Vendors")]
    clock.advance(10)
    for rid in (ids[5], ids[2_000], ids[17]):
        sandbox.store.update("Vendors", rid, {"City": "changed"}, sandbox.org().user_ref)
    def no_walk(*args: Any) -> Any:
        raise AssertionError("walked the whole id index")
        yield

    monkeypatch.setattr(store_module, "_walk", no_walk)
    since = START + 5
    assert list(sandbox.store.ids("Vendors", descending=True, modified_after=since)) == [ids[2_000], ids[17],
                                                                                         ids[5]]
    assert list(sandbox.store.ids("Vendors", start=1, modified_after=since)) == [ids[17], ids[2_000]]
    after = sandbox.store.key("Vendors", ids[17], "id")
    assert list(sandbox.store.ids("Vendors", after=after, modified_after=since)) == [ids[2_000]]
    for rid in ids[:1_000]:  # now most records changed: walking the id index finds matches at once
        sandbox.store.update("Vendors", rid, {"City": "changed"}, sandbox.org().user_ref)
    with pytest.raises(AssertionError, match="walked"):
        list(sandbox.store.ids("Vendors", modified_after=since))
