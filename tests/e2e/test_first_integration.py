"""Issue 2 acceptance, against sandboxes running over HTTP, through the CLI as a user runs it."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections import Counter
from datetime import datetime
from typing import Any

from ml_connector.sandbox.workspace import SANDBOX_ENV
from tests.e2e.conftest import REPO, Env, flows
from tests.e2e.requestlog import (
    CRM_PARAMS,
    QAD_PARAMS,
    Call,
    call,
    calls,
    connector,
    crm_catalog,
    crm_list,
    erp_run,
    instant,
    lookback,
    newest,
    page_size,
)


def expected_counts(env: Env) -> dict[str, int]:
    customers = [c for c in env.qad.store.all("customerV2s") if c["isActive"]]
    return {
        "items_to_products": sum(1 for i in env.qad.store.all("items") if i["itemStatus"] == "ACTIVE"),
        "customers_to_organizations": len(customers),
        "contacts_to_persons": sum(1 for c in customers for p in c["contacts"] if p["isKeyContact"]),
    }


def assert_no_duplicates(env: Env) -> None:
    for entity, label in (("organizations", "ERP Customer Id"), ("products", "ERP Item Code"),
                          ("persons", "ERP Contact Id")):
        key = env.crm.store.field_key(entity, label)
        values = Counter(r["custom_fields"].get(key) for r in env.crm.store.all(entity) if not r.get("is_deleted"))
        duplicates = {v: n for v, n in values.items() if n > 1}
        assert duplicates == {}, f"duplicate {entity}: {duplicates}"


WON_DEALS = crm_list("deals", status="won")  # never a watermark: there are no deals, so always read in full


def newest_orgs(env: Env) -> tuple[datetime, int]:
    """The newest organization's update time and how many share it (organizations_to_customers reads organizations
    from its watermark, inclusive: those are read again on every run, unchanged)."""
    stamps = [instant(o["update_time"]) for o in env.crm.store.all("organizations")]
    return max(stamps), stamps.count(max(stamps))


def orgs_read_back(env: Env) -> list[Call]:
    """organizations_to_customers (the two-way reverse of customers_to_organizations) reading what changed: the
    newest organizations again, labelled through the custom-field catalog."""
    return [crm_list("organizations", updated_since=newest_orgs(env)[0]), crm_catalog("organization")]


def test_first_run_creates_everything_second_run_writes_nothing_then_exactly_three_updates(env: Env) -> None:
    expected = expected_counts(env)
    entities = connector("pipedrive")["entities"]
    for flow, entity in (("customers_to_organizations", "organization"), ("contacts_to_persons", "person"),
                         ("items_to_products", "product")):  # so many unknown records that listing beats search
        assert expected[flow] >= entities[entity]["write"]["prefetch"]["min"]
        assert expected[flow] < page_size("pipedrive", "cursor")
    code, first = env.run_json()
    assert code == 0, first
    # the target is listed once per entity (it is empty: one page), never searched record by record
    assert Counter(calls(env.crm, CRM_PARAMS)) == Counter({
        crm_catalog("product"): 1, crm_list("products"): 1, call("POST", "/api/v2/products"): expected[
            "items_to_products"],
        # organizations are listed twice: the empty target before the creates, then all read back by the reverse
        # flow (organizations_to_customers, which finds every name already in QAD: no write)
        crm_catalog("organization"): 1, crm_list("organizations"): 2,
        call("POST", "/api/v2/organizations"): expected["customers_to_organizations"],
        crm_catalog("person"): 1, crm_list("persons"): 1,
        call("POST", "/api/v2/persons"): expected["contacts_to_persons"],
        WON_DEALS: 1})
    assert calls(env.qad, QAD_PARAMS) == [call("POST", "/clouderp/oauth/token"), *erp_run(env, None, None)]
    by_flow = flows(first)
    for flow, count in expected.items():
        assert by_flow[flow]["created"] == count and by_flow[flow]["failed"] == 0, by_flow[flow]
    assert len(env.crm.store.all("products")) == expected["items_to_products"]
    assert len(env.crm.store.all("organizations")) == expected["customers_to_organizations"]
    persons = env.crm.store.all("persons")
    orgs_by_code = {o["custom_fields"][env.crm.store.field_key("organizations", "ERP Customer Id")]: o["id"]
                    for o in env.crm.store.all("organizations")}
    contact_key = env.crm.store.field_key("persons", "ERP Contact Id")
    owner = {p["contactId"]: c["customerCode"] for c in env.qad.store.all("customerV2s") for p in c["contacts"]}
    assert all(p["org_id"] == orgs_by_code[owner[p["custom_fields"][contact_key]]] for p in persons)
    assert_no_duplicates(env)

    env.crm.log.reset()
    env.qad.log.reset()
    code, second = env.run_json()
    assert code == 0
    assert all(f["created"] == 0 and f["updated"] == 0 and f["api_calls"]["writes"] == 0 for f in second["flows"])
    # Exactly the reads an unchanged run needs: each source from its watermark less the lookback, the cached
    # ERP token reused (no grant), and not one call to the target beyond reading won deals.
    items_since = newest(env.qad.store.all("items")) - lookback("qad", "item")
    customers_since = newest(env.qad.store.all("customerV2s")) - lookback("qad", "customer")
    assert calls(env.qad, QAD_PARAMS) == erp_run(env, items_since, customers_since)
    assert calls(env.crm, CRM_PARAMS) == [WON_DEALS, *orgs_read_back(env)]

    changed = [i for i in env.qad.store.all("items") if i["itemStatus"] == "ACTIVE"][:3]
    for item in changed:
        env.qad.store.patch("items", item["itemCode"], {"listPrice": round(item["listPrice"] + 2.25, 2)})
    env.crm.log.reset()
    env.qad.log.reset()
    code, third = env.run_json()
    assert code == 0
    assert flows(third)["items_to_products"]["updated"] == 3
    assert sum(f["created"] + f["updated"] for f in third["flows"]) == 3
    code_key = {p["code"]: p for p in env.crm.store.all("products")}
    assert calls(env.qad, QAD_PARAMS) == erp_run(env, items_since, customers_since)
    assert Counter(calls(env.crm, CRM_PARAMS)) == Counter(  # updates by id-map target id: no list, no search
        [crm_catalog("product"), WON_DEALS, *(call("PATCH", f"/api/v2/products/{code_key[i['itemCode']]['id']}")
                                             for i in changed), *orgs_read_back(env)])
    for item in changed:
        assert code_key[item["itemCode"]]["prices"][0]["price"] == round(item["listPrice"] + 2.25, 2)


def plan(env: Env) -> dict[str, tuple[int, int, int, int, int]]:
    """`plan --json` through the CLI: per flow (create, update, unchanged, deferred, failed)."""
    result = env.cli("plan", "--json")
    assert result.returncode == 0, result.stdout + result.stderr
    return {f["flow"]: (f["created"], f["updated"], f["unchanged"], f["deferred"], f["failed"])
            for f in json.loads(result.stdout)["flows"]}


def key_contacts(customers: list[dict[str, Any]]) -> int:
    return sum(1 for c in customers if c["isActive"] for p in c["contacts"] if p["isKeyContact"])


def test_plan_counts_exactly_what_a_run_would_do_and_calls_only_the_sources(env: Env) -> None:
    expected = expected_counts(env)
    nothing = (0, 0, 0, 0, 0)
    assert plan(env) == {
        "items_to_products": (expected["items_to_products"], 0, 0, 0, 0),
        "customers_to_organizations": (expected["customers_to_organizations"], 0, 0, 0, 0),
        # a contact's organization is not in the id map yet, but the same plan creates it: not deferred
        "contacts_to_persons": (expected["contacts_to_persons"], 0, 0, 0, 0),
        "won_deals_to_sales_orders": nothing, "sales_orders_to_deals": nothing, "organizations_to_customers": nothing}
    # matches resolved read-only: each target listed once (the run lists it too, instead of a search per record)
    assert calls(env.crm, CRM_PARAMS) == [
        crm_catalog("product"), crm_list("products"), crm_catalog("organization"), crm_list("organizations"),
        crm_catalog("person"), crm_list("persons"), WON_DEALS, crm_list("organizations")]
    assert calls(env.qad, QAD_PARAMS) == [call("POST", "/clouderp/oauth/token"), *erp_run(env, None, None)]
    assert env.crm.store.all("organizations") == []

    code, _ = env.run_json()
    assert code == 0
    items_since = newest(env.qad.store.all("items")) - lookback("qad", "item")
    customers_since = newest(env.qad.store.all("customerV2s")) - lookback("qad", "customer")
    changed = [i for i in env.qad.store.all("items") if i["itemStatus"] == "ACTIVE"][:3]
    for item in changed:
        env.qad.store.patch("items", item["itemCode"], {"listPrice": round(item["listPrice"] + 1.5, 2)})
    template = next(c for c in env.qad.store.all("customerV2s") if c["isActive"])
    contact = {**template["contacts"][0], "contactId": "PLAN-01", "isKeyContact": True}
    env.qad.store.insert("customerV2s", {**{k: v for k, v in template.items() if k not in {
        "uri", "lastModifiedDate", "concurrencyHash", "dataOperation"}}, "customerCode": "PLAN1",
        "name": "Planned Customer", "contacts": [contact]})
    window_items = [i for i in env.qad.store.all("items")
                    if instant(i["lastModifiedDate"]) >= items_since and i["itemStatus"] == "ACTIVE"]
    window_customers = [c for c in env.qad.store.all("customerV2s")
                        if instant(c["lastModifiedDate"]) >= customers_since and c["customerCode"] != "PLAN1"]
    env.crm.log.reset()
    env.qad.log.reset()
    assert plan(env) == {
        "items_to_products": (0, 3, len(window_items) - 3, 0, 0),
        "customers_to_organizations": (1, 0, sum(1 for c in window_customers if c["isActive"]), 0, 0),
        "contacts_to_persons": (1, 0, key_contacts(window_customers), 0, 0),
        "won_deals_to_sales_orders": nothing, "sales_orders_to_deals": nothing,
        "organizations_to_customers": (0, 0, newest_orgs(env)[1], 0, 0)}
    # the two records unknown to the id maps are looked for read-only, as the run does: the changes within the
    # search index's lag (listed), then the search; nothing else but the reads of an unchanged run
    crm = calls(env.crm, CRM_PARAMS)
    assert [c for c in crm if c[1].endswith("/search")] == [
        call("GET", "/api/v2/organizations/search", limit="2", term="PLAN1"),
        call("GET", "/api/v2/persons/search", limit="2", term="PLAN-01")]
    assert [c[:2] for c in crm] == [c[:2] for c in [
        crm_catalog("organization"), crm_list("organizations"), crm[2], crm_catalog("person"), crm_list("persons"),
        crm[5], WON_DEALS, orgs_read_back(env)[0]]]  # (the organization catalog was read already)
    assert calls(env.qad, QAD_PARAMS) == erp_run(env, items_since, customers_since)

    code, summary = env.run_json()  # the plan changed nothing: the run does exactly what it said
    assert code == 0, summary
    done = {f["flow"]: (f["created"], f["updated"]) for f in summary["flows"]}
    assert done == {"items_to_products": (0, 3), "customers_to_organizations": (1, 0),
                    "contacts_to_persons": (1, 0), "won_deals_to_sales_orders": (0, 0),
                    "sales_orders_to_deals": (0, 0), "organizations_to_customers": (0, 0)}


def test_sigkill_mid_run_then_rerun_leaves_no_duplicates(env: Env) -> None:
    env.crm.faults.add(__import__("ml_connector.sandbox.core", fromlist=["Fault"]).Fault(
        method="POST", path="/api/v2/", status=0, delay=0.05, times=10_000))
    process = subprocess.Popen([sys.executable, "-m", "ml_connector.cli", "run", "-w", str(env.workspace)], cwd=REPO,
                               env={**__import__("os").environ, **SANDBOX_ENV},
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while len(env.crm.store.all("organizations")) < 10 and time.monotonic() < deadline:
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=10)
    assert 10 <= len(env.crm.store.all("organizations")) < expected_counts(env)["customers_to_organizations"]

    env.crm.faults.clear()
    code, summary = env.run_json()
    assert code == 0, summary
    expected = expected_counts(env)
    assert len(env.crm.store.all("products")) == expected["items_to_products"]
    assert len(env.crm.store.all("organizations")) == expected["customers_to_organizations"]
    assert len(env.crm.store.all("persons")) == expected["contacts_to_persons"]
    assert_no_duplicates(env)
    code, again = env.run_json()
    assert code == 0 and all(f["api_calls"]["writes"] == 0 for f in again["flows"])


def test_a_rejected_record_is_parked_exit_code_is_1_and_the_next_run_sends_it(env: Env) -> None:
    from ml_connector.sandbox.core import Fault

    env.crm.faults.add(Fault(method="POST", path="/api/v2/products", status=400, times=1,
                             body={"success": False, "error": "Validation failed: name", "code":
                                   "ERR_SCHEMA_VALIDATION_FAILED"}))
    code, first = env.run_json("--flow", "items_to_products")
    assert code == 1
    assert flows(first)["items_to_products"]["failed"] == 1
    audit = env.cli("audit", "--outcome", "failed", "--json")
    assert "Validation failed: name" in audit.stdout
    code, second = env.run_json("--flow", "items_to_products")
    assert code == 0
    assert flows(second)["items_to_products"]["created"] == 1
    assert len(env.crm.store.all("products")) == expected_counts(env)["items_to_products"]


def test_creates_whose_answer_is_lost_are_found_again_not_duplicated(env: Env) -> None:
    from ml_connector.sandbox.core import Fault

    # the organization IS created, but the client only sees a 502 (or a dropped connection)
    env.crm.faults.add(Fault(method="POST", path="/api/v2/organizations", status=502, after=True, times=3,
                             body={"success": False, "error": "Bad gateway"}))
    env.crm.faults.add(Fault(method="POST", path="/api/v2/products", drop=True, after=True, times=2))
    code, summary = env.run_json()
    assert code == 0, summary
    expected = expected_counts(env)
    assert len(env.crm.store.all("organizations")) == expected["customers_to_organizations"]
    assert len(env.crm.store.all("products")) == expected["items_to_products"]
    assert_no_duplicates(env)


def test_replay_sends_parked_records_selected_by_error(env: Env) -> None:
    from ml_connector.sandbox.core import Fault

    env.crm.faults.add(Fault(method="POST", path="/api/v2/organizations", status=400, times=2,
                             body={"success": False, "error": "Organization limit reached"}))
    code, _ = env.run_json("--flow", "customers_to_organizations")
    assert code == 1
    result = env.cli("replay", "--error", "limit reached", "--json")
    assert result.returncode == 0, result.stdout + result.stderr
    replayed = flows(__import__("json").loads(result.stdout))["customers_to_organizations"]
    assert replayed["created"] == 2 and replayed["retried_pending"] == 2
    assert env.cli("replay").stdout.strip() == "nothing to replay"
    assert len(env.crm.store.all("organizations")) == expected_counts(env)["customers_to_organizations"]


def test_killed_again_and_again_at_different_points_still_converges_without_duplicates(env: Env) -> None:
    import os

    from ml_connector.sandbox.core import Fault

    env.crm.faults.add(Fault(method="POST", path="/api/v2/", status=0, delay=0.03, times=100_000))
    expected = expected_counts(env)
    total = sum(expected.values())
    for fraction in (0.1, 0.35, 0.6, 0.85):  # kill once the target holds this share of all records
        process = subprocess.Popen([sys.executable, "-m", "ml_connector.cli", "run", "-w", str(env.workspace)],
                                   cwd=REPO, env={**os.environ, **SANDBOX_ENV}, stdout=subprocess.DEVNULL,
                                   stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and process.poll() is None:
            held = sum(len(env.crm.store.all(e)) for e in ("products", "organizations", "persons"))
            if held >= fraction * total:
                break
            time.sleep(0.01)
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=10)
        assert_no_duplicates(env)
    env.crm.faults.clear()
    code, summary = env.run_json()
    assert code == 0, summary
    assert len(env.crm.store.all("products")) == expected["items_to_products"]
    assert len(env.crm.store.all("organizations")) == expected["customers_to_organizations"]
    assert len(env.crm.store.all("persons")) == expected["contacts_to_persons"]
    assert_no_duplicates(env)


def test_verbose_logs_show_every_call_but_never_a_secret(env: Env) -> None:
    result = env.cli("-vv", "run", "--flow", "items_to_products")
    assert result.returncode == 0, result.stderr
    assert "pipedrive POST /api/v2/products -> 201" in result.stderr
    assert "items_to_products: reading everything" in result.stderr
    for secret in (v for k, v in SANDBOX_ENV.items() if "TOKEN" in k or "PASSWORD" in k or "SECRET" in k):
        assert secret not in result.stderr and secret not in result.stdout


def test_a_flow_that_fails_midway_keeps_its_watermark_so_nothing_is_skipped(env: Env) -> None:
    from ml_connector.sandbox.core import Fault

    env.crm.faults.add(Fault(method="POST", path="/api/v2/products", status=401, times=10_000,
                             body={"success": False, "error": "unauthorized access", "errorCode": 401}))
    code, summary = env.run_json("--flow", "items_to_products")
    assert code == 3 and flows(summary)["items_to_products"]["status"] == "failed"  # exit 3: a flow failed
    assert "credentials refused" in flows(summary)["items_to_products"]["error"]
    status = __import__("json").loads(env.cli("status", "--json").stdout)
    assert {f["flow"]: f["watermark"] for f in status["flows"]}["items_to_products"] is None
    env.crm.faults.clear()
    code, summary = env.run_json("--flow", "items_to_products")
    assert code == 0
    assert flows(summary)["items_to_products"]["created"] == expected_counts(env)["items_to_products"]


def test_a_lagging_search_index_does_not_cause_duplicates(env: Env) -> None:
    from ml_connector.sandbox.core import Fault

    env.crm.config.update(search_index_lag_seconds=600)  # nothing created in this test is ever searchable
    code, _ = env.run_json()
    assert code == 0
    # three new customers (few: searched one by one, no prefetch) whose creates land but whose answers are lost
    template = dict(env.qad.store.all("customerV2s")[0])
    for key in ("uri", "lastModifiedDate", "concurrencyHash", "dataOperation"):
        template.pop(key, None)
    for n in range(3):
        contacts = [{**c, "contactId": f"CNEW{n}-{i}"} for i, c in enumerate(template["contacts"])]
        env.qad.store.insert("customerV2s", {**template, "customerCode": f"CNEW{n}", "name": f"New {n}",
                                             "isActive": True, "contacts": contacts})
    env.crm.faults.add(Fault(method="POST", path="/api/v2/organizations", status=503, after=True, times=3,
                             body={"success": False, "error": "Service unavailable"}))
    code, summary = env.run_json()
    assert code == 0, summary
    assert flows(summary)["customers_to_organizations"]["created"] == 3
    assert_no_duplicates(env)
    assert len(env.crm.store.all("organizations")) == expected_counts(env)["customers_to_organizations"]


def test_an_expired_erp_session_is_renewed_mid_run(env: Env) -> None:
    code, _ = env.run_json("--flow", "items_to_products")
    assert code == 0
    httpx = __import__("httpx")
    assert httpx.post(env.urls["qad"] + "/_admin/tokens/expire").status_code == 200  # the cached token is now dead
    env.qad.store.patch("items", env.qad.store.all("items")[0]["itemCode"], {"description2": "RENEWED"})
    env.qad.log.reset()
    code, summary = env.run_json("--flow", "items_to_products")
    assert code == 0, summary
    counts = env.qad.log.summary()["counts"]
    statuses = env.qad.log.summary()["statuses"]
    assert statuses.get("401") == 1 and counts.get("POST /clouderp/oauth/token") == 1  # one refusal, one renewal
