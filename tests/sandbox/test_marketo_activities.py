"""The Marketo sandbox's activity log (facts §2.5): types, paging tokens, activities, lead changes, deleted leads.

Every request goes through the app (identity, limits, envelope); time moves only through a ManualClock.
"""

from __future__ import annotations

import asyncio
import copy
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import httpx

from ml_connector.sandbox.core import ManualClock
from ml_connector.sandbox.marketo.activities import decode_token, encode_token
from ml_connector.sandbox.marketo.app import DEFAULT_CONFIG, MarketoSandbox
from ml_connector.sandbox.marketo.store import MarketoStore

T0 = 1_767_225_600.0  # 2026-01-01T00:00:00Z
DAY = 86_400.0
BASE = "https://123-ABC-456.mktorest.com"
Scenario = Callable[["Api"], Awaitable[Any]]


def make(clock: ManualClock, leads: Sequence[tuple[float, dict[str, Any]]] = (), **config: Any) -> MarketoSandbox:
    """A sandbox whose store holds ``leads`` (created at the given times) before the app is built."""
    store = MarketoStore(clock)
    for at, values in leads:
        store.insert("leads", values, at=at)
    return MarketoSandbox(store=store, clock=clock, config={**copy.deepcopy(DEFAULT_CONFIG), **config})


class Api:
    """An authenticated client that asks for a new token when the sandbox says 602 (the clock moved on)."""

    def __init__(self, client: httpx.AsyncClient, sandbox: MarketoSandbox) -> None:
        self.client = client
        self.sandbox = sandbox
        self.token = ""

    async def login(self, client_id: str | None = None) -> None:
        if client_id is not None:  # a second API client of the same subscription
            self.token = self.sandbox.identity.issue(client_id).value
            return
        auth = await self.client.get("/identity/oauth/token", params={
            "grant_type": "client_credentials", "client_id": self.sandbox.config["client_id"],
            "client_secret": self.sandbox.config["client_secret"]})
        self.token = auth.json()["access_token"]

    async def call(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        for _ in range(2):
            headers = {"Authorization": f"Bearer {self.token}", **kwargs.pop("headers", {})}
            answer = await self.client.request(method, path, headers=headers, **kwargs)
            if answer.headers.get("content-type", "").startswith("application/json") and not answer.json().get(
                    "success", True) and answer.json()["errors"][0]["code"] == "602":
                await self.login()
                continue
            return answer
        raise AssertionError("token refused twice")

    async def get(self, path: str, **params: Any) -> dict[str, Any]:
        answer = await self.call("GET", path, params=params)
        assert answer.status_code == 200
        body: dict[str, Any] = answer.json()
        return body

    async def post(self, path: str, payload: Any = None) -> dict[str, Any]:
        answer = await self.call("POST", path, json=payload)
        assert answer.status_code == 200
        body: dict[str, Any] = answer.json()
        return body

    async def since(self, moment: str) -> str:
        body = await self.get("/rest/v1/activities/pagingtoken.json", sinceDatetime=moment)
        assert body["success"] is True, body
        token: str = body["nextPageToken"]
        return token


def run(sandbox: MarketoSandbox, scenario: Scenario) -> Any:
    async def main() -> Any:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=sandbox), base_url=BASE) as client:
            api = Api(client, sandbox)
            await api.login()
            return await scenario(api)

    return asyncio.run(main())


def error(body: dict[str, Any]) -> tuple[bool, str, str]:
    return body["success"], body["errors"][0]["code"], body["errors"][0]["message"]


def test_types_list_the_simulated_activity_types() -> None:
    body = run(make(ManualClock(T0)), lambda api: api.get("/rest/v1/activities/types.json"))
    assert body["success"] is True
    assert [(t["id"], t["name"]) for t in body["result"]] == [
        (1, "Visit Webpage"), (2, "Fill Out Form"), (3, "Click Link"), (12, "New Lead"), (13, "Change Data Value"),
        (37, "Delete Lead")]
    change = body["result"][4]
    assert change["primaryAttribute"] == {"name": "Attribute Name", "dataType": "integer"}
    assert [a["name"] for a in change["attributes"]] == ["New Value", "Old Value", "Reason", "Source"]


