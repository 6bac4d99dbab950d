"""Tests of the QAD sandbox's account context: customer salesperson and custom fields, customer activities."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import httpx
import pytest

from ml_connector.sandbox.core import ManualClock
from ml_connector.sandbox.qad import QadSandbox, create_qad_sandbox, parse_timestamp_ms

T = TypeVar("T")
API = "/clouderp/api/erp"
CUSTOMERS, ACTIVITIES = f"{API}/customerV2s", f"{API}/customerActivities"
SCOPE = {"x-qad-workspace-id": "10USA_10USACO"}
LOGIN = {"client_id": "ml-connector", "grant_type": "password", "username": "demo", "password": "demo-password"}
SYSTEM = {"uri", "domainCode", "lastModifiedDate", "lastModifiedUser", "concurrencyHash", "dataOperation"}
CONTEXT = ["salespersonCode", *(f"customShort{n}" for n in range(20)), *(f"customDecimal{n}" for n in range(5)),
           *(f"customDate{n}" for n in range(1, 6))]


def run(sandbox: QadSandbox, scenario: Callable[[httpx.AsyncClient], Awaitable[T]]) -> T:
    async def go() -> T:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=sandbox), base_url="http://qad.test") as c:
            return await scenario(c)
    return asyncio.run(go())


async def login(client: httpx.AsyncClient) -> dict[str, str]:
    response = await client.post("/clouderp/oauth/token", params=LOGIN)
    return {"Authorization": f"Bearer {response.json()['access_token']}", **SCOPE}


async def post(client: httpx.AsyncClient, path: str, entity: str, *records: Any) -> dict[str, Any]:
    headers = await login(client)
    response = await client.post(path, headers=headers, json={"supplementaryMessages": [], entity: list(records)})
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def errors_of(body: dict[str, Any]) -> list[tuple[int, str, str]]:
    assert body["submitResult"]["success"] is False
    assert all(e["severity"] == "error" for e in body["submitResult"]["errors"])
    return [(e["index"], e["fieldName"], e["message"]) for e in body["submitResult"]["errors"]]


@pytest.fixture()
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture()
def box(clock: ManualClock) -> QadSandbox:
    sandbox = create_qad_sandbox(customers=12, items=0, clock=clock)
    sandbox.config["rate_per_second"] = 10_000
    return sandbox


def two_customers(box: QadSandbox) -> tuple[dict[str, Any], dict[str, Any]]:
    """A customer with at least two contacts, and another customer."""
    customers = box.store.all("customerV2s")
    first = next(c for c in customers if len(c["contacts"]) >= 2)
    return first, next(c for c in customers if c["customerCode"] != first["customerCode"])


def new_customer(code: str, **extra: Any) -> dict[str, Any]:
    return {"customerCode": code, "name": f"Test {code} LLC", "currencyCode": "USD", **extra}


def activity(activity_id: str, **fields: Any) -> dict[str, Any]:
    return {"activityId": activity_id, "activityDate": "2026-01-02T10:30:00Z", "activityType": "Visit Webpage",
            **fields}


# ---- customer context fields -----------------------------------------------------------------------------

def test_every_customer_shows_the_context_fields_null_when_unset(box: QadSandbox) -> None:
    async def scenario(c: httpx.AsyncClient) -> dict[str, Any]:
        return await post(c, CUSTOMERS, "customerV2s", new_customer("N0001"))
    body = run(box, scenario)
    created = body["customerV2s"][0]
    assert all(name in created and created[name] is None for name in CONTEXT)
    for record in box.store.all("customerV2s"):
        assert {name: record[name] for name in CONTEXT} == dict.fromkeys(CONTEXT)


def test_context_fields_round_trip_and_a_partial_update_keeps_the_rest(box: QadSandbox) -> None:
    seeded = box.store.all("customerV2s")[3]
    code = seeded["customerCode"]
    sent = {"salespersonCode": "SP1001", "customShort0": "Marketo opportunity: Q3 renewal", "customShort19": "x" * 60,
            "customDecimal0": 125000.5, "customDecimal4": -3, "customDate1": "2026-03-31", "customDate5": None}

    async def scenario(c: httpx.AsyncClient) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
        first = await post(c, CUSTOMERS, "customerV2s",
                           {"customerCode": code, "concurrencyHash": seeded["concurrencyHash"], **sent})
        saved = first["customerV2s"][0]
        second = await post(c, CUSTOMERS, "customerV2s", {"customerCode": code, "customDecimal0": 99.0,
                                                           "concurrencyHash": saved["concurrencyHash"]})
        headers = await login(c)
        got = (await c.get(f"{CUSTOMERS}/{code}", headers=headers)).json()["data"][0]
        return saved, second["customerV2s"][0], got

    saved, partial, got = run(box, scenario)
    assert {k: saved[k] for k in sent} == sent
    assert partial == got
    assert got["customDecimal0"] == 99.0
    kept = {k: v for k, v in sent.items() if k != "customDecimal0"}
    assert {k: got[k] for k in kept} == kept
    untouched = {k: v for k, v in seeded.items() if k not in SYSTEM and k not in sent}
    assert {k: got[k] for k in untouched} == untouched
    assert got["dataOperation"] == "U" and got["lastModifiedDate"] > saved["lastModifiedDate"] > \
        seeded["lastModifiedDate"]


@pytest.mark.parametrize(("field", "value", "message"), [
    ("customShort7", "y" * 61, "Value exceeds the maximum length of 60"),
    ("customShort0", 12, "Invalid value type: expected string"),
    ("customDate2", "2026-02-30", "Invalid date '2026-02-30': expected YYYY-MM-DD"),
    ("customDate3", "2026-02-03T00:00:00Z", "Invalid date '2026-02-03T00:00:00Z': expected YYYY-MM-DD"),
    ("customDecimal1", "12.5", "Invalid value type: expected number"),
    ("customDecimal2", True, "Invalid value type: expected number"),
    ("salespersonCode", "SALESREP9", "Value exceeds the maximum length of 8"),
    ("customShort20", "a", "Unknown field"),
    ("customDate0", "2026-01-01", "Unknown field"),
    ("customDecimal5", 1, "Unknown field"),
])
def test_each_context_field_refusal_names_the_field_and_saves_nothing_of_the_batch(
        box: QadSandbox, field: str, value: Any, message: str) -> None:
    before = box.store.all("customerV2s")

    async def scenario(c: httpx.AsyncClient) -> dict[str, Any]:
        return await post(c, CUSTOMERS, "customerV2s", new_customer("N0001", customShort1="fine"),
                          new_customer("N0002", **{field: value}))
    body = run(box, scenario)
    assert errors_of(body) == [(1, field, message)] and body["customerV2s"] == []
    assert box.store.all("customerV2s") == before


def test_a_non_finite_decimal_is_refused(box: QadSandbox) -> None:
    seeded = box.store.all("customerV2s")[0]
    raw = json.dumps({"customerV2s": [{"customerCode": seeded["customerCode"], "customDecimal3": 1.0,
                                       "concurrencyHash": seeded["concurrencyHash"]}]}).replace("1.0", "NaN")

    async def scenario(c: httpx.AsyncClient) -> dict[str, Any]:
        headers = await login(c)
        response = await c.post(CUSTOMERS, headers={**headers, "content-type": "application/json"}, content=raw)
        assert response.status_code == 200
        body: dict[str, Any] = response.json()
        return body
    assert errors_of(run(box, scenario)) == [(0, "customDecimal3", "Invalid value type: expected number")]
    assert box.store.get("customerV2s", seeded["customerCode"]) == seeded


def test_an_update_that_changes_nothing_is_saved_like_one_that_does(box: QadSandbox) -> None:
    """Today's behaviour, kept for the new fields: a write is a save (new stamp and hash), changed or not."""
    seeded = box.store.all("customerV2s")[0]
    code = seeded["customerCode"]

    async def scenario(c: httpx.AsyncClient) -> list[dict[str, Any]]:
        out = []
        current = seeded
        for fields in ({"name": seeded["name"]}, {"customShort3": None, "salespersonCode": None}):
            body = await post(c, CUSTOMERS, "customerV2s",
                              {"customerCode": code, "concurrencyHash": current["concurrencyHash"], **fields})
            current = body["customerV2s"][0]
            out.append(current)
        return out
    same_name, same_context = run(box, scenario)
    strip = {"lastModifiedDate", "lastModifiedUser", "concurrencyHash", "dataOperation"}
    assert {k: v for k, v in same_context.items() if k not in strip} == {
        k: v for k, v in seeded.items() if k not in strip}
    assert seeded["lastModifiedDate"] < same_name["lastModifiedDate"] < same_context["lastModifiedDate"]
    assert len({seeded["concurrencyHash"], same_name["concurrencyHash"], same_context["concurrencyHash"]}) == 3
    assert same_name["dataOperation"] == same_context["dataOperation"] == "U"


