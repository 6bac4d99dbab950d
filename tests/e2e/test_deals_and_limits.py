"""Issue 3 acceptance: won deals into QAD sales orders, deferral, OAuth2 with rotation, 429 budgets."""

from __future__ import annotations

import json
import time
from collections import Counter
from datetime import datetime
from typing import Any

import yaml

from ml_connector.sandbox.workspace import SANDBOX_ENV, write_workspace
from ml_connector.store import State, redirect
from tests.e2e.conftest import Env, flows
from tests.e2e.requestlog import (
    CRM_PARAMS,
    QAD_PARAMS,
    call,
    calls,
    crm_catalog,
    crm_list,
    erp_run,
    instant,
    lookback,
    page_size,
    watermarks,
)
from tests.e2e.test_first_integration import assert_no_duplicates, expected_counts


def synced(env: Env) -> None:
    code, summary = env.run_json()
    assert code == 0, summary


def won_deal(env: Env, products: list[dict[str, Any]], status: str = "won") -> dict[str, Any]:
    org = env.crm.store.all("organizations")[0]
    deal = env.crm.store.insert("deals", {"title": f"Deal for {org['name']}", "org_id": org["id"], "status": status,
                                          "currency": "USD", "value": 0})
    total = 0.0
    for quantity, product in enumerate(products, start=2):
        price = float(product["prices"][0]["price"]) if product.get("prices") else 10.0
        env.crm.store.add_deal_product(deal["id"], product["id"], price, quantity)
        total += price * quantity
    return env.crm.store.patch("deals", deal["id"], {"value": round(total, 2)})


def order_for(env: Env, deal_id: int) -> dict[str, Any] | None:
    return next((o for o in env.qad.store.all("salesOrders")
                 if o.get("externalReference") == f"pipedrive-deal-{deal_id}"), None)


def test_won_deal_with_three_lines_becomes_one_order_with_three_lines(env: Env) -> None:
    synced(env)
    products = env.crm.store.all("products")[:3]
    deal = won_deal(env, products)
    open_deal = won_deal(env, products[:1], status="open")
    lost_deal = won_deal(env, products[:2], status="lost")
    code, summary = env.run_json()
    assert code == 0, summary
    assert flows(summary)["won_deals_to_sales_orders"]["created"] == 1
    order = order_for(env, deal["id"])
    assert order is not None
    org_code_key = env.crm.store.field_key("organizations", "ERP Customer Id")
    org = env.crm.store.get("organizations", deal["org_id"])
    assert org is not None and order["customerCode"] == org["custom_fields"][org_code_key]
    assert order["currencyCode"] == "USD" and order["totalAmount"] == deal["value"]
    assert [line["itemCode"] for line in order["lines"]] == [p["code"] for p in products]
    assert [line["quantityOrdered"] for line in order["lines"]] == [2, 3, 4]
    assert order_for(env, open_deal["id"]) is None and order_for(env, lost_deal["id"]) is None
    assert len(env.qad.store.all("salesOrders")) == 1
    # the order number goes back onto the deal: identifiers aligned both ways
    order_key = env.crm.store.field_key("deals", "ERP Order Number")
    written_back = env.crm.store.get("deals", deal["id"])
    assert written_back is not None and written_back["custom_fields"][order_key] == order["salesOrderNumber"]

    env.crm.log.reset()
    env.qad.log.reset()
    marks = watermarks(env)
    code, again = env.run_json()
    assert code == 0
    assert all(f["api_calls"]["writes"] == 0 for f in again["flows"]), again
    # Exactly the reads an unchanged run needs: every source from its watermark less its lookback, the lines of
    # the won deals read, the cached tokens reused (not even a token grant), not one write.
    customers_since = marks["customers_to_organizations"]
    assert customers_since is not None and marks["contacts_to_persons"] == customers_since
    assert calls(env.qad, QAD_PARAMS) == erp_run(
        env, _since(marks["items_to_products"], "item"), customers_since - lookback("qad", "customer"),
        _since(marks["sales_orders_to_deals"], "sales_order"))
    deals_since = marks["won_deals_to_sales_orders"]
    assert deals_since is not None and not lookback("pipedrive", "deal")
    read = [d["id"] for d in sorted(env.crm.store.all("deals"), key=lambda d: (d["update_time"], d["id"]))
            if d["status"] == "won" and instant(d["update_time"]) >= deals_since]
    assert read == [deal["id"]]
    assert Counter(calls(env.crm, CRM_PARAMS)) == Counter([
        crm_list("deals", status="won", updated_since=deals_since), crm_catalog("deal"),
        call("GET", "/api/v2/deals/products", limit=str(page_size("pipedrive", "cursor")),
             deal_ids=",".join(map(str, read))),
        # organizations_to_customers (two-way with customers_to_organizations) reads the newest organizations again
        # (its watermark is inclusive), labelled through the catalog, and writes nothing
        crm_list("organizations", updated_since=marks["organizations_to_customers"]), crm_catalog("organization")])


