"""Tests of the Marketo sandbox's core: identity, envelope, request limits, lead database objects, admin
(in-process through httpx.ASGITransport; facts: shared/api-facts/adobe-commerce-marketo-qad.md §2.1–2.4)."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import httpx
import pytest

from ml_connector.sandbox.core import ManualClock
from ml_connector.sandbox.marketo import DEFAULT_CONFIG, MarketoSandbox, create_marketo_sandbox
from ml_connector.sandbox.marketo.store import LeadEvent, MarketoStore, lead_field_id
from ml_connector.sandbox.registry import create_sandbox, default_port
from ml_connector.sandbox.serve import SandboxServer

T = TypeVar("T")
HOST = "https://123-abc-456.mktorest.com"
CID, SECRET = DEFAULT_CONFIG["client_id"], DEFAULT_CONFIG["client_secret"]
TOKEN_URL = f"/identity/oauth/token?grant_type=client_credentials&client_id={CID}&client_secret={SECRET}"


def run(sandbox: MarketoSandbox, go: Callable[[httpx.AsyncClient], Awaitable[T]]) -> T:
    async def main() -> T:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=sandbox), base_url=HOST) as client:
            return await go(client)
    return asyncio.run(main())


def make(**kwargs: Any) -> tuple[MarketoSandbox, ManualClock]:
    clock = ManualClock()
    return create_marketo_sandbox(clock=clock, **kwargs), clock


async def token(client: httpx.AsyncClient) -> dict[str, str]:
    body = (await client.get(TOKEN_URL)).json()
    return {"Authorization": f"Bearer {body['access_token']}"}


def strip(body: dict[str, Any]) -> dict[str, Any]:
    """The body without its requestId (which must look like Marketo's)."""
    assert re.fullmatch(r"[0-9a-f]+#[0-9a-f]+", body.pop("requestId"))
    return body


def call(sandbox: MarketoSandbox, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
    async def go(client: httpx.AsyncClient) -> dict[str, Any]:
        response = await client.request(method, path, headers=await token(client), **kwargs)
        assert response.status_code == 200
        return strip(response.json())
    return run(sandbox, go)


# -- identity -----------------------------------------------------------------------------------------------------
def test_identity_returns_the_same_token_until_it_expires_then_a_new_one() -> None:
    sandbox, clock = make()

    async def go(client: httpx.AsyncClient) -> list[dict[str, Any]]:
        first = (await client.get(TOKEN_URL)).json()
        clock.advance(100)
        second = (await client.post(TOKEN_URL)).json()
        clock.advance(3500)
        third = (await client.get(TOKEN_URL)).json()
        return [first, second, third]

    first, second, third = run(sandbox, go)
    assert re.fullmatch(r"[0-9a-f-]{36}:sj", first["access_token"])
    assert first == {"access_token": first["access_token"], "token_type": "bearer", "expires_in": 3600,
                     "scope": DEFAULT_CONFIG["api_user"]}
    assert second == {**first, "expires_in": 3500}
    assert third["access_token"] != first["access_token"] and third["expires_in"] == 3600


def test_identity_takes_a_form_body_and_refuses_bad_credentials() -> None:
    sandbox, _ = make()

    async def go(client: httpx.AsyncClient) -> list[httpx.Response]:
        form = await client.post("/identity/oauth/token", data={"grant_type": "client_credentials",
                                                                "client_id": CID, "client_secret": SECRET})
        bad = await client.get(TOKEN_URL.replace(SECRET, "wrong"))
        return [form, bad]

    form, bad = run(sandbox, go)
    assert form.status_code == 200 and form.json()["expires_in"] == 3600
    assert bad.status_code == 401
    assert bad.json() == {"error": "invalid_client", "error_description": "Bad client credentials"}


def test_unknown_token_is_601_expired_is_602_query_token_works() -> None:
    sandbox, clock = make(leads=1)

    async def go(client: httpx.AsyncClient) -> list[dict[str, Any]]:
        auth = await token(client)
        value = auth["Authorization"][7:]
        unknown = await client.get("/rest/v1/lead/1.json", headers={"Authorization": "Bearer nope:sj"})
        missing = await client.get("/rest/v1/lead/1.json")
        by_query = await client.get(f"/rest/v1/lead/1.json?access_token={value}&fields=email")
        clock.advance(3600)
        expired = await client.get("/rest/v1/lead/1.json", headers=auth)
        return [strip(r.json()) for r in (unknown, missing, by_query, expired)]

    unknown, missing, by_query, expired = run(sandbox, go)
    assert unknown == {"success": False, "errors": [{"code": "601", "message": "Access token invalid"}]}
    assert missing == unknown
    assert by_query == {"result": [{"id": 1, "email": "lead1@customer.example"}], "success": True}
    assert expired == {"success": False, "errors": [{"code": "602", "message": "Access token expired"}]}


# -- limits ---------------------------------------------------------------------------------------------------------
def test_rate_limit_606_counts_only_admitted_calls_and_frees_after_the_window() -> None:
    sandbox, clock = make(rate_calls=3, rate_seconds=20)

    async def go(client: httpx.AsyncClient) -> list[dict[str, Any]]:
        auth = await token(client)
        await client.get("/rest/v1/leads.json?filterType=email&filterValues=x@y.com")  # 601: not counted
        for _ in range(3):
            assert (await client.get("/rest/v1/leads.json?filterType=email&filterValues=x@y.com",
                                     headers=auth)).json()["success"]
        refused = (await client.get("/rest/v1/leads.json?filterType=email&filterValues=x@y.com", headers=auth))
        clock.advance(20)
        again = await client.get("/rest/v1/leads.json?filterType=email&filterValues=x@y.com", headers=auth)
        usage = (await client.get("/_admin/usage")).json()
        return [strip(refused.json()), strip(again.json()), usage]

    refused, again, usage = run(sandbox, go)
    assert refused == {"success": False,
                       "errors": [{"code": "606", "message": "Max rate limit '3' exceeded with in '20' secs"}]}
    assert again == {"result": [], "success": True}
    assert usage == {"days": {"2025-12-31": 4}, "today": 4, "window": 1, "in_flight": 0}


def test_daily_quota_607_resets_at_midnight_us_central() -> None:
    sandbox, clock = make(daily_quota=2)  # clock: 2026-01-01T00:00Z = 2025-12-31 18:00 Central

    async def go(client: httpx.AsyncClient) -> list[str]:
        codes = []
        for step in (0, 0, 0, 6 * 3600 - 1, 1):
            clock.advance(step)
            auth = await token(client)
            body = (await client.get("/rest/v1/stats/usage.json", headers=auth)).json()
            codes.append("ok" if body["success"] else body["errors"][0]["code"])
        return codes

    assert run(sandbox, go) == ["ok", "ok", "607", "607", "ok"]


def test_concurrency_615_beyond_the_calls_in_flight() -> None:
    sandbox, _ = make(concurrency=2, request_latency=0.2)

    async def go(client: httpx.AsyncClient) -> list[str]:
        auth = await token(client)
        answers = await asyncio.gather(*[client.get("/rest/v1/stats/usage.json", headers=auth) for _ in range(3)])
        return sorted("ok" if r.json()["success"] else r.json()["errors"][0]["code"] for r in answers)

    assert run(sandbox, go) == ["615", "ok", "ok"]
    assert sandbox.limits.usage() == {"2025-12-31": 2}


def test_413_414_and_the_method_get_tunnel() -> None:
    sandbox, _ = make(leads=2)

    async def go(client: httpx.AsyncClient) -> list[httpx.Response]:
        auth = await token(client)
        long_uri = await client.get("/rest/v1/leads.json?filterType=email&filterValues=" + "a" * 8200, headers=auth)
        big = await client.post("/rest/v1/leads.json", headers={**auth, "Content-Type": "application/json"},
                                content=b'{"input":[' + b" " * 1_048_600 + b"]}")
        tunnel = await client.post("/rest/v1/leads.json?_method=GET", headers=auth,
                                   data={"filterType": "id", "filterValues": "2,1", "fields": "email"})
        in_form = await client.post("/rest/v1/leads.json", headers=auth,
                                    data={"_method": "GET", "filterType": "id", "filterValues": "2,1",
                                          "fields": "email"})
        return [long_uri, big, tunnel, in_form]

    long_uri, big, tunnel, in_form = run(sandbox, go)
    assert strip(in_form.json()) == {"result": [{"id": 1, "email": "lead1@customer.example"},
                                                {"id": 2, "email": "lead2@customer.example"}], "success": True}
    assert long_uri.status_code == 414
    assert big.status_code == 413
    assert strip(tunnel.json()) == {"result": [{"id": 1, "email": "lead1@customer.example"},
                                               {"id": 2, "email": "lead2@customer.example"}], "success": True}


def test_usage_endpoint_reports_counted_calls_of_the_day() -> None:
    sandbox, _ = make()
    refused = call(sandbox, "GET", "/rest/v1/leads.json?filterType=id")  # response-level 701: not counted
    assert refused["errors"] == [{"code": "701", "message": "filterValues cannot be blank"}]
    body = call(sandbox, "GET", "/rest/v1/stats/usage.json")
    assert body == {"result": [{"date": "2025-12-31", "total": 1,
                                "users": [{"userId": DEFAULT_CONFIG["api_user"], "count": 1}]}], "success": True}


# -- leads ----------------------------------------------------------------------------------------------------------
def test_lead_sync_actions_and_record_level_reasons_in_input_order() -> None:
    sandbox, _ = make(leads=2, companies=1)
    body = call(sandbox, "POST", "/rest/v1/leads.json", json={"action": "createOrUpdate", "input": [
        {"email": "LEAD1@customer.example", "firstName": "Zed"},  # updated (e-mail ignores case)
        {"email": "new@x.com", "externalCompanyId": "C-00001"},  # created, linked
        {"email": "new@x.com"},  # 1036 duplicate in input
        {"email": "c@x.com", "nickname": "c"},  # 1006
        {"email": "d@x.com", "company": "Acme"},  # 1021
        {"email": "e@x.com", "customerNumber": "12"},  # 1001
        {"firstName": "no email"},  # 1002
        {"email": "f@x.com", "externalCompanyId": "C-404"},  # company unknown
    ]})
    assert body == {"success": True, "result": [
        {"id": 1, "status": "updated"},
        {"id": 3, "status": "created"},
        {"status": "skipped", "reasons": [{"code": "1036", "message": "Duplicate lead in input"}]},
        {"status": "skipped", "reasons": [{"code": "1006", "message": "Field 'nickname' not found"}]},
        {"status": "skipped", "reasons": [{"code": "1021", "message": "Company update not allowed"}]},
        {"status": "skipped",
         "reasons": [{"code": "1001", "message": "Invalid value '12'. Required of type 'integer'"}]},
        {"status": "skipped", "reasons": [{"code": "1002", "message": "Missing value for lookup field 'email'"}]},
        {"status": "skipped", "reasons": [{"code": "1013", "message": "Company 'C-404' not found"}]},
    ]}
    lead = sandbox.store.get("leads", 1)
    assert lead is not None and lead["firstName"] == "Zed"
    shown = call(sandbox, "GET", "/rest/v1/lead/3.json?fields=email,company,externalCompanyId")
    company = sandbox.store.records("companies")[0]["company"]
    assert shown["result"] == [{"id": 3, "email": "new@x.com", "company": company, "externalCompanyId": "C-00001"}]


def test_lead_create_only_update_only_duplicates_and_id_lookup() -> None:
    sandbox, _ = make(leads=1)
    body = call(sandbox, "POST", "/rest/v1/leads.json", json={"action": "createOnly", "input": [
        {"email": "lead1@customer.example"}, {"email": "z@x.com"}]})
    assert body["result"] == [{"status": "skipped", "reasons": [{"code": "1005", "message": "Lead already exists"}]},
                              {"id": 2, "status": "created"}]
    body = call(sandbox, "POST", "/rest/v1/leads.json", json={"action": "createDuplicate", "input": [
        {"email": "z@x.com"}]})
    assert body["result"] == [{"id": 3, "status": "created"}]
    body = call(sandbox, "POST", "/rest/v1/leads.json", json={"action": "updateOnly", "input": [
        {"email": "z@x.com", "firstName": "Z"}, {"email": "q@x.com"}]})
    assert body["result"] == [
        {"status": "skipped", "reasons": [{"code": "1007", "message": "Multiple lead match lookup criteria"}]},
        {"status": "skipped", "reasons": [{"code": "1004", "message": "Lead not found"}]}]
    body = call(sandbox, "POST", "/rest/v1/leads.json", json={"action": "updateOnly", "lookupField": "id",
                                                              "input": [{"id": 3, "firstName": "Three"}]})
    assert body["result"] == [{"id": 3, "status": "updated"}]
    refused = call(sandbox, "POST", "/rest/v1/leads.json", json={"lookupField": "id", "input": [{"id": 3}]})
    assert refused == {"success": False, "errors": [
        {"code": "1003", "message": "Lookup field 'id' is only allowed with action 'updateOnly'"}]}
    too_many = call(sandbox, "POST", "/rest/v1/leads.json", json={"input": [{"email": f"{i}@x.com"}
                                                                            for i in range(301)]})
    assert too_many["errors"][0]["code"] == "1003" and sandbox.store.count("leads") == 3


def test_lead_reads_filter_fields_paging_and_limits() -> None:
    sandbox, _ = make(leads=5, max_filter_matches=4)
    emails = ",".join(f"lead{i}@customer.example" for i in (5, 1, 3))
    page1 = call(sandbox, "GET", f"/rest/v1/leads.json?filterType=email&filterValues={emails}"
                                 "&fields=email&batchSize=2")
    assert page1["result"] == [{"id": 1, "email": "lead1@customer.example"},
                               {"id": 3, "email": "lead3@customer.example"}]
    assert page1["moreResult"] is True
    page2 = call(sandbox, "GET", f"/rest/v1/leads.json?filterType=email&filterValues={emails}"
                                 f"&fields=email&batchSize=2&nextPageToken={page1['nextPageToken']}")
    assert page2 == {"result": [{"id": 5, "email": "lead5@customer.example"}], "success": True}
    default = call(sandbox, "GET", "/rest/v1/leads.json?filterType=id&filterValues=2")
    assert list(default["result"][0]) == ["id", "email", "updatedAt", "createdAt", "firstName", "lastName"]
    none = call(sandbox, "GET", "/rest/v1/leads.json?filterType=email&filterValues=nobody@x.com")
    assert none == {"result": [], "success": True}
    many = call(sandbox, "GET", "/rest/v1/leads.json?filterType=id&filterValues=1,2,3,4,5")
    assert many == {"success": False, "errors": [{"code": "1003", "message": "Too many results match the filter"}]}
    values = ",".join(str(i) for i in range(301))
    assert call(sandbox, "GET", f"/rest/v1/leads.json?filterType=id&filterValues={values}")["errors"][0]["code"] \
        == "1003"
    bad_field = call(sandbox, "GET", "/rest/v1/leads.json?filterType=id&filterValues=1&fields=nope")
    assert bad_field["errors"] == [{"code": "1006", "message": "Field 'nope' not found"}]
    assert call(sandbox, "GET", "/rest/v1/leads.json?filterType=firstName&filterValues=A")["errors"] == [
        {"code": "1003", "message": "Invalid filterType 'firstName'"}]


def test_lead_events_reach_listeners_and_delete_answers_per_record() -> None:
    sandbox, clock = make()
    events: list[LeadEvent] = []
    sandbox.store.listen(events.append)
    call(sandbox, "POST", "/rest/v1/leads.json", json={"input": [{"email": "a@x.com", "firstName": "A"}]})
    clock.advance(5)
    call(sandbox, "POST", "/rest/v1/leads.json", json={"input": [{"email": "a@x.com", "firstName": "B",
                                                                  "lastName": "L"}]})
    body = call(sandbox, "POST", "/rest/v1/leads/delete.json", json={"input": [{"id": 1}, {"id": 9}]})
    assert body["result"] == [{"id": 1, "status": "deleted"},
                              {"id": 9, "status": "skipped",
                               "reasons": [{"code": "1004", "message": "Lead not found"}]}]
    t0 = 1_767_225_600.0
    assert events == [LeadEvent("new", 1, t0), LeadEvent("change", 1, t0 + 5, "firstName", "A", "B"),
                      LeadEvent("change", 1, t0 + 5, "lastName", None, "L"), LeadEvent("delete", 1, t0 + 5)]


def test_describe2_lists_searchable_fields_and_field_types() -> None:
    sandbox, _ = make()
    body = call(sandbox, "GET", "/rest/v1/leads/describe2.json")
    described = body["result"][0]
    assert described["name"] == "API Lead"
    assert ["email"] in described["searchableFields"] and ["id"] in described["searchableFields"]
    fields = {f["name"]: f for f in described["fields"]}
    assert fields["email"] == {"name": "email", "displayName": "Email", "dataType": "email", "length": 255,
                               "updateable": True, "crmManaged": False}
    assert fields["id"]["updateable"] is False


# -- companies, named accounts, opportunities, sales persons --------------------------------------------------------
def test_company_sync_results_carry_seq_and_reasons() -> None:
    sandbox, _ = make(companies=1)
    body = call(sandbox, "POST", "/rest/v1/companies.json", json={"input": [
        {"externalCompanyId": "C-00001", "industry": "Retail"}, {"externalCompanyId": "C-9", "company": "Nine"},
        {"company": "no key"}]})
    assert body == {"success": True, "result": [
        {"seq": 0, "status": "updated", "id": 1}, {"seq": 1, "status": "created", "id": 2},
        {"seq": 2, "status": "skipped",
         "reasons": [{"code": "1002", "message": "Missing value for required field 'externalCompanyId'"}]}]}
    body = call(sandbox, "POST", "/rest/v1/companies.json", json={"action": "updateOnly", "dedupeBy": "idField",
                                                                  "input": [{"id": 2, "website": ""}, {"id": 7}]})
    assert body["result"] == [{"seq": 0, "status": "updated", "id": 2},
                              {"seq": 1, "status": "skipped", "reasons": [{"code": "1013",
                                                                           "message": "Record not found"}]}]
    body = call(sandbox, "POST", "/rest/v1/companies.json", json={"action": "createOnly", "input": [
        {"externalCompanyId": "C-9"}]})
    assert body["result"] == [{"seq": 0, "status": "skipped",
                               "reasons": [{"code": "1017", "message": "Record already exists"}]}]
    refused = call(sandbox, "POST", "/rest/v1/companies.json", json={"action": "createOnly", "dedupeBy": "idField",
                                                                     "input": [{"id": 1}]})
    assert refused["success"] is False and refused["errors"][0]["code"] == "1003"
    listed = call(sandbox, "GET", "/rest/v1/companies.json?filterType=externalCompanyId&filterValues=C-9,C-00001"
                                  "&fields=company,industry")
    assert listed["result"] == [{"seq": 0, "id": 1, "company": sandbox.store.records("companies")[0]["company"],
                                 "industry": "Retail"}, {"seq": 1, "id": 2, "company": "Nine", "industry": None}]


def test_named_accounts_and_opportunities_use_marketo_guids() -> None:
    sandbox, _ = make()
    accounts = call(sandbox, "POST", "/rest/v1/namedaccounts.json", json={"input": [{"name": "Acme"}]})
    guid = accounts["result"][0]["marketoGUID"]
    assert accounts["result"] == [{"seq": 0, "status": "created", "marketoGUID": guid}]
    opportunities = call(sandbox, "POST", "/rest/v1/opportunities.json", json={"input": [
        {"externalOpportunityId": "O-1", "name": "Deal"}, {"externalOpportunityId": "O-2"}]})
    assert opportunities["result"][1] == {"seq": 1, "status": "skipped", "reasons": [
        {"code": "1002", "message": "Missing value for required field 'name'"}]}
    described = call(sandbox, "GET", "/rest/v1/opportunities/describe.json")["result"][0]
    assert (described["idField"], described["dedupeFields"]) == ("marketoGUID", ["externalOpportunityId"])
    gone = call(sandbox, "POST", "/rest/v1/namedaccounts/delete.json", json={"input": [{"name": "Acme"},
                                                                                       {"name": "Nope"}]})
    assert gone["result"] == [{"seq": 0, "status": "deleted", "marketoGUID": guid},
                              {"seq": 1, "status": "skipped", "reasons": [{"code": "1013",
                                                                           "message": "Record not found"}]}]


def test_sales_person_in_use_cannot_be_deleted() -> None:
    sandbox, _ = make(salespersons=1)
    sandbox.store.insert("companies", {"externalCompanyId": "C-1", "externalSalesPersonId": "SP-00001"})
    body = call(sandbox, "POST", "/rest/v1/salespersons/delete.json",
                json={"input": [{"externalSalesPersonId": "SP-00001"}]})
    assert body["result"] == [{"seq": 0, "status": "skipped", "reasons": [{"code": "1022",
                                                                           "message": "Object in use"}]}]


@pytest.mark.parametrize("level", ["record", "response"])
def test_crm_sync_makes_crm_objects_read_only_with_1018(level: str) -> None:
    sandbox, _ = make(companies=1, crm_sync="sfdc", crm_error_level=level)
    body = call(sandbox, "POST", "/rest/v1/salespersons.json",
                json={"action": "updateOnly", "input": [{"externalSalesPersonId": "__probe__"}]})
    if level == "record":
        assert body == {"success": True, "result": [{"seq": 0, "status": "skipped", "reasons": [
            {"code": "1018", "message": "CRM Enabled"}]}]}
    else:
        assert body == {"success": False, "errors": [{"code": "1018", "message": "CRM Enabled"}]}
    assert call(sandbox, "GET", "/rest/v1/companies.json?filterType=id&filterValues=1")["success"] is True
    assert call(sandbox, "POST", "/rest/v1/leads.json", json={"input": [{"email": "a@x.com"}]})["result"] == [
        {"id": 1, "status": "created"}]
    assert call(sandbox, "POST", "/rest/v1/namedaccounts.json", json={"input": [{"name": "A"}]})["success"] is True


# -- store, seed, admin, registry -----------------------------------------------------------------------------------
def test_store_find_uses_indexes_and_tracks_changes() -> None:
    store = MarketoStore(ManualClock())
    a = store.insert("leads", {"email": "A@x.com"})
    assert a == {"id": 1, "email": "A@x.com", "createdAt": "2026-01-01T00:00:00Z", "updatedAt": "2026-01-01T00:00:00Z"}
    assert [r["id"] for r in store.find("leads", "email", ["a@X.com"])] == [1]
    record, changed = store.update("leads", 1, {"email": "b@x.com", "firstName": None})
    assert changed == ["email"] and store.find("leads", "email", ["a@x.com"]) == []
    assert store.find("leads", "email", ["b@x.com"]) == [record]
    assert store.delete("leads", 1) and not store.delete("leads", 1) and store.get("leads", 1) is None


def test_seed_is_deterministic_and_linked() -> None:
    one = create_marketo_sandbox(leads=3, companies=2, opportunities=2, salespersons=1, clock=ManualClock())
    two = create_marketo_sandbox(leads=3, companies=2, opportunities=2, salespersons=1, clock=ManualClock())
    assert one.store.records("leads") == two.store.records("leads")
    companies = {c["externalCompanyId"] for c in one.store.records("companies")}
    assert {lead["externalCompanyId"] for lead in one.store.records("leads")} <= companies
    assert max(lead["updatedAt"] for lead in one.store.records("leads")) < "2026-01-01T00:00:00Z"


def test_admin_records_patch_and_token_expiry() -> None:
    sandbox, _ = make(leads=1)
    events: list[LeadEvent] = []
    sandbox.store.listen(events.append)

    async def go(client: httpx.AsyncClient) -> list[Any]:
        auth = await token(client)
        patched = (await client.patch("/_admin/records/leads/1", json={"firstName": "Ui"})).json()
        listed = (await client.get("/_admin/records/leads")).json()
        expired = (await client.post("/_admin/tokens/expire")).json()
        after = (await client.get("/rest/v1/lead/1.json", headers=auth)).json()["errors"][0]["code"]
        requests = (await client.get("/_admin/requests")).json()["total"]
        return [patched["changed"], listed["count"], expired, after, requests]

    assert run(sandbox, go) == [["firstName"], 1, {"expired": 1}, "602", 2]
    assert events[0].reason == "Marketo UI" and events[0].field == "firstName"


def test_registry_knows_marketo_on_port_8707() -> None:
    assert default_port("marketo") == 8707
    assert isinstance(create_sandbox("marketo", leads=2), MarketoSandbox)
    with pytest.raises(TypeError):
        create_marketo_sandbox(nope=1)


def test_unknown_path_is_610_and_a_wrong_method_is_605() -> None:
    sandbox, _ = make()
    assert call(sandbox, "GET", "/rest/v1/nothing.json") == {"success": False, "errors": [
        {"code": "610", "message": "Requested resource not found"}]}
    assert call(sandbox, "PUT", "/rest/v1/leads.json", json={}) == {"success": False, "errors": [
        {"code": "605", "message": "Request method 'PUT' not supported"}]}


def test_lead_describe_v1_names_rest_fields_with_stable_ids() -> None:
    sandbox, _ = make()
    fields = call(sandbox, "GET", "/rest/v1/leads/describe.json")["result"]
    email = next(f for f in fields if f["rest"]["name"] == "email")
    assert email == {"id": lead_field_id("email"), "displayName": "Email", "dataType": "email", "length": 255,
                     "rest": {"name": "email", "readOnly": False}, "soap": {"name": "Email", "readOnly": False}}
    assert len({f["id"] for f in fields}) == len(fields)


def test_error_stats_count_response_level_codes_of_the_day() -> None:
    sandbox, _ = make(rate_calls=2)

    async def go(client: httpx.AsyncClient) -> dict[str, Any]:
        auth = await token(client)
        await client.get("/rest/v1/stats/usage.json")  # 601
        await client.get("/rest/v1/leads.json?filterType=id", headers=auth)  # 701
        await client.get("/rest/v1/stats/usage.json", headers=auth)
        await client.get("/rest/v1/stats/usage.json", headers=auth)
        await client.get("/rest/v1/stats/errors.json", headers=auth)  # 606: the window is full
        sandbox.limits.reset()
        response = await client.get("/rest/v1/stats/errors.json", headers=auth)
        return strip(response.json())

    assert run(sandbox, go) == {"result": [{"date": "2025-12-31", "total": 3, "errors": [
        {"errorCode": "601", "count": 1}, {"errorCode": "606", "count": 1}, {"errorCode": "701", "count": 1}]}],
        "success": True}


def test_over_real_http_identity_sync_and_tunnelled_read() -> None:
    sandbox = create_marketo_sandbox(companies=1)
    server = SandboxServer()
    try:
        url = server.start("marketo", sandbox).url
        with httpx.Client(base_url=url) as client:
            value = client.get(TOKEN_URL).json()["access_token"]
            auth = {"Authorization": f"Bearer {value}"}
            synced = client.post("/rest/v1/leads.json", headers=auth, json={"input": [
                {"email": "a@x.com", "externalCompanyId": "C-00001"}]}).json()
            read = client.post("/rest/v1/leads.json", headers=auth, data={
                "_method": "GET", "filterType": "email", "filterValues": "a@x.com", "fields": "externalCompanyId"})
        assert synced["result"] == [{"id": 1, "status": "created"}]
        assert read.json()["result"] == [{"id": 1, "externalCompanyId": "C-00001"}]
        assert sandbox.log.summary()["counts"] == {"GET /identity/oauth/token": 1, "POST /rest/v1/leads.json": 2}
    finally:
        server.stop()