# ---- customer activities ---------------------------------------------------------------------------------

def test_an_activity_sent_with_a_contact_only_gets_the_owning_customer(box: QadSandbox) -> None:
    owner, _other = two_customers(box)
    contact = owner["contacts"][1]["contactId"]

    async def scenario(c: httpx.AsyncClient) -> tuple[dict[str, Any], dict[str, Any]]:
        body = await post(c, ACTIVITIES, "customerActivities",
                          activity("MA-102988", contactId=contact, subject="Visited /pricing", source="Marketo"))
        headers = await login(c)
        got = (await c.get(f"{ACTIVITIES}/MA-102988", headers=headers)).json()["data"][0]
        return body, got

    body, got = run(box, scenario)
    assert body["submitResult"] == {"success": True, "errors": []}
    saved = body["customerActivities"][0]
    assert saved == got
    assert {k: v for k, v in saved.items() if k not in SYSTEM} == {
        "activityId": "MA-102988", "contactId": contact, "customerCode": owner["customerCode"],
        "activityDate": "2026-01-02T10:30:00.000Z", "activityType": "Visit Webpage", "subject": "Visited /pricing",
        "source": "Marketo"}
    assert saved["uri"] == "urn:be:com.qad.crm.activity.ICustomerActivity:10USA.MA-102988"
    assert saved["domainCode"] == "10USA" and saved["dataOperation"] == "C" and saved["lastModifiedUser"] == "demo"