def _since(watermark: datetime | None, entity: str) -> datetime:
    assert watermark is not None
    return watermark - lookback("qad", entity)


def test_deal_with_a_product_unknown_to_the_id_map_waits_for_the_product_flow(env: Env) -> None:
    synced(env)
    item = dict(env.qad.store.all("items")[0])
    item.update(itemCode="99-0001", description="Late catalog item", itemStatus="ACTIVE")
    for key in ("uri", "lastModifiedDate", "concurrencyHash"):
        item.pop(key, None)
    env.qad.store.insert("items", item)
    # a sales rep created the product by hand before the item flow ran
    manual = env.crm.store.insert("products", {"name": "Late catalog item", "code": "99-0001",
                                               "prices": [{"currency": "USD", "price": 12.5}]})
    known = env.crm.store.all("products")[0]
    deal = won_deal(env, [known, manual])

    code, summary = env.run_json("--flow", "won_deals_to_sales_orders")
    assert code == 0
    assert flows(summary)["won_deals_to_sales_orders"]["deferred"] == 1
    assert order_for(env, deal["id"]) is None
    status = env.cli("status", "--json")
    assert '"deferred": 1' in status.stdout

    code, summary = env.run_json()
    assert code == 0, summary
    assert flows(summary)["items_to_products"]["updated"] == 1  # matched the hand-made product, no duplicate
    assert flows(summary)["won_deals_to_sales_orders"]["created"] == 1
    order = order_for(env, deal["id"])
    assert order is not None and [ln["itemCode"] for ln in order["lines"]] == [known["code"], "99-0001"]
    assert Counter(p["code"] for p in env.crm.store.all("products"))["99-0001"] == 1


def test_oauth2_tokens_expire_rotate_and_the_rotated_refresh_token_is_kept(env: Env) -> None:
    from ml_connector.sandbox.core import Fault

    env.crm.config.update(access_token_ttl=1.0, rotate_refresh_token=True, burst_limit_oauth=400)
    env.crm.faults.add(Fault(method="POST", path="/api/v2/", status=0, delay=0.05, times=10_000))  # a run of seconds
    env.workspace = write_workspace(env.workspace.parent, env.urls, pipedrive_auth="oauth2")
    code, summary = env.run_json()
    assert code == 0, summary
    grants = env.crm.log.summary()["counts"].get("POST /oauth/token", 0)
    assert grants >= 2  # the 1-second tokens were renewed during the run
    assert_no_duplicates(env)

    # the seeded refresh token in the environment is dead now; only the stored rotated one works
    env.crm.log.reset()
    env.crm.faults.clear()
    env.crm.faults.add(Fault(
        method="GET", path="/api/v2/deals", status=401, times=1,
        body={"success": False, "error": "unauthorized access", "errorCode": 401}))
    code, again = env.run_json()
    assert code == 0, again
    assert env.crm.log.summary()["counts"].get("POST /oauth/token", 0) >= 1

    # invariant 5: no secret, and no token we were given, lies in the state files in clear
    from ml_connector.store import State

    state_dir = env.workspace.parent / "state"
    state = State(state_dir / "ml-connector.duckdb")
    assert {"pipedrive.refresh_token", "pipedrive.access_token"} <= set(state.credentials.names())
    refresh = state.credentials.get("pipedrive.refresh_token") or ""
    access = json.loads(state.credentials.get("pipedrive.access_token") or "{}")["token"]
    state.close()
    secrets = [v for k, v in SANDBOX_ENV.items() if "SECRET" in k or "TOKEN" in k or "PASSWORD" in k]
    for path in state_dir.iterdir():
        raw = path.read_bytes()
        for value in [*secrets, refresh, access]:
            assert value.encode() not in raw, f"{value[:6]}… in clear in {path.name}"


def test_a_small_rate_budget_forces_429s_and_the_run_still_completes(env: Env) -> None:
    env.crm.config.update(burst_limit=6, burst_window_seconds=0.5, search_burst_limit=3, daily_budget=300,
                          daily_reset_seconds=1)
    # this account's plan, as the user states it: a short window; the real call count is learned from headers
    document = yaml.safe_load(env.workspace.read_text())
    document["connections"]["pipedrive"]["quotas"] = {"default": {"window": 0.5, "calls": 12}}
    env.workspace.write_text(yaml.safe_dump(document))
    code, summary = env.run_json()
    assert code == 0, summary
    statuses = env.crm.log.summary()["statuses"]
    assert statuses.get("429", 0) >= 3, statuses
    assert "403" not in statuses  # never hammered past a 429
    assert summary["totals"]["api_calls"]["rate_limited"] == statuses.get("429", 0)  # the summary tells it too
    assert summary["totals"]["api_calls"]["waited_seconds"] > 0
    rejections = env.crm.limits.snapshot()["rejections"]
    assert rejections["daily"] >= 1, rejections  # the daily budget ran out, and the run waited for its reset
    assert rejections["burst"] <= 6, rejections  # calls are paced to the window, not sent until refused
    expected = expected_counts(env)
    assert len(env.crm.store.all("products")) == expected["items_to_products"]
    assert len(env.crm.store.all("organizations")) == expected["customers_to_organizations"]
    assert len(env.crm.store.all("persons")) == expected["contacts_to_persons"]
    assert_no_duplicates(env)