def test_paging_token_needs_an_iso_date() -> None:
    async def scenario(api: Api) -> list[dict[str, Any]]:
        return [await api.get("/rest/v1/activities/pagingtoken.json"),
                await api.get("/rest/v1/activities/pagingtoken.json", sinceDatetime="yesterday"),
                await api.get("/rest/v1/activities/pagingtoken.json", sinceDatetime="2025-12-31T20:00:00-05:00"),
                await api.get("/rest/v1/activities/pagingtoken.json", sinceDatetime="2026-01-01T01:00:00Z")]

    blank, bad, offset, zulu = run(make(ManualClock(T0)), scenario)
    assert error(blank) == (False, "701", "sinceDatetime cannot be blank")
    assert error(bad) == (False, "704", "Invalid date: yesterday")
    assert sorted(offset) == ["nextPageToken", "requestId", "success"]  # no result, no moreResult
    assert decode_token(offset["nextPageToken"], T0, 14) == (T0 + 3600, 0)
    assert decode_token(zulu["nextPageToken"], T0, 14) == (T0 + 3600, 0)


def test_lead_events_become_activities_in_order() -> None:
    clock = ManualClock(T0)
    sandbox = make(clock)

    async def scenario(api: Api) -> dict[str, Any]:
        token = await api.since("2026-01-01T00:00:00Z")
        clock.advance(10)
        lead = sandbox.store.insert("leads", {"email": "ada@example.com", "firstName": "Ada"})
        clock.advance(10)
        sandbox.store.update("leads", lead["id"], {"firstName": "Adah", "leadScore": 5})
        clock.advance(10)
        sandbox.store.delete("leads", lead["id"])
        return await api.get("/rest/v1/activities.json", nextPageToken=token, activityTypeIds="12,13,37")

    body = run(sandbox, scenario)
    assert body["success"] is True and body["moreResult"] is False
    assert body["result"] == [
        {"id": 1, "marketoGUID": "1", "leadId": 1, "activityDate": "2026-01-01T00:00:10Z", "activityTypeId": 12,
         "primaryAttributeValueId": 1, "primaryAttributeValue": "Ada",
         "attributes": [{"name": "Source Type", "value": "Web service API"},
                        {"name": "Created Date", "value": "2026-01-01"}]},
        {"id": 2, "marketoGUID": "2", "leadId": 1, "activityDate": "2026-01-01T00:00:20Z", "activityTypeId": 13,
         "primaryAttributeValueId": 3, "primaryAttributeValue": "firstName",
         "attributes": [{"name": "New Value", "value": "Adah"}, {"name": "Old Value", "value": "Ada"},
                        {"name": "Reason", "value": "Web service API"},
                        {"name": "Source", "value": "Web service API"}]},
        {"id": 3, "marketoGUID": "3", "leadId": 1, "activityDate": "2026-01-01T00:00:20Z", "activityTypeId": 13,
         "primaryAttributeValueId": 15, "primaryAttributeValue": "leadScore",
         "attributes": [{"name": "New Value", "value": "5"}, {"name": "Old Value", "value": None},
                        {"name": "Reason", "value": "Web service API"},
                        {"name": "Source", "value": "Web service API"}]},
        {"id": 4, "marketoGUID": "4", "leadId": 1, "activityDate": "2026-01-01T00:00:30Z", "activityTypeId": 37,
         "primaryAttributeValueId": 1, "primaryAttributeValue": "Adah",
         "attributes": [{"name": "Remove from CRM", "value": False}]},
    ]
    assert decode_token(body["nextPageToken"], clock(), 14) == (T0 + 30, 4)


def test_type_and_lead_filters() -> None:
    clock = ManualClock(T0)
    sandbox = make(clock)

    async def scenario(api: Api) -> tuple[dict[str, Any], dict[str, Any]]:
        token = await api.since("2026-01-01T00:00:00Z")
        a = sandbox.store.insert("leads", {"email": "a@example.com"})
        b = sandbox.store.insert("leads", {"email": "b@example.com"})
        sandbox.store.update("leads", a["id"], {"title": "CEO"})
        sandbox.store.update("leads", b["id"], {"title": "CTO"})
        changes = await api.get("/rest/v1/activities.json", nextPageToken=token, activityTypeIds="13")
        of_b = await api.get("/rest/v1/activities.json", nextPageToken=token, activityTypeIds="12,13",
                             leadIds=str(b["id"]))
        return changes, of_b

    changes, of_b = run(sandbox, scenario)
    assert [(i["leadId"], i["activityTypeId"]) for i in changes["result"]] == [(1, 13), (2, 13)]
    assert [(i["leadId"], i["activityTypeId"]) for i in of_b["result"]] == [(2, 12), (2, 13)]