def test_an_activity_of_a_customer_alone_has_no_contact_and_dates_are_kept_in_utc(box: QadSandbox) -> None:
    owner, _other = two_customers(box)

    async def scenario(c: httpx.AsyncClient) -> dict[str, Any]:
        return await post(c, ACTIVITIES, "customerActivities", activity(
            "MA-1", customerCode=owner["customerCode"], activityDate="2026-01-02T12:00:00+02:00"))
    saved = run(box, scenario)["customerActivities"][0]
    assert saved["customerCode"] == owner["customerCode"] and saved["contactId"] is None
    assert saved["activityDate"] == "2026-01-02T10:00:00.000Z"
    assert saved["subject"] is None and saved["source"] is None


def test_activity_references_are_checked_and_name_the_field(box: QadSandbox) -> None:
    owner, other = two_customers(box)
    contact = owner["contacts"][0]["contactId"]
    batch = [
        activity("MA-1", contactId=contact),  # valid, but the batch fails
        activity("MA-2", contactId="C999999-01"),
        activity("MA-3", customerCode="C999999"),
        activity("MA-4", contactId=contact, customerCode=other["customerCode"]),
        activity("MA-5"),
        activity("MA-6", contactId="C999999-01", customerCode=owner["customerCode"]),
    ]

    async def scenario(c: httpx.AsyncClient) -> dict[str, Any]:
        return await post(c, ACTIVITIES, "customerActivities", *batch)
    body = run(box, scenario)
    assert errors_of(body) == [
        (1, "contactId", "Contact 'C999999-01' does not exist"),
        (2, "customerCode", "Customer 'C999999' does not exist"),
        (3, "contactId", f"Contact {contact} belongs to customer {owner['customerCode']}"),
        (4, "customerCode", "Value is mandatory"),
        (5, "contactId", "Contact 'C999999-01' does not exist"),
    ]
    assert body["customerActivities"] == [] and box.store.count("customerActivities") == 0