def test_a_changed_won_deal_updates_its_sales_order_with_the_current_concurrency_hash(env: Env) -> None:
    synced(env)
    products = env.crm.store.all("products")[:4]
    deal = won_deal(env, products[:3])
    synced(env)
    before = order_for(env, deal["id"])
    assert before is not None and len(before["lines"]) == 3
    env.crm.store.add_deal_product(deal["id"], products[3]["id"], 9.5, 10)  # a line alone does not bump the deal
    env.crm.store.patch("deals", deal["id"], {"value": deal["value"] + 95})
    env.qad.log.reset()
    code, summary = env.run_json()
    assert code == 0, summary
    assert flows(summary)["won_deals_to_sales_orders"]["updated"] == 1
    after = order_for(env, deal["id"])
    assert after is not None and after["salesOrderNumber"] == before["salesOrderNumber"]
    assert [line["itemCode"] for line in after["lines"]] == [p["code"] for p in products]
    assert after["concurrencyHash"] != before["concurrencyHash"]
    assert len(env.qad.store.all("salesOrders")) == 1
    counts = env.qad.log.summary()["counts"]
    assert counts.get("POST /clouderp/api/erp/salesOrders") == 1  # one update call, no stale-hash retry


def test_a_line_added_without_touching_the_deal_is_caught_by_a_full_read(env: Env) -> None:
    synced(env)
    products = env.crm.store.all("products")[:2]
    deal = won_deal(env, products[:1])
    synced(env)
    time.sleep(1.1)  # timestamps are whole seconds and the lower bound is inclusive: move the watermark past it
    won_deal(env, products[:1])
    synced(env)
    env.crm.store.add_deal_product(deal["id"], products[1]["id"], 4.0, 5)  # the deal's update_time stays put
    code, incremental = env.run_json("--flow", "won_deals_to_sales_orders")
    assert code == 0 and flows(incremental)["won_deals_to_sales_orders"]["updated"] == 0
    code, full = env.run_json("--flow", "won_deals_to_sales_orders", "--full")
    assert code == 0 and flows(full)["won_deals_to_sales_orders"]["updated"] == 1
    order = order_for(env, deal["id"])
    assert order is not None and [ln["itemCode"] for ln in order["lines"]] == [p["code"] for p in products]
    code, again = env.run_json("--flow", "won_deals_to_sales_orders", "--full")
    assert code == 0 and again["totals"]["api_calls"]["writes"] == 0  # a full read with nothing new writes nothing


def test_serve_once_runs_only_the_flows_that_are_due(env: Env) -> None:
    first = env.cli("serve", "--once")
    assert first.returncode == 0, first.stderr
    assert "items_to_products" in first.stdout and "won_deals_to_sales_orders" in first.stdout
    second = env.cli("serve", "--once")  # every schedule just restarted: nothing is due yet
    assert second.returncode == 0 and second.stdout.strip() == ""


def test_store_secret_references_read_the_encrypted_credential_store(env: Env) -> None:
    token = SANDBOX_ENV["ML_SANDBOX_PIPEDRIVE_TOKEN"]
    stored = env.cli("secret", "set", "pipedrive_token", "--value", token)
    assert stored.returncode == 0 and "store:pipedrive_token" in stored.stdout
    assert env.cli("secret", "list").stdout.split() == ["pipedrive_token"]
    document = yaml.safe_load(env.workspace.read_text())
    document["connections"]["pipedrive"]["secrets"] = {"api_token": "store:pipedrive_token"}
    env.workspace.write_text(yaml.safe_dump(document))
    code, summary = env.run_json("--flow", "items_to_products")
    assert code == 0 and flows(summary)["items_to_products"]["created"] > 0
    state_file = env.workspace.parent / "state" / "ml-connector.duckdb"
    if redirect.postgres_target(state_file) is None:  # DuckDB: every byte of the file
        raw = state_file.read_bytes()
    else:  # the suite on PostgreSQL (ML_CONNECTOR_TEST_STATE): every row of the credential table
        state = State(state_file)
        raw = repr(state.db.fetchall("SELECT * FROM credentials")).encode()
        state.close()
    assert token.encode() not in raw
