"""Tests of the Salesforce sandbox, REST side (in-process through httpx.ASGITransport; facts:
shared/api-facts/salesforce.md §1-6)."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar
from urllib.parse import quote

import httpx
import pytest

from ml_connector.sandbox.core import ManualClock
from ml_connector.sandbox.registry import create_sandbox, default_port
from ml_connector.sandbox.salesforce import DEFAULT_CONFIG, SalesforceSandbox, create_salesforce_sandbox
from ml_connector.sandbox.salesforce.ids import checksum, make_id, to18
from ml_connector.sandbox.salesforce.store import Change

T = TypeVar("T")
HOST = "https://acme.my.salesforce.com"
API = f"{HOST}/services/data/v66.0"
START = 1_767_225_600.0  # ManualClock's default: 2026-01-01T00:00:00Z
CLIENT = {"grant_type": "client_credentials", "client_id": DEFAULT_CONFIG["client_id"],
          "client_secret": DEFAULT_CONFIG["client_secret"]}
INVALID_SESSION = [{"message": "Session expired or invalid", "errorCode": "INVALID_SESSION_ID"}]


def make(clock: ManualClock | None = None, **options: Any) -> SalesforceSandbox:
    return create_salesforce_sandbox(clock=clock or ManualClock(), **options)


def run(sandbox: SalesforceSandbox, scenario: Callable[[httpx.AsyncClient], Awaitable[T]]) -> T:
    async def go() -> T:
        transport = httpx.ASGITransport(app=sandbox)
        async with httpx.AsyncClient(transport=transport, base_url=HOST) as client:
            return await scenario(client)

    return asyncio.run(go())


async def auth(client: httpx.AsyncClient, call_client: str | None = "ERPSync") -> dict[str, str]:
    response = await client.post(f"{HOST}/services/oauth2/token", data=CLIENT)
    assert response.status_code == 200, response.text
    headers = {"Authorization": f"Bearer {response.json()['access_token']}"}
    if call_client:
        headers["Sforce-Call-Options"] = f"client={call_client}"
    return headers


def call(sandbox: SalesforceSandbox, *requests: tuple[str, str, Any]) -> list[httpx.Response]:
    """Authenticate, then send each (method, path under /services/data/v66.0, json body or None)."""
    async def scenario(client: httpx.AsyncClient) -> list[httpx.Response]:
        headers = await auth(client)
        out = []
        for method, path, body in requests:
            url = path if path.startswith("http") else f"{API}{path}"
            out.append(await client.request(method, url, json=body, headers=headers))
        return out

    return run(sandbox, scenario)


def one(sandbox: SalesforceSandbox, method: str, path: str, body: Any = None) -> httpx.Response:
    return call(sandbox, (method, path, body))[0]


# -- ids ----------------------------------------------------------------------------------------------------------
def test_ids_are_18_chars_with_the_documented_checksum() -> None:
    assert checksum("001D000000IqhSL") == "IAZ"  # facts §4.1: 001D000000IqhSLIAZ
    assert checksum("00190000001pPvH") == "AAU"
    new = make_id("001", 1)
    assert len(new) == 18 and new.startswith("001") and new[15:] == checksum(new[:15])
    assert make_id("001", 61) < make_id("001", 62) < make_id("001", 3844)
    assert to18("001D000000IqhSL") == "001D000000IqhSLIAZ"
    assert to18("001D000000IqhSLIAX") is None and to18("001-bad") is None


# -- OAuth client credentials -------------------------------------------------------------------------------------
def test_client_credentials_answer_has_no_refresh_token_and_a_valid_signature() -> None:
    sandbox = make()

    async def scenario(client: httpx.AsyncClient) -> list[httpx.Response]:
        form = await client.post("https://acme.my.salesforce.com:8443/services/oauth2/token", data=CLIENT)
        basic = base64.b64encode(f"{CLIENT['client_id']}:{CLIENT['client_secret']}".encode()).decode()
        header = await client.post("http://127.0.0.1:8704/services/oauth2/token",
                                   data={"grant_type": "client_credentials"},
                                   headers={"Authorization": f"Basic {basic}"})
        return [form, header]

    form, header = run(sandbox, scenario)
    assert form.status_code == 200 and header.status_code == 200
    body = form.json()
    org, user = DEFAULT_CONFIG["org_id"], DEFAULT_CONFIG["user_id"]
    assert set(body) == {"access_token", "signature", "scope", "instance_url", "id", "token_type", "issued_at"}
    assert body["instance_url"] == "https://acme.my.salesforce.com:8443"
    assert header.json()["instance_url"] == "http://127.0.0.1:8704"
    assert body["id"] == f"https://login.salesforce.com/id/{org}/{user}"
    assert body["token_type"] == "Bearer" and body["scope"] == "api"
    assert body["issued_at"] == str(int(START * 1000))
    assert body["access_token"].startswith(org[:15] + "!")
    expected = hmac.new(CLIENT["client_secret"].encode(), (body["id"] + body["issued_at"]).encode(), hashlib.sha256)
    assert body["signature"] == base64.b64encode(expected.digest()).decode()
    assert sandbox.tokens.valid(body["access_token"]) == org
    assert sandbox.tokens.valid("00D!nope") is None


@pytest.mark.parametrize("host", ["https://login.salesforce.com", "https://test.salesforce.com",
                                  "http://login.localhost:8704"])
def test_token_on_a_login_host_is_refused(host: str) -> None:
    response = run(make(), lambda c: c.post(f"{host}/services/oauth2/token", data=CLIENT))
    assert response.status_code == 400
    assert response.json() == {"error": "invalid_grant", "error_description": "request not supported on this domain"}


@pytest.mark.parametrize(("form", "error", "description"), [
    ({**CLIENT, "client_secret": "wrong"}, "invalid_client", "invalid client credentials"),
    ({**CLIENT, "client_id": "nobody"}, "invalid_client_id", "client identifier invalid"),
    ({**CLIENT, "grant_type": "password"}, "unsupported_grant_type", "grant type not supported"),
])
def test_token_errors(form: dict[str, str], error: str, description: str) -> None:
    response = run(make(), lambda c: c.post(f"{HOST}/services/oauth2/token", data=form))
    assert response.status_code == 400
    assert response.json() == {"error": error, "error_description": description}


def test_session_times_out_after_two_hours_of_sandbox_time_and_admin_can_expire_all() -> None:
    clock = ManualClock()
    sandbox = make(clock)

    async def scenario(client: httpx.AsyncClient) -> list[int]:
        headers = await auth(client)
        statuses = [(await client.get(f"{API}/limits", headers=headers)).status_code]
        clock.advance(7199)
        statuses.append((await client.get(f"{API}/limits", headers=headers)).status_code)
        clock.advance(1)
        expired = await client.get(f"{API}/limits", headers=headers)
        assert expired.json() == INVALID_SESSION
        statuses.append(expired.status_code)
        headers = await auth(client)
        assert (await client.post(f"{HOST}/_admin/tokens/expire")).json() == {"expired": 1}
        statuses.append((await client.get(f"{API}/limits", headers=headers)).status_code)
        statuses.append((await client.get(f"{API}/limits")).status_code)
        return statuses

    assert run(sandbox, scenario) == [200, 200, 401, 401, 401]


def test_session_timeout_is_configurable() -> None:
    clock = ManualClock()
    sandbox = make(clock, session_timeout=60)

    async def scenario(client: httpx.AsyncClient) -> str | None:
        token = (await auth(client))["Authorization"].split()[1]
        clock.advance(60)
        return sandbox.tokens.valid(token)

    assert run(sandbox, scenario) is None


# -- discovery, describe, limits ----------------------------------------------------------------------------------
def test_versions_need_no_token_and_are_not_metered() -> None:
    sandbox = make()
    response = run(sandbox, lambda c: c.get(f"{HOST}/services/data/"))
    assert response.status_code == 200 and "sforce-limit-info" not in response.headers
    body = response.json()
    assert body[-2:] == [{"label": "Spring '26", "url": "/services/data/v66.0", "version": "66.0"},
                         {"label": "Summer '26", "url": "/services/data/v67.0", "version": "67.0"}]
    assert {"label": "Winter '24", "url": "/services/data/v59.0", "version": "59.0"} in body
    assert sandbox.usage.used() == 0


def test_resources_sobjects_and_describe() -> None:
    root, sobjects, describe, invoice, unknown_version = call(
        make(), ("GET", "/", None), ("GET", "/sobjects", None), ("GET", "/sobjects/Account/describe/", None),
        ("GET", "/sobjects/Invoice/describe", None), ("GET", f"{HOST}/services/data/v99.0/sobjects", None))
    assert root.json()["query"] == "/services/data/v66.0/query"
    assert root.json()["sobjects"] == "/services/data/v66.0/sobjects"
    names = [s["name"] for s in sobjects.json()["sobjects"]]
    assert names == ["Account", "Contact", "Product2", "Pricebook2", "PricebookEntry", "Order", "OrderItem"]
    assert sobjects.json()["maxBatchSize"] == 200
    assert sobjects.json()["sobjects"][0]["keyPrefix"] == "001"
    body = describe.json()
    assert body["name"] == "Account" and body["keyPrefix"] == "001"
    erp = next(f for f in body["fields"] if f["name"] == "ERP_Id__c")
    assert {k: erp[k] for k in ("type", "length", "externalId", "unique", "idLookup", "createable", "updateable",
                                "nillable", "custom")} == {
        "type": "string", "length": 40, "externalId": True, "unique": True, "idLookup": True, "createable": True,
        "updateable": True, "nillable": True, "custom": True}
    name = next(f for f in body["fields"] if f["name"] == "Name")
    assert name["nillable"] is False and name["length"] == 255
    assert {"childSObject": "Contact", "field": "AccountId", "relationshipName": "Contacts",
            "cascadeDelete": False} in body["childRelationships"]
    assert invoice.status_code == 404 and invoice.json()[0]["errorCode"] == "NOT_FOUND"
    assert unknown_version.status_code == 404


def test_revenue_cloud_adds_invoice() -> None:
    sobjects, describe = call(make(revenue_cloud=True), ("GET", "/sobjects", None),
                              ("GET", "/sobjects/Invoice/describe", None))
    assert "Invoice" in [s["name"] for s in sobjects.json()["sobjects"]]
    assert describe.status_code == 200 and describe.json()["createable"] is False


def test_limit_info_on_every_call_and_403_when_the_daily_allowance_is_spent() -> None:
    clock = ManualClock()
    sandbox = make(clock, daily_api_requests=3)

    async def scenario(client: httpx.AsyncClient) -> list[httpx.Response]:
        headers = await auth(client)
        out = [await client.get(f"{API}/limits", headers=headers) for _ in range(4)]
        clock.advance(86_400)
        out.append(await client.get(f"{API}/limits", headers=headers))
        return out

    sandbox.config["session_timeout"] = 10 ** 6
    responses = run(sandbox, scenario)
    assert [r.status_code for r in responses] == [200, 200, 200, 403, 200]
    assert [r.headers["sforce-limit-info"] for r in responses] == [
        "api-usage=1/3", "api-usage=2/3", "api-usage=3/3", "api-usage=3/3", "api-usage=1/3"]
    assert responses[3].json() == [{"message": "TotalRequests Limit exceeded.", "errorCode": "REQUEST_LIMIT_EXCEEDED"}]
    assert responses[0].json()["DailyApiRequests"] == {"Max": 3, "Remaining": 2}


# -- sObjects -----------------------------------------------------------------------------------------------------
def test_create_get_update_delete_account() -> None:
    sandbox = make()
    changes: list[Change] = []
    sandbox.store.listen(changes.append)
    created, = call(sandbox, ("POST", "/sobjects/Account/", {"Name": "Acme GmbH", "ERP_Id__c": "C100"}))
    assert created.status_code == 201
    rid = created.json()["id"]
    assert created.json() == {"id": rid, "success": True, "errors": []} and rid.startswith("001")
    got, patched, after, deleted, again, gone = call(
        sandbox, ("GET", f"/sobjects/Account/{rid}?fields=Name,ERP_Id__c", None),
        ("PATCH", f"/sobjects/Account/{rid}", {"Phone": "+49 30 1"}),
        ("GET", f"/sobjects/Account/{rid[:15]}", None), ("DELETE", f"/sobjects/Account/{rid}", None),
        ("DELETE", f"/sobjects/Account/{rid}", None), ("GET", f"/sobjects/Account/{rid}", None))
    assert got.json() == {"attributes": {"type": "Account", "url": f"/services/data/v66.0/sobjects/Account/{rid}"},
                          "Id": rid, "Name": "Acme GmbH", "ERP_Id__c": "C100"}
    assert patched.status_code == 204 and patched.content == b""
    assert after.json()["Phone"] == "+49 30 1" and after.json()["SystemModstamp"] == "2026-01-01T00:00:00.000+0000"
    assert deleted.status_code == 204
    assert again.status_code == 404 and again.json()[0]["errorCode"] == "ENTITY_IS_DELETED"
    assert gone.status_code == 404
    assert [(c.entity, c.change_type, c.record_ids) for c in changes] == [
        ("Account", "CREATE", (rid,)), ("Account", "UPDATE", (rid,)), ("Account", "DELETE", (rid,))]
    assert changes[1].changed_fields == ("Phone", "LastModifiedDate", "SystemModstamp")
    assert changes[0].change_origin == "com/salesforce/api/rest/66.0;client=ERPSync"
    assert changes[0].commit_user == DEFAULT_CONFIG["user_id"]
    assert changes[0].commit_ms == int(START * 1000)
    assert changes[2].record["Phone"] == "+49 30 1" and changes[2].record["IsDeleted"] is False


@pytest.mark.parametrize(("body", "code", "fields"), [
    ({"Id": "001000000000000AAA", "Name": "X"}, "INVALID_FIELD", ["Id"]),
    ({"Phone": "1"}, "REQUIRED_FIELD_MISSING", ["Name"]),
    ({"Name": "x" * 256}, "STRING_TOO_LONG", ["Name"]),
    ({"Name": "X", "Foo__c": 1}, "INVALID_FIELD", ["Foo__c"]),
    ({"Name": "X", "Type": "Nope"}, "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST", ["Type"]),
    ({"Name": "X", "ParentId": "003000000000000AAA"}, "MALFORMED_ID", ["ParentId"]),
    ({"Name": "X", "ParentId": make_id("001", 999)}, "INVALID_CROSS_REFERENCE_KEY", ["ParentId"]),
    ({"Name": "X", "CreatedDate": "2026-01-01T00:00:00Z"}, "INVALID_FIELD_FOR_INSERT_UPDATE", ["CreatedDate"]),
])
def test_create_validation(body: dict[str, Any], code: str, fields: list[str]) -> None:
    response = one(make(), "POST", "/sobjects/Account", body)
    assert response.status_code == 400
    assert response.json()[0]["errorCode"] == code and response.json()[0]["fields"] == fields


def test_id_in_create_body_has_the_documented_message() -> None:
    response = one(make(), "POST", "/sobjects/Account", {"Id": "001000000000000AAA", "Name": "X"})
    assert response.json() == [{"message": "The Id field should not be specified in the sobject data.",
                                "errorCode": "INVALID_FIELD", "fields": ["Id"]}]


def test_external_id_is_unique() -> None:
    sandbox = make(accounts=1)
    first = sandbox.store.find("Account", "ERP_Id__c", "C00001")[0]
    response = one(sandbox, "POST", "/sobjects/Account", {"Name": "Dup", "ERP_Id__c": "c00001"})
    assert response.status_code == 400
    assert response.json() == [{"message": f"duplicate value found: ERP_Id__c duplicates value on record with id: "
                                           f"{first}", "errorCode": "DUPLICATE_VALUE", "fields": []}]


def test_upsert_by_external_id_creates_then_updates() -> None:
    sandbox = make()
    created, updated, by_ext, unknown_field, missing = call(
        sandbox, ("PATCH", "/sobjects/Account/ERP_Id__c/C100", {"Name": "Acme"}),
        ("PATCH", "/sobjects/Account/ERP_Id__c/C100", {"Name": "Acme GmbH"}),
        ("GET", "/sobjects/Account/ERP_Id__c/C100", None),
        ("PATCH", "/sobjects/Account/Name/Acme", {"Phone": "1"}),
        ("GET", "/sobjects/Account/ERP_Id__c/C999", None))
    rid = created.json()["id"]
    assert created.status_code == 201
    assert created.json() == {"id": rid, "success": True, "errors": [], "created": True}
    assert updated.status_code == 200
    assert updated.json() == {"id": rid, "success": True, "errors": [], "created": False}
    assert by_ext.json()["Name"] == "Acme GmbH" and by_ext.json()["ERP_Id__c"] == "C100"
    assert unknown_field.status_code == 404
    assert unknown_field.json() == [{"message": "Provided external ID field does not exist or is not accessible: "
                                                "Name", "errorCode": "NOT_FOUND", "fields": []}]
    assert missing.status_code == 404


def test_upsert_rejects_the_url_field_in_the_body_by_default() -> None:
    response = one(make(), "PATCH", "/sobjects/Account/ERP_Id__c/C100", {"Name": "A", "ERP_Id__c": "C100"})
    assert response.status_code == 400 and response.json()[0]["errorCode"] == "INVALID_FIELD"
    relaxed = one(make(reject_ext_field_in_upsert_body=False), "PATCH", "/sobjects/Account/ERP_Id__c/C100",
                  {"Name": "A", "ERP_Id__c": "C100"})
    assert relaxed.status_code == 201


def test_upsert_with_several_matches_answers_300() -> None:
    sandbox = make()
    a = sandbox.store.insert("Account", {"Name": "A", "ERP_Id__c": "C1"})
    b = sandbox.store.insert("Account", {"Name": "B", "ERP_Id__c": "C2"})
    rec = sandbox.store.raw("Account", b)
    assert rec is not None
    with sandbox.store.transaction():  # a duplicate made behind the API's back (e.g. uniqueness added later)
        sandbox.store._put("Account", b, {**rec, "ERP_Id__c": "C1"})  # noqa: SLF001
    response = one(sandbox, "PATCH", "/sobjects/Account/ERP_Id__c/C1", {"Name": "X"})
    assert response.status_code == 300
    base = "/services/data/v66.0/sobjects/Account"
    assert response.json() == [f"{base}/{a}", f"{base}/{b}"]


def test_parent_by_external_id() -> None:
    sandbox = make(accounts=2)
    account = sandbox.store.find("Account", "ERP_Id__c", "C00002")[0]
    ok, unknown = call(sandbox,
                       ("POST", "/sobjects/Contact", {"LastName": "Meyer", "Account": {"ERP_Id__c": "C00002"}}),
                       ("POST", "/sobjects/Contact", {"LastName": "Meyer", "Account": {"ERP_Id__c": "C404"}}))
    assert ok.status_code == 201
    contact = sandbox.store.get("Contact", ok.json()["id"])
    assert contact is not None and contact["AccountId"] == account and contact["Name"] == "Meyer"
    assert unknown.status_code == 400
    assert unknown.json()[0]["message"] == ("Foreign key external ID: C404 not found for field ERP_Id__c in entity "
                                            "Account")


def test_updated_and_deleted_replication() -> None:
    clock = ManualClock()
    sandbox = make(clock)
    a = sandbox.store.insert("Account", {"Name": "A"})
    clock.advance(120)
    b = sandbox.store.insert("Account", {"Name": "B"})
    clock.advance(120)
    sandbox.store.delete("Account", a)
    clock.advance(120)
    updated, deleted, bad = call(
        sandbox, ("GET", "/sobjects/Account/updated/?start=2026-01-01T00:00:00Z&end=2026-01-01T00:03:30Z", None),
        ("GET", "/sobjects/Account/deleted/?start=2026-01-01T00:00:00Z&end=2026-01-01T00:10:00Z", None),
        ("GET", "/sobjects/Account/updated/?start=2026-01-01T00:00:00Z&end=2026-01-01T00:00:30Z", None))
    assert updated.json() == {"ids": [b], "latestDateCovered": "2026-01-01T00:03:00.000+0000"}
    assert deleted.json() == {"deletedRecords": [{"id": a, "deletedDate": "2026-01-01T00:04:00.000+0000"}],
                              "earliestDateAvailable": "2026-01-01T00:04:00.000+0000",
                              "latestDateCovered": "2026-01-01T00:06:00.000+0000"}
    assert bad.status_code == 400 and bad.json()[0]["errorCode"] == "INVALID_REPLICATION_DATE"


# -- SOQL ---------------------------------------------------------------------------------------------------------
def q(sandbox: SalesforceSandbox, soql: str, kind: str = "query", headers: dict[str, str] | None = None,
      ) -> httpx.Response:
    async def scenario(client: httpx.AsyncClient) -> httpx.Response:
        auth_headers = {**await auth(client), **(headers or {})}
        return await client.get(f"{API}/{kind}", params={"q": soql}, headers=auth_headers)

    return run(sandbox, scenario)


def test_query_records_have_attributes_parent_paths_and_child_sets() -> None:
    sandbox = make(accounts=2, products=3, orders=2)
    response = q(sandbox, "SELECT Id, OrderNumber, Status, Account.ERP_Id__c, (SELECT Id, Quantity, "
                          "PricebookEntry.Product2.ProductCode FROM OrderItems ORDER BY Quantity DESC) FROM Order "
                          "WHERE ERP_Id__c = 'SO-00001'")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["totalSize"] == 1 and body["done"] is True and "nextRecordsUrl" not in body
    record = body["records"][0]
    order_id = record["Id"]
    assert record["attributes"] == {"type": "Order", "url": f"/services/data/v66.0/sobjects/Order/{order_id}"}
    assert record["Status"] == "Draft" and record["OrderNumber"] == "00000100"
    account = sandbox.store.get("Account", sandbox.store.get("Order", order_id)["AccountId"])  # type: ignore[index]
    assert account is not None
    assert record["Account"] == {"attributes": {"type": "Account",
                                                "url": f"/services/data/v66.0/sobjects/Account/{account['Id']}"},
                                 "ERP_Id__c": account["ERP_Id__c"]}
    items = record["OrderItems"]
    assert items["done"] is True and items["totalSize"] == len(items["records"]) >= 1
    quantities = [item["Quantity"] for item in items["records"]]
    assert quantities == sorted(quantities, reverse=True)
    assert items["records"][0]["PricebookEntry"]["Product2"]["ProductCode"].startswith("ITEM-")


def test_query_where_operators() -> None:
    sandbox = make(accounts=6)
    store = sandbox.store
    cases = {
        "SELECT Id FROM Account WHERE ERP_Id__c IN ('C00001', 'c00003')": ["C00001", "C00003"],
        "SELECT Id FROM Account WHERE NOT ERP_Id__c IN ('C00001') AND ERP_Id__c < 'C00004'": ["C00002", "C00003"],
        "SELECT Id FROM Account WHERE (ERP_Id__c = 'C00001' OR ERP_Id__c = 'C00002') AND Phone != null":
            ["C00001", "C00002"],
        "SELECT Id FROM Account WHERE ERP_Id__c NOT IN ('C00001','C00002','C00003') AND Website = null":
            ["C00004", "C00005", "C00006"],
        "SELECT Id FROM Account WHERE AccountNumber LIKE 'a-0000_' AND ERP_Id__c >= 'C00005'": ["C00005", "C00006"],
        "SELECT Id FROM Account WHERE CreatedDate >= 2025-12-31T23:58:00Z": ["C00005", "C00006"],
        "SELECT Id FROM Account WHERE CreatedDate > 2026-01-01T00:58:30+01:00 AND IsDeleted = false":
            ["C00006"],
    }
    for soql, expected in cases.items():
        response = q(sandbox, soql)
        assert response.status_code == 200, (soql, response.text)
        ids = [r["Id"] for r in response.json()["records"]]
        assert sorted(store.get("Account", i)["ERP_Id__c"] for i in ids) == expected, soql  # type: ignore[index]


@pytest.mark.parametrize(("soql", "status", "code", "message"), [
    ("SELECT Id FRM Account", 400, "MALFORMED_QUERY", "unexpected token: 'FRM'"),
    ("SELECT Id, Foo__c FROM Account", 400, "INVALID_FIELD", "No such column 'Foo__c' on entity 'Account'."),
    ("SELECT Id FROM Account WHERE CreatedDate > '2026-01-01'", 400, "INVALID_FIELD",
     "value of filter criterion for field 'CreatedDate' must be of type dateTime and should not be enclosed in quotes"),
    ("SELECT Id FROM Invoice", 400, "INVALID_TYPE", "sObject type 'Invoice' is not supported."),
    ("SELECT Id FROM Account OFFSET 2001", 400, "NUMBER_OUTSIDE_VALID_RANGE", "Maximum SOQL offset allowed is 2000"),
    ("SELECT Id FROM Account WHERE Name = 5", 400, "INVALID_FIELD", "must be of type string"),
])
def test_query_errors(soql: str, status: int, code: str, message: str) -> None:
    response = q(make(), soql)
    assert response.status_code == status
    assert response.json()[0]["errorCode"] == code and message in response.json()[0]["message"]


def test_invoice_is_queryable_with_revenue_cloud() -> None:
    assert q(make(revenue_cloud=True), "SELECT Id, InvoiceNumber FROM Invoice").json() == {
        "totalSize": 0, "done": True, "records": []}


def test_count_limit_offset_and_order() -> None:
    sandbox = make(accounts=30)
    assert q(sandbox, "SELECT COUNT() FROM Account WHERE ERP_Id__c > 'C00010'").json() == {
        "totalSize": 20, "done": True, "records": []}
    page = q(sandbox, "SELECT ERP_Id__c FROM Account ORDER BY ERP_Id__c DESC LIMIT 3 OFFSET 2").json()
    assert page["totalSize"] == 3 and [r["ERP_Id__c"] for r in page["records"]] == ["C00028", "C00027", "C00026"]


def test_paging_with_batch_size_and_locators_expiring_after_two_days() -> None:
    clock = ManualClock()
    sandbox = make(clock, accounts=450, session_timeout=10 ** 7)

    async def scenario(client: httpx.AsyncClient) -> list[httpx.Response]:
        headers = {**await auth(client), "Sforce-Query-Options": "batchSize=200"}
        first = await client.get(f"{API}/queryAll", params={"q": "SELECT Id, ERP_Id__c FROM Account ORDER BY "
                                                                  "SystemModstamp, Id"}, headers=headers)
        second = await client.get(f"{HOST}{first.json()['nextRecordsUrl']}", headers=headers)
        third = await client.get(f"{HOST}{second.json()['nextRecordsUrl']}", headers=headers)
        clock.advance(172_800)
        expired = await client.get(f"{HOST}{first.json()['nextRecordsUrl']}", headers=headers)
        return [first, second, third, expired]

    first, second, third, expired = run(sandbox, scenario)
    locator = first.json()["nextRecordsUrl"].rsplit("/", 1)[1].split("-")[0]
    assert first.json()["nextRecordsUrl"] == f"/services/data/v66.0/query/{locator}-200"
    assert len(locator) == 18 and locator.startswith("0r8")
    assert second.json()["nextRecordsUrl"] == f"/services/data/v66.0/query/{locator}-400"
    assert [len(r.json()["records"]) for r in (first, second, third)] == [200, 200, 50]
    assert [r.json()["totalSize"] for r in (first, second, third)] == [450, 450, 450]
    assert third.json()["done"] is True and "nextRecordsUrl" not in third.json()
    ids = [rec["ERP_Id__c"] for r in (first, second, third) for rec in r.json()["records"]]
    assert ids == [f"C{i:05d}" for i in range(1, 451)]
    assert expired.status_code == 400 and expired.json()[0]["errorCode"] == "INVALID_QUERY_LOCATOR"


def test_batch_size_is_clamped_to_200_2000() -> None:
    sandbox = make(accounts=250)
    small = q(sandbox, "SELECT Id FROM Account", headers={"Sforce-Query-Options": "batchSize=10"})
    assert len(small.json()["records"]) == 200


def test_query_excludes_deleted_rows_and_query_all_includes_them() -> None:
    sandbox = make(accounts=3)
    gone = sandbox.store.find("Account", "ERP_Id__c", "C00002")[0]
    sandbox.store.delete("Account", gone)
    assert q(sandbox, "SELECT Id FROM Account").json()["totalSize"] == 2
    deleted = q(sandbox, "SELECT Id, IsDeleted FROM Account WHERE IsDeleted = true", "queryAll").json()
    assert deleted["records"][0]["Id"] == gone and deleted["records"][0]["IsDeleted"] is True


def test_a_page_costs_the_same_whatever_the_table_size() -> None:
    """An incremental page walks the SystemModstamp index from its bound: it examines only the rows it returns."""
    from ml_connector.sandbox.salesforce.query import engine

    scanned = []
    for size in (300, 6000):
        clock = ManualClock()
        sandbox = make(clock, accounts=size)
        clock.advance(60)
        for n in range(250):
            sandbox.store.insert("Account", {"Name": f"New {n}"})
        since = "2026-01-01T00:00:30Z"
        page = q(sandbox, f"SELECT Id FROM Account WHERE SystemModstamp > {since} ORDER BY SystemModstamp, Id",
                 headers={"Sforce-Query-Options": "batchSize=200"})
        assert page.json()["totalSize"] == 250 and len(page.json()["records"]) == 200
        scanned.append(engine(sandbox.org).scanned)
    assert scanned == [200, 200]


# -- sObject Collections ------------------------------------------------------------------------------------------
def account(erp: str, **extra: Any) -> dict[str, Any]:
    return {"attributes": {"type": "Account"}, "Name": f"Company {erp}", "ERP_Id__c": erp, **extra}


def test_collection_upsert_partial_failure_keeps_input_order() -> None:
    sandbox = make(accounts=1)
    existing = sandbox.store.find("Account", "ERP_Id__c", "C00001")[0]
    changes: list[Change] = []
    sandbox.store.listen(changes.append)
    response = one(sandbox, "PATCH", "/composite/sobjects/Account/ERP_Id__c", {"allOrNone": False, "records": [
        account("C100"), account("C00001", Phone="1"), account("C101", Type="Nope"), account("C102")]})
    assert response.status_code == 200
    body = response.json()
    new_100 = sandbox.store.find("Account", "ERP_Id__c", "C100")[0]
    new_102 = sandbox.store.find("Account", "ERP_Id__c", "C102")[0]
    assert body == [
        {"id": new_100, "success": True, "errors": [], "created": True},
        {"id": existing, "success": True, "errors": [], "created": False},
        {"success": False, "errors": [{"statusCode": "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST",
                                       "message": "Type: bad value for restricted picklist field: Nope",
                                       "fields": ["Type"]}]},
        {"id": new_102, "success": True, "errors": [], "created": True}]
    assert sandbox.store.find("Account", "ERP_Id__c", "C101") == []
    assert [(c.change_type, c.record_ids[0]) for c in changes] == [
        ("CREATE", new_100), ("UPDATE", existing), ("CREATE", new_102)]
    assert len({c.transaction_key for c in changes}) == 1


def test_collection_all_or_none_rolls_everything_back() -> None:
    sandbox = make()
    changes: list[Change] = []
    sandbox.store.listen(changes.append)
    response = one(sandbox, "PATCH", "/composite/sobjects/Account/ERP_Id__c", {"allOrNone": True, "records": [
        account("C100"), account("C101", Name=None)]})
    assert response.json() == [
        {"success": False, "errors": [{"statusCode": "ALL_OR_NONE_OPERATION_ROLLED_BACK",
                                       "message": "Record rolled back because not all records were valid and the "
                                                  "request was using AllOrNone header", "fields": []}]},
        {"success": False, "errors": [{"statusCode": "REQUIRED_FIELD_MISSING",
                                       "message": "Required fields are missing: [Name]", "fields": ["Name"]}]}]
    assert sandbox.store.find("Account", "ERP_Id__c", "C100") == [] and changes == []
    assert sandbox.store.count("Account") == 0


def test_collection_limits_and_duplicates() -> None:
    too_many = one(make(), "PATCH", "/composite/sobjects/Account/ERP_Id__c",
                   {"records": [account(f"C{i}") for i in range(201)]})
    assert too_many.status_code == 400 and too_many.json()[0]["errorCode"] == "EXCEEDED_ID_LIMIT"
    dup = one(make(), "PATCH", "/composite/sobjects/Account/ERP_Id__c", {"records": [account("C1"), account("c1")]})
    assert [r["errors"][0]["statusCode"] for r in dup.json()] == ["DUPLICATE_EXTERNAL_ID"] * 2


def test_collection_create_update_delete() -> None:
    sandbox = make()
    created, = call(sandbox, ("POST", "/composite/sobjects", {"records": [
        account("C1"), {"attributes": {"type": "Contact"}, "LastName": "Meyer"}, {"Name": "no type"}]}))
    first, second, third = created.json()
    assert first["success"] and second["success"] and second["id"].startswith("003")
    assert third["errors"][0]["statusCode"] == "INVALID_TYPE"
    updated, deleted = call(
        sandbox, ("PATCH", "/composite/sobjects", {"records": [
            {"attributes": {"type": "Account"}, "id": first["id"], "Phone": "42"}]}),
        ("DELETE", f"/composite/sobjects?ids={first['id']},{second['id']}&allOrNone=false", None))
    assert updated.json() == [{"id": first["id"], "success": True, "errors": []}]
    assert sandbox.store.raw("Account", first["id"])["Phone"] == "42"  # type: ignore[index]
    assert [r["success"] for r in deleted.json()] == [True, True]
    assert sandbox.store.get("Contact", second["id"]) is None


# -- orders, price books ------------------------------------------------------------------------------------------
def test_sales_order_flow_with_price_book_rules() -> None:
    sandbox = make(accounts=1)
    store = sandbox.store
    standard = q(sandbox, "SELECT Id FROM Pricebook2 WHERE IsStandard = true").json()["records"][0]["Id"]
    product, = call(sandbox, ("PATCH", "/sobjects/Product2/ERP_Item_No__c/ITEM-1", {"Name": "Bolt",
                                                                                    "ProductCode": "B1"}))
    pid = product.json()["id"]
    custom = store.insert("Pricebook2", {"Name": "EU", "IsActive": True, "IsStandard": False})
    no_standard, entry, dup = call(
        sandbox, ("POST", "/sobjects/PricebookEntry", {"Pricebook2Id": custom, "Product2Id": pid, "UnitPrice": 2}),
        ("POST", "/sobjects/PricebookEntry", {"Pricebook2Id": standard, "Product2Id": pid, "UnitPrice": 2.5,
                                              "IsActive": True}),
        ("POST", "/sobjects/PricebookEntry", {"Pricebook2Id": standard, "Product2Id": pid, "UnitPrice": 3}))
    assert no_standard.json()[0]["errorCode"] == "STANDARD_PRICE_NOT_DEFINED"
    assert dup.json()[0]["errorCode"] == "DUPLICATE_VALUE"
    pbe = entry.json()["id"]
    order, activate_empty, item, other_book = call(
        sandbox, ("POST", "/sobjects/Order", {"Account": {"ERP_Id__c": "C00001"}, "EffectiveDate": "2026-03-01",
                                              "Status": "Draft", "Pricebook2Id": standard, "ERP_Id__c": "SO-1"}),
        ("PATCH", "/sobjects/Order/ERP_Id__c/SO-1", {"Status": "Activated"}),
        ("POST", "/sobjects/OrderItem", {"Order": {"ERP_Id__c": "SO-1"}, "PricebookEntryId": pbe, "Quantity": 4,
                                         "UnitPrice": 2.5}),
        ("POST", "/sobjects/Order", {"Account": {"ERP_Id__c": "C00001"}, "EffectiveDate": "2026-03-01",
                                     "Status": "Draft", "Pricebook2Id": custom}))
    oid = order.json()["id"]
    assert activate_empty.status_code == 400 and activate_empty.json()[0]["errorCode"] == "FIELD_INTEGRITY_EXCEPTION"
    assert item.status_code == 201, item.text
    saved = store.get("OrderItem", item.json()["id"])
    assert saved is not None and saved["Product2Id"] == pid and saved["TotalPrice"] == 10.0
    assert store.get("Order", oid)["TotalAmount"] == 10.0  # type: ignore[index]
    wrong_book, = call(sandbox, ("POST", "/sobjects/OrderItem", {"OrderId": other_book.json()["id"],
                                                                 "PricebookEntryId": pbe, "Quantity": 1,
                                                                 "UnitPrice": 1}))
    assert wrong_book.json()[0]["message"].startswith("Order Products must have a Price Book Entry that belongs")
    other = store.insert("Account", {"Name": "Other"})
    activated, move, add_more = call(
        sandbox, ("PATCH", f"/sobjects/Order/{oid}", {"Status": "Activated"}),
        ("PATCH", f"/sobjects/Order/{oid}", {"AccountId": other}),
        ("POST", "/sobjects/OrderItem", {"OrderId": oid, "PricebookEntryId": pbe, "Quantity": 1, "UnitPrice": 1}))
    assert activated.status_code == 204
    assert store.get("Order", oid)["StatusCode"] == "Activated"  # type: ignore[index]
    assert move.status_code == 400 and move.json()[0]["fields"] == ["AccountId"]
    assert add_more.status_code == 400


def test_invoice_cannot_be_created_through_the_api_but_admin_can_seed_it() -> None:
    sandbox = make(revenue_cloud=True, accounts=1)
    refused = one(sandbox, "POST", "/sobjects/Invoice", {"Status": "Draft"})
    assert refused.status_code == 400 and refused.json()[0]["errorCode"] == "INVALID_TYPE_FOR_OPERATION"
    changes: list[Change] = []
    sandbox.store.listen(changes.append)
    admin = run(sandbox, lambda c: c.post(f"{HOST}/_admin/records/Invoice",
                                          json={"Status": "Posted", "InvoiceNumber": "INV-1",
                                                "BillingAccount": {"ERP_Id__c": "C00001"}}))
    assert admin.status_code == 201 and admin.json()["InvoiceNumber"] == "INV-1"
    assert changes[0].entity == "Invoice" and changes[0].change_origin == ""


def test_admin_records_and_unknown_config_key() -> None:
    sandbox = make(accounts=2)

    async def scenario(client: httpx.AsyncClient) -> list[httpx.Response]:
        listed = await client.get(f"{HOST}/_admin/records/Account")
        rid = listed.json()["records"][0]["Id"]
        patched = await client.patch(f"{HOST}/_admin/records/Account/{rid}", json={"Phone": "9"})
        deleted = await client.delete(f"{HOST}/_admin/records/Account/{rid}")
        config = await client.patch(f"{HOST}/_admin/config", json={"revenue_cloud": True})
        org = await client.get(f"{HOST}/_admin/org")
        return [listed, patched, deleted, config, org]

    listed, patched, deleted, config, org = run(sandbox, scenario)
    assert listed.json()["count"] == 2 and patched.json()["Phone"] == "9" and deleted.status_code == 200
    assert "Invoice" in sandbox.store.objects() and config.status_code == 200
    assert org.json()["client_id"] == DEFAULT_CONFIG["client_id"]
    with pytest.raises(TypeError):
        make(nope=1)


def test_registry_knows_salesforce() -> None:
    assert default_port("salesforce") == 8704
    assert isinstance(create_sandbox("salesforce", accounts=1), SalesforceSandbox)


def test_upsert_value_is_url_decoded() -> None:
    sandbox = make()
    response = one(sandbox, "PATCH", f"/sobjects/Account/ERP_Id__c/{quote('C 1/2', safe='')}", {"Name": "A"})
    assert response.status_code == 201
    assert sandbox.store.find("Account", "ERP_Id__c", "C 1/2") == [response.json()["id"]]


# -- the store contract (what Pub/Sub CDC publishes) --------------------------------------------------------------
def test_changes_carry_nulled_fields_roll_ups_and_one_transaction_key_per_call() -> None:
    clock = ManualClock()
    sandbox = make(clock, accounts=1, products=1)
    store = sandbox.store
    changes: list[Change] = []
    store.listen(changes.append)
    account = store.find("Account", "ERP_Id__c", "C00001")[0]
    standard = store.find("Product2", "ERP_Item_No__c", "ITEM-00001")[0]
    entry = store.children("PricebookEntry", "Product2Id", standard)[0]
    book = store.get("PricebookEntry", entry)["Pricebook2Id"]  # type: ignore[index]
    clock.advance(5)
    order = one(sandbox, "POST", "/sobjects/Order", {"AccountId": account, "EffectiveDate": "2026-01-02",
                                                     "Status": "Draft", "Pricebook2Id": book})
    assert order.status_code == 201
    changes.clear()
    item = one(sandbox, "POST", "/sobjects/OrderItem", {"OrderId": order.json()["id"], "PricebookEntryId": entry,
                                                        "Quantity": 2, "UnitPrice": 3.5})
    assert item.status_code == 201
    assert [(c.entity, c.change_type) for c in changes] == [("OrderItem", "CREATE"), ("Order", "UPDATE")]
    assert changes[1].changed_fields == ("TotalAmount", "LastModifiedDate", "SystemModstamp")
    assert changes[1].record["TotalAmount"] == 7.0
    assert changes[0].transaction_key == changes[1].transaction_key
    assert changes[0].commit_ms == int((START + 5) * 1000)


def test_update_change_lists_nulled_fields() -> None:
    sandbox = make(accounts=1)
    changes: list[Change] = []
    sandbox.store.listen(changes.append)
    account = sandbox.store.find("Account", "ERP_Id__c", "C00001")[0]
    one(sandbox, "PATCH", f"/sobjects/Account/{account}", {"Phone": None, "Website": "https://a.example"})
    assert changes[0].changed_fields == ("Phone", "Website", "LastModifiedDate", "SystemModstamp")
    assert changes[0].nulled_fields == ("Phone",)
    assert changes[0].record["Website"] == "https://a.example" and changes[0].record["Phone"] is None


# -- request size, conditional describe, userinfo, revoke ---------------------------------------------------------
def test_long_uri_is_414_and_long_headers_431() -> None:
    sandbox = make()

    async def scenario(client: httpx.AsyncClient) -> list[httpx.Response]:
        headers = await auth(client)
        soql = "SELECT Id FROM Account WHERE ERP_Id__c IN (" + ",".join(f"'C{i:06d}'" for i in range(2000)) + ")"
        long_uri = await client.get(f"{API}/query", params={"q": soql}, headers=headers)
        big_headers = await client.get(f"{API}/limits", headers={**headers, "X-Pad": "x" * 16_400})
        return [long_uri, big_headers]

    long_uri, big_headers = run(sandbox, scenario)
    assert long_uri.status_code == 414 and big_headers.status_code == 431


def test_describe_honours_if_modified_since() -> None:
    sandbox = make()

    async def scenario(client: httpx.AsyncClient) -> list[int]:
        headers = await auth(client)
        out = []
        for since in ("Thu, 01 Jan 2026 00:00:00 GMT", "Wed, 31 Dec 2025 23:00:00 GMT"):
            response = await client.get(f"{API}/sobjects/Account/describe",
                                        headers={**headers, "If-Modified-Since": since})
            out.append(response.status_code)
        return out

    assert run(sandbox, scenario) == [304, 200]


def test_userinfo_names_the_org_and_revoke_ends_the_session() -> None:
    sandbox = make()

    async def scenario(client: httpx.AsyncClient) -> list[httpx.Response]:
        headers = await auth(client)
        info = await client.get(f"{HOST}/services/oauth2/userinfo", headers=headers)
        token = headers["Authorization"].split()[1]
        revoked = await client.post(f"{HOST}/services/oauth2/revoke", data={"token": token})
        again = await client.post(f"{HOST}/services/oauth2/revoke", data={"token": token})
        after = await client.get(f"{API}/limits", headers=headers)
        return [info, revoked, again, after]

    info, revoked, again, after = run(sandbox, scenario)
    assert info.json()["organization_id"] == DEFAULT_CONFIG["org_id"]
    assert info.json()["user_id"] == DEFAULT_CONFIG["user_id"]
    assert revoked.status_code == 200
    assert again.status_code == 400 and again.json() == {"error": "invalid_token",
                                                         "error_description": "invalid token"}
    assert after.status_code == 401


def test_parent_paths_in_where_and_order_by() -> None:
    sandbox = make(accounts=3, contacts=6)
    body = q(sandbox, "SELECT LastName, Account.ERP_Id__c FROM Contact WHERE Account.ERP_Id__c IN ('C00001', "
                      "'C00003') ORDER BY Account.ERP_Id__c DESC, ERP_Id__c").json()
    assert [(r["Account"]["ERP_Id__c"]) for r in body["records"]] == ["C00003", "C00003", "C00001", "C00001"]
    orphan = sandbox.store.insert("Contact", {"LastName": "Solo"})
    solo = q(sandbox, f"SELECT Id, Account.Name FROM Contact WHERE Id = '{orphan[:15]}'").json()
    assert solo["records"][0]["Account"] is None
    empty = q(sandbox, "SELECT Id, (SELECT Id FROM Contacts) FROM Account WHERE ERP_Id__c = 'C00002'").json()
    assert empty["records"][0]["Contacts"]["totalSize"] == 2
    assert q(sandbox, "SELECT Id FROM Account WHERE Id = 'nope'").json()[0]["errorCode"] == \
        "INVALID_QUERY_FILTER_OPERATOR"


def test_offset_applies_to_the_first_page_only() -> None:
    sandbox = make(accounts=450)
    first = q(sandbox, "SELECT ERP_Id__c FROM Account ORDER BY Id OFFSET 5",
              headers={"Sforce-Query-Options": "batchSize=200"}).json()
    assert first["totalSize"] == 445 and first["records"][0]["ERP_Id__c"] == "C00006"

    async def scenario(client: httpx.AsyncClient) -> dict[str, Any]:
        response = await client.get(f"{HOST}{first['nextRecordsUrl']}", headers=await auth(client))
        return response.json()  # type: ignore[no-any-return]

    second = run(sandbox, scenario)
    assert second["records"][0]["ERP_Id__c"] == "C00206" and len(second["records"]) == 200


# -- composite ----------------------------------------------------------------------------------------------------
def test_composite_with_references_counts_one_call() -> None:
    sandbox = make()
    response = one(sandbox, "POST", "/composite", {"allOrNone": True, "compositeRequest": [
        {"method": "POST", "url": "/services/data/v66.0/sobjects/Account", "referenceId": "refAcc",
         "body": {"Name": "Acme"}},
        {"method": "POST", "url": "/services/data/v66.0/sobjects/Contact", "referenceId": "refCon",
         "body": {"LastName": "Meyer", "AccountId": "@{refAcc.id}"}},
        {"method": "GET", "url": "/services/data/v66.0/sobjects/Contact/@{refCon.id}?fields=AccountId",
         "referenceId": "refGet"}]})
    assert response.status_code == 200, response.text
    results = response.json()["compositeResponse"]
    account = results[0]["body"]["id"]
    assert results[0] == {"body": {"id": account, "success": True, "errors": []},
                          "httpHeaders": {"Location": f"/services/data/v66.0/sobjects/Account/{account}"},
                          "httpStatusCode": 201, "referenceId": "refAcc"}
    assert results[2]["body"]["AccountId"] == account and results[2]["httpStatusCode"] == 200
    assert sandbox.usage.used() == 1


def test_composite_all_or_none_rolls_back_and_halts_the_others() -> None:
    sandbox = make()
    changes: list[Change] = []
    sandbox.store.listen(changes.append)
    response = one(sandbox, "POST", "/composite", {"allOrNone": True, "compositeRequest": [
        {"method": "POST", "url": "/services/data/v66.0/sobjects/Account", "referenceId": "a", "body": {"Name": "A"}},
        {"method": "POST", "url": "/services/data/v66.0/sobjects/Account", "referenceId": "b", "body": {}},
        {"method": "POST", "url": "/services/data/v66.0/sobjects/Account", "referenceId": "c", "body": {"Name": "C"}},
    ]})
    results = response.json()["compositeResponse"]
    assert [r["httpStatusCode"] for r in results] == [400, 400, 400]
    assert results[0]["body"][0]["errorCode"] == "PROCESSING_HALTED"
    assert results[1]["body"][0]["errorCode"] == "REQUIRED_FIELD_MISSING"
    assert results[2]["body"][0]["errorCode"] == "PROCESSING_HALTED"
    assert sandbox.store.count("Account") == 0 and changes == []
    too_many = one(make(), "POST", "/composite", {"compositeRequest": [
        {"method": "GET", "url": "/services/data/v66.0/limits", "referenceId": f"r{i}"} for i in range(26)]})
    assert too_many.status_code == 400


def test_rows_deleted_while_paging_end_the_cursor_early_instead_of_looping() -> None:
    sandbox = make(accounts=450, session_timeout=10 ** 6)

    async def scenario(client: httpx.AsyncClient) -> list[dict[str, Any]]:
        headers = {**await auth(client), "Sforce-Query-Options": "batchSize=200"}
        first = (await client.get(f"{API}/query", params={"q": "SELECT ERP_Id__c FROM Account"},
                                  headers=headers)).json()
        for n in range(391, 451):
            sandbox.store.delete("Account", sandbox.store.find("Account", "ERP_Id__c", f"C{n:05d}")[0])
        second = (await client.get(f"{HOST}{first['nextRecordsUrl']}", headers=headers)).json()
        return [first, second]

    first, second = run(sandbox, scenario)
    assert first["done"] is False and len(first["records"]) == 200
    assert second["done"] is True and "nextRecordsUrl" not in second and len(second["records"]) == 190


def test_id_as_the_external_id_field_and_delete_by_external_id() -> None:
    sandbox = make(accounts=1)
    rid = sandbox.store.find("Account", "ERP_Id__c", "C00001")[0]
    by_id, upsert_by_id, deleted, gone = call(
        sandbox, ("GET", f"/sobjects/Account/Id/{rid[:15]}", None),
        ("PATCH", f"/sobjects/Account/Id/{rid}", {"Phone": "7"}),
        ("DELETE", "/sobjects/Account/ERP_Id__c/C00001", None),
        ("GET", "/sobjects/Account/ERP_Id__c/C00001", None))
    assert by_id.json()["Id"] == rid
    assert upsert_by_id.status_code == 200 and upsert_by_id.json()["created"] is False
    assert deleted.status_code == 204 and gone.status_code == 404


def test_datetime_literal_offset_without_colon_is_a_switch() -> None:
    soql = "SELECT Id FROM Account WHERE SystemModstamp > 2026-01-01T00:00:00.000+0000"
    strict = q(make(), soql)
    assert strict.status_code == 400 and strict.json()[0]["errorCode"] == "MALFORMED_QUERY"
    assert q(make(soql_offset_without_colon=True), soql).status_code == 200


def test_chaos_never_draws_a_429() -> None:
    sandbox = make()

    async def scenario(client: httpx.AsyncClient) -> list[httpx.Response]:
        return [await client.post(f"{HOST}/_admin/chaos", json={"rate": 0.5, "kinds": ["rate_limited"]}),
                await client.post(f"{HOST}/_admin/chaos", json={"rate": 0.5})]

    refused, default = run(sandbox, scenario)
    assert refused.status_code == 400 and "429" in refused.json()["error"]
    assert "rate_limited" not in default.json()["kinds"] and "revoked_token" in default.json()["kinds"]