def test_a_contact_added_by_an_update_can_carry_activities(box: QadSandbox) -> None:
    owner, _other = two_customers(box)

    async def scenario(c: httpx.AsyncClient) -> dict[str, Any]:
        await post(c, CUSTOMERS, "customerV2s", {
            "customerCode": owner["customerCode"], "concurrencyHash": owner["concurrencyHash"],
            "contacts": [*owner["contacts"], {"contactId": "LEAD-4711", "firstName": "Ada", "lastName": "Byron"}]})
        return await post(c, ACTIVITIES, "customerActivities", activity("MA-9", contactId="LEAD-4711"))
    body = run(box, scenario)
    assert body["submitResult"]["success"] is True
    assert body["customerActivities"][0]["customerCode"] == owner["customerCode"]


@pytest.mark.parametrize(("fields", "expected"), [
    ({"activityId": "A" * 41}, [("activityId", "Value exceeds the maximum length of 40")]),
    ({"activityDate": "2026-01-02"}, [("activityDate", "Invalid datetime '2026-01-02': expected ISO 8601 with zone")]),
    ({"activityDate": "2026-01-02T10:30:00"},
     [("activityDate", "Invalid datetime '2026-01-02T10:30:00': expected ISO 8601 with zone")]),
    ({"activityDate": None}, [("activityDate", "Value is mandatory")]),
    ({"activityType": "t" * 41}, [("activityType", "Value exceeds the maximum length of 40")]),
    ({"activityType": ""}, [("activityType", "Value is mandatory")]),
    ({"subject": "s" * 256}, [("subject", "Value exceeds the maximum length of 255")]),
    ({"source": "s" * 21}, [("source", "Value exceeds the maximum length of 20")]),
    ({"customerCode": "C0000001X"}, [("customerCode", "Value exceeds the maximum length of 8")]),
    ({"isActive": True}, [("isActive", "Unknown field")]),
])
def test_activity_field_rules(box: QadSandbox, fields: dict[str, Any], expected: list[tuple[str, str]]) -> None:
    owner, _other = two_customers(box)
    record = {**activity("MA-7", contactId=owner["contacts"][0]["contactId"]), **fields}

    async def scenario(c: httpx.AsyncClient) -> dict[str, Any]:
        return await post(c, ACTIVITIES, "customerActivities", record)
    assert errors_of(run(box, scenario)) == [(0, f, m) for f, m in expected]
    assert box.store.count("customerActivities") == 0


def test_activity_required_fields_on_create(box: QadSandbox) -> None:
    owner, _other = two_customers(box)

    async def scenario(c: httpx.AsyncClient) -> dict[str, Any]:
        return await post(c, ACTIVITIES, "customerActivities",
                          {"activityId": "MA-8", "customerCode": owner["customerCode"]})
    assert errors_of(run(box, scenario)) == [(0, "activityDate", "Value is mandatory"),
                                             (0, "activityType", "Value is mandatory")]