def test_lead_changes_return_new_leads_and_the_asked_fields_only() -> None:
    clock = ManualClock(T0)
    sandbox = make(clock)

    async def scenario(api: Api) -> tuple[dict[str, Any], dict[str, Any]]:
        token = await api.since("2026-01-01T00:00:00Z")
        clock.advance(5)
        lead = sandbox.store.insert("leads", {"email": "a@example.com", "firstName": "A"})
        clock.advance(5)
        sandbox.store.update("leads", lead["id"], {"firstName": "B", "title": "CEO"})
        blank = await api.get("/rest/v1/activities/leadchanges.json", nextPageToken=token)
        return blank, await api.get("/rest/v1/activities/leadchanges.json", nextPageToken=token, fields="firstName")

    blank, body = run(sandbox, scenario)
    assert error(blank) == (False, "701", "fields cannot be blank")
    assert body["moreResult"] is False
    assert body["result"] == [
        {"id": 1, "marketoGUID": "1", "leadId": 1, "activityDate": "2026-01-01T00:00:05Z", "activityTypeId": 12,
         "attributes": [{"name": "Source Type", "value": "Web service API"},
                        {"name": "Created Date", "value": "2026-01-01"}], "fields": []},
        {"id": 2, "marketoGUID": "2", "leadId": 1, "activityDate": "2026-01-01T00:00:10Z", "activityTypeId": 13,
         "attributes": [{"name": "New Value", "value": "B"}, {"name": "Old Value", "value": "A"},
                        {"name": "Reason", "value": "Web service API"},
                        {"name": "Source", "value": "Web service API"}],
         "fields": [{"id": 3, "name": "firstName", "newValue": "B", "oldValue": "A"}]},
    ]


def test_deleted_leads() -> None:
    clock = ManualClock(T0)
    sandbox = make(clock)

    async def scenario(api: Api) -> dict[str, Any]:
        token = await api.since("2026-01-01T00:00:00Z")
        first = sandbox.store.insert("leads", {"email": "a@example.com", "firstName": "Ann", "lastName": "Lee"})
        sandbox.store.insert("leads", {"email": "b@example.com"})
        clock.advance(60)
        sandbox.store.delete("leads", first["id"])
        return await api.get("/rest/v1/activities/deletedleads.json", nextPageToken=token)

    body = run(sandbox, scenario)
    assert body["moreResult"] is False
    assert body["result"] == [
        {"id": 3, "marketoGUID": "3", "leadId": 1, "activityDate": "2026-01-01T00:01:00Z", "activityTypeId": 37,
         "primaryAttributeValueId": 1, "primaryAttributeValue": "Ann Lee",
         "attributes": [{"name": "Remove from CRM", "value": False}]}]


def test_pages_are_short_at_a_day_boundary_and_the_last_token_picks_up_new_activities() -> None:
    clock = ManualClock(T0 + 23.5 * 3600)  # 23:30, and all within the access token's hour
    sandbox = make(clock)

    async def scenario(api: Api) -> list[dict[str, Any]]:
        token = await api.since("2026-01-01T00:00:00Z")
        for n in range(8):  # five on Jan 1 (23:30..23:56:40), three on Jan 2 (00:03:20..00:16:40)
            sandbox.store.insert("leads", {"email": f"l{n}@example.com"})
            clock.advance(400)
        pages = []
        while True:
            page = await api.get("/rest/v1/activities.json", nextPageToken=token, activityTypeIds="12", batchSize=3)
            pages.append(page)
            token = page["nextPageToken"]
            if not page["moreResult"]:
                break
        sandbox.store.insert("leads", {"email": "late@example.com"})
        pages.append(await api.get("/rest/v1/activities.json", nextPageToken=token, activityTypeIds="12"))
        return pages

    pages = run(sandbox, scenario)
    assert [([i["leadId"] for i in p["result"]], p["moreResult"]) for p in pages] == [
        ([1, 2, 3], True), ([4, 5], True), ([6, 7, 8], False), ([9], False)]
    assert all(isinstance(p["nextPageToken"], str) and p["nextPageToken"] for p in pages)


def test_a_page_may_be_empty_and_still_have_more() -> None:
    clock = ManualClock(T0)
    sandbox = make(clock, activity_scan_limit=2)

    async def scenario(api: Api) -> list[tuple[list[int], bool]]:
        token = await api.since("2026-01-01T00:00:00Z")
        lead = sandbox.store.insert("leads", {"email": "a@example.com"})
        for n in range(3):
            sandbox.store.update("leads", lead["id"], {"leadScore": n})
        sandbox.store.delete("leads", lead["id"])
        seen = []
        while True:
            page = await api.get("/rest/v1/activities.json", nextPageToken=token, activityTypeIds="37")
            seen.append(([i["id"] for i in page.get("result", [])], page["moreResult"]))
            token = page["nextPageToken"]
            if not page["moreResult"]:
                return seen

    assert run(sandbox, scenario) == [([], True), ([], True), ([5], False)]