def test_an_activity_cannot_move_to_another_customer_or_contact(box: QadSandbox) -> None:
    owner, other = two_customers(box)
    first, second = owner["contacts"][0]["contactId"], owner["contacts"][1]["contactId"]
    other_contact = other["contacts"][0]["contactId"]

    async def scenario(c: httpx.AsyncClient) -> list[dict[str, Any]]:
        created = (await post(c, ACTIVITIES, "customerActivities", activity("MA-5", contactId=first)))
        saved = created["customerActivities"][0]
        hashed = {"activityId": "MA-5", "concurrencyHash": saved["concurrencyHash"]}
        moves = [await post(c, ACTIVITIES, "customerActivities", {**hashed, **change}) for change in (
            {"customerCode": other["customerCode"]}, {"contactId": second}, {"contactId": other_contact},
            {"contactId": None})]
        echo = await post(c, ACTIVITIES, "customerActivities", {
            **hashed, "contactId": first, "customerCode": owner["customerCode"], "subject": "Opened e-mail"})
        return [saved, *moves, echo]

    saved, to_customer, to_contact, to_other_contact, to_none, echo = run(box, scenario)
    code = owner["customerCode"]
    assert errors_of(to_customer) == [(0, "customerCode", "customerCode cannot be changed on a customer activity")]
    assert errors_of(to_contact) == [(0, "contactId", "contactId cannot be changed on a customer activity")]
    assert errors_of(to_other_contact) == [(0, "contactId", "contactId cannot be changed on a customer activity")]
    assert errors_of(to_none) == [(0, "contactId", "contactId cannot be changed on a customer activity")]
    assert echo["submitResult"]["success"] is True
    after = echo["customerActivities"][0]
    assert after["customerCode"] == code and after["contactId"] == first and after["subject"] == "Opened e-mail"
    assert after["dataOperation"] == "U" and after["concurrencyHash"] != saved["concurrencyHash"]
    assert box.store.get("customerActivities", "MA-5") == after


def test_an_activity_update_needs_the_current_concurrency_hash(box: QadSandbox) -> None:
    owner, _other = two_customers(box)

    async def scenario(c: httpx.AsyncClient) -> tuple[dict[str, Any], dict[str, Any]]:
        await post(c, ACTIVITIES, "customerActivities", activity("MA-6", customerCode=owner["customerCode"]))
        again = await post(c, ACTIVITIES, "customerActivities", activity("MA-6", customerCode=owner["customerCode"]))
        stale = await post(c, ACTIVITIES, "customerActivities",
                           {"activityId": "MA-6", "subject": "x", "concurrencyHash": "0000000000000000"})
        return again, stale
    again, stale = run(box, scenario)
    assert errors_of(again) == [(0, "activityId", "Record already exists")]
    assert errors_of(stale) == [(0, "concurrencyHash", "Record changed by another user")]


def test_list_with_modified_since_get_and_browse_return_the_activity(box: QadSandbox, clock: ManualClock) -> None:
    owner, other = two_customers(box)

    async def scenario(c: httpx.AsyncClient) -> None:
        early = (await post(c, ACTIVITIES, "customerActivities",
                            activity("MA-1", contactId=owner["contacts"][0]["contactId"])))["customerActivities"][0]
        clock.advance(60)
        late = (await post(c, ACTIVITIES, "customerActivities",
                           activity("MA-2", customerCode=other["customerCode"])))["customerActivities"][0]
        headers = await login(c)
        everything = (await c.get(ACTIVITIES, headers=headers, params={"sort": "lastModifiedDate,asc"})).json()
        assert [r["activityId"] for r in everything["data"]] == ["MA-1", "MA-2"]
        assert everything["totalCount"] == 2 and everything["hasMore"] is False
        since = (await c.get(ACTIVITIES, headers=headers, params={
            "modifiedSince": late["lastModifiedDate"], "domainCode": "10USA", "page": 1, "pageSize": 10})).json()
        assert since == {"data": [late], "page": 1, "pageSize": 10, "totalCount": 1, "hasMore": False}
        assert parse_timestamp_ms(late["lastModifiedDate"]) > parse_timestamp_ms(early["lastModifiedDate"])
        paged = (await c.get(ACTIVITIES, headers=headers, params={"page": 2, "pageSize": 1})).json()
        assert [r["activityId"] for r in paged["data"]] == ["MA-2"] and paged["hasMore"] is False
        missing = await c.get(f"{ACTIVITIES}/MA-404", headers=headers)
        assert missing.status_code == 404 and missing.json()["submitResult"]["errors"] == [
            {"message": "Record not found"}]
        rows = (await c.get("/clouderp/api/qracore/browses", headers=headers, params={
            "browseId": "urn:browse:bebrowse:com.qad.erp.crm.customerActivities", "page": 1, "pageAction": "first",
            "filter": f"customerActivity.customerCode,eq,{other['customerCode']},literal"})).json()
        assert rows == {"data": [late]}
        unscoped = await c.get(ACTIVITIES, headers={"Authorization": headers["Authorization"]})
        assert unscoped.status_code == 400
    run(box, scenario)


def test_a_batch_of_101_activities_is_refused_and_100_are_saved(box: QadSandbox) -> None:
    owner, _other = two_customers(box)
    records = [activity(f"MA-{n:03d}", customerCode=owner["customerCode"]) for n in range(101)]

    async def scenario(c: httpx.AsyncClient) -> tuple[httpx.Response, dict[str, Any]]:
        headers = await login(c)
        refused = await c.post(ACTIVITIES, headers=headers, json={"customerActivities": records})
        return refused, await post(c, ACTIVITIES, "customerActivities", *records[:100])
    refused, accepted = run(box, scenario)
    assert refused.status_code == 400 and refused.json() == {"submitResult": {"success": False, "errors": [
        {"message": "Too many records: at most 100 per request"}]}}
    assert accepted["submitResult"]["success"] is True and len(accepted["customerActivities"]) == 100
    assert box.store.count("customerActivities") == 100 and box.store.get("customerActivities", "MA-100") is None


def test_the_admin_api_creates_activities_with_the_owning_customer(box: QadSandbox) -> None:
    owner, _other = two_customers(box)
    contact = owner["contacts"][0]["contactId"]

    async def scenario(c: httpx.AsyncClient) -> tuple[httpx.Response, httpx.Response]:
        made = await c.post("/_admin/records/customerActivities", json=activity("MA-ADM", contactId=contact))
        return made, await c.get("/_admin/records/customerActivities")
    made, listed = run(box, scenario)
    assert made.status_code == 201
    record = made.json()
    assert record["customerCode"] == owner["customerCode"] and record["activityDate"] == "2026-01-02T10:30:00.000Z"
    assert record["subject"] is None and record["lastModifiedUser"] == "sandbox-admin"
    assert listed.json() == {"count": 1, "records": [record]}


def test_a_sandbox_starts_without_activities_and_seeds_none() -> None:
    box = create_qad_sandbox(customers=5, items=0)
    assert box.store.count("customerActivities") == 0 and box.store.all("customerActivities") == []


def test_seeded_activities_belong_to_seeded_customers_and_contacts_and_are_deterministic() -> None:
    box = create_qad_sandbox(customers=30, items=0, customer_activities=50, seed=5)
    activities = box.store.all("customerActivities")
    assert activities == create_qad_sandbox(customers=30, items=0, customer_activities=50, seed=5).store.all(
        "customerActivities")
    assert [a["activityId"] for a in sorted(activities, key=lambda a: a["activityId"])] == [
        f"A{k:07d}" for k in range(1, 51)]
    with_contact = 0
    for record in activities:
        customer = box.store.get("customerV2s", record["customerCode"])
        assert customer is not None
        if record["contactId"] is not None:
            with_contact += 1
            assert record["contactId"] in [c["contactId"] for c in customer["contacts"]]
        assert set(record) == SYSTEM | {"activityId", "contactId", "customerCode", "activityDate", "activityType",
                                        "subject", "source"}
        assert parse_timestamp_ms(record["activityDate"]) <= parse_timestamp_ms(record["lastModifiedDate"])
        assert record["activityDate"].endswith("Z") and len(record["activityDate"]) == 24
        assert record["activityType"] and len(record["subject"]) <= 255 and len(record["source"]) <= 20
    assert 25 < with_contact < 50
    one = activities[7]
    assert box.store.get("customerActivities", one["activityId"]) == one
    with pytest.raises(ValueError, match="customer"):
        create_qad_sandbox(customers=0, items=0, customer_activities=1)