def test_an_empty_page_has_no_result_key_unless_configured() -> None:
    async def scenario(api: Api) -> dict[str, Any]:
        token = await api.since("2026-01-01T00:00:00Z")
        return await api.get("/rest/v1/activities/deletedleads.json", nextPageToken=token)

    strict = run(make(ManualClock(T0)), scenario)
    assert sorted(strict) == ["moreResult", "nextPageToken", "requestId", "success"]
    assert run(make(ManualClock(T0), activity_empty_result=True), scenario)["result"] == []


def test_tokens_expire_after_14_days_and_must_be_well_formed() -> None:
    clock = ManualClock(T0)
    sandbox = make(clock)
    old = encode_token((T0, 0), T0 - 14 * DAY - 1)
    fresh = encode_token((T0, 0), T0 - 14 * DAY + 1)

    async def scenario(api: Api) -> list[dict[str, Any]]:
        return [await api.get("/rest/v1/activities.json", nextPageToken=old, activityTypeIds="1"),
                await api.get("/rest/v1/activities.json", nextPageToken="not-a-token", activityTypeIds="1"),
                await api.get("/rest/v1/activities.json", activityTypeIds="1"),
                await api.get("/rest/v1/activities.json", nextPageToken=fresh, activityTypeIds="1")]

    expired, garbled, missing, ok = run(sandbox, scenario)
    assert error(expired) == (False, "1003", "Invalid nextPageToken")
    assert error(garbled) == (False, "1003", "Invalid nextPageToken")
    assert error(missing) == (False, "701", "nextPageToken cannot be blank")
    assert ok["success"] is True and "result" not in ok and ok["moreResult"] is False


def test_parameters_are_bounded() -> None:
    clock = ManualClock(T0)
    sandbox = make(clock)

    async def scenario(api: Api) -> list[dict[str, Any]]:
        token = await api.since("2026-01-01T00:00:00Z")
        url = "/rest/v1/activities.json"
        return [await api.get(url, nextPageToken=token),
                await api.get(url, nextPageToken=token, activityTypeIds=",".join(["1"] * 11)),
                await api.get(url, nextPageToken=token, activityTypeIds="1", leadIds=",".join(map(str, range(31)))),
                await api.get(url, nextPageToken=token, activityTypeIds="1", batchSize=301),
                await api.get(url, nextPageToken=token, activityTypeIds="1", listId=7),
                await api.get(url, nextPageToken=token, activityTypeIds="99")]

    codes = [error(body)[:2] for body in run(sandbox, scenario)]
    assert codes == [(False, "701"), (False, "1003"), (False, "1003"), (False, "1003"), (False, "1003"),
                     (False, "1003")]


def test_seeded_leads_come_with_new_lead_and_web_activities() -> None:
    clock = ManualClock(T0)
    sandbox = make(clock, leads=[(T0 - 10 * DAY, {"email": "a@example.com"}),
                                 (T0 - 5 * DAY, {"email": "b@example.com"})])

    async def scenario(api: Api) -> list[dict[str, Any]]:
        token = await api.since("2025-12-01T00:00:00Z")
        items: list[dict[str, Any]] = []
        while True:
            page = await api.get("/rest/v1/activities.json", nextPageToken=token, activityTypeIds="1,2,3,12")
            items += page["result"]
            token = page["nextPageToken"]
            if not page["moreResult"]:
                return items

    items = run(sandbox, scenario)
    assert [i["id"] for i in items] == list(range(1, len(items) + 1))  # ids grow with the date
    assert [i["activityDate"] for i in items] == sorted(i["activityDate"] for i in items)
    assert {(i["leadId"], i["activityTypeId"]) for i in items if i["activityTypeId"] == 12} == {(1, 12), (2, 12)}
    web = [i for i in items if i["activityTypeId"] in (1, 2, 3)]
    assert {i["leadId"] for i in web} == {1, 2}
    assert all(i["activityDate"] <= "2026-01-01T00:00:00Z" for i in items)
    assert all(i["attributes"][0]["name"] == "Client IP Address" for i in web)


def test_activity_calls_need_a_token_and_count_against_the_quota() -> None:
    clock = ManualClock(T0)
    sandbox = make(clock)

    async def scenario(api: Api) -> tuple[dict[str, Any], dict[str, int]]:
        bare = (await api.client.get("/rest/v1/activities/types.json")).json()
        await api.get("/rest/v1/activities/types.json")
        await api.get("/rest/v1/activities/pagingtoken.json", sinceDatetime="bad")  # refused: not counted
        return bare, sandbox.limits.usage()

    bare, usage = run(sandbox, scenario)
    assert error(bare)[:2] == (False, "601")
    assert usage == {"2025-12-31": 1}  # T0 is still Dec 31 in US Central
