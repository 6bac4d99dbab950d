"""Adobe Commerce -> QAD end to end (issue 22): both sandboxes over real HTTP, the CLI in child processes."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from ml_connector.sandbox.adobe_commerce import AdobeCommerceSandbox, create_adobe_commerce_sandbox
from ml_connector.sandbox.demo import GUEST_CUSTOMER as GUEST
from ml_connector.sandbox.qad import QadSandbox, create_qad_sandbox
from ml_connector.sandbox.serve import SandboxServer
from ml_connector.sandbox.workspace import SANDBOX_ENV, write_workspace
from tests.e2e.conftest import Lines, cli, counts, run_flows, wait_for

REPO = Path(__file__).resolve().parents[2]


@dataclass
class Pair:
    qad: QadSandbox
    shop: AdobeCommerceSandbox
    workspace: Path
    urls: dict[str, str]

    def cli(self, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        return cli(self.workspace, *args, timeout=timeout)

    def run(self, *args: str) -> tuple[int, dict[str, dict[str, Any]]]:
        return run_flows(self.workspace, *args)

    def shop_calls(self) -> dict[str, int]:
        found: dict[str, int] = self.shop.log.summary()["counts"]
        return found

    def qad_writes(self) -> dict[str, int]:
        return {k: v for k, v in self.qad.log.summary()["counts"].items()
                if not k.startswith("GET ") and "oauth/token" not in k}

    def admin(self, method: str, path: str, body: Any = None) -> Any:
        response = httpx.request(method, self.urls["adobe_commerce"] + path, json=body, timeout=30)
        assert response.status_code < 300, response.text
        return response.json()

    def qad_orders(self) -> list[dict[str, Any]]:
        return [o for o in self.qad.store.all("salesOrders") if (o.get("externalReference") or "").startswith(
            "commerce-order-")]


@pytest.fixture
def pair_factory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., Pair]]:
    for key, value in SANDBOX_ENV.items():
        monkeypatch.setenv(key, value)
    server = SandboxServer()

    def make(deployment: str = "paas", **shop_counts: int) -> Pair:
        qad = create_qad_sandbox(customers=5, items=12, suppliers=0)
        qad.store.insert("customerV2s", dict(GUEST))
        shop = create_adobe_commerce_sandbox(**{"customers": 8, "companies": 2, "products": 6, "orders": 12,
                                                **shop_counts})
        urls = {"qad": server.start("qad", qad).url, "adobe_commerce": server.start("adobe_commerce", shop).url}
        return Pair(qad, shop, write_workspace(tmp_path, urls, commerce_deployment=deployment), urls)

    try:
        yield make
    finally:
        server.stop()


@pytest.fixture
def pair(pair_factory: Callable[..., Pair]) -> Pair:
    return pair_factory()


def _qad_item(code: str) -> dict[str, Any]:
    return {"itemCode": code, "description": f"Item {code}", "unitOfMeasure": "EA", "itemStatus": "ACTIVE",
            "listPrice": 10.0, "currencyCode": "USD"}


def _place(pair: Pair, sku_qty: list[tuple[str, float]], customer_id: int | None = 1) -> dict[str, Any]:
    body: dict[str, Any] = {"store": "default", "items": [{"sku": s, "qty": q, "price": 12.5} for s, q in sku_qty]}
    if customer_id is None:
        body["email"] = "guest@example.com"
    else:
        body["customer_id"] = customer_id
    order: dict[str, Any] = pair.admin("POST", "/_admin/orders", body)
    return order


def test_first_sync_posts_every_document_and_a_rerun_writes_nothing(pair: Pair) -> None:
    code, flows = pair.run()
    assert code == 0
    shop = pair.shop.store
    orders = shop.records("orders", "all")
    invoices, memos = shop.records("invoices", "all"), shop.records("creditmemos", "all")
    live = [o for o in orders if o["state"] != "canceled"]
    customers = [c for c in shop.records("customers", "all")
                 if not (c.get("extension_attributes") or {}).get("company_attributes")]
    assert {name: counts(flow) for name, flow in flows.items()} == {
        "skus_to_items": {"read": 6, "linked": 6},
        "customers_to_customers": {"read": 8, "created": len(customers), "filtered": 8 - len(customers)},
        "companies_to_customers": {"read": 2, "created": 2},
        "orders_to_sales_orders": {"read": len(orders), "created": len(live), **(
            {"filtered": len(orders) - len(live)} if len(orders) > len(live) else {})},
        "invoices_to_customer_invoices": {"read": len(invoices), "created": len(invoices)},
        "creditmemos_to_credit_notes": {"read": len(memos), "created": len(memos)},
    }
    # nothing is ever written to the store: every call to it is a read
    assert pair.shop_calls() == {"GET /rest/default/V1/products": 1, "GET /rest/default/V1/customers/search": 1,
                                 "GET /rest/default/V1/company/": 1, "GET /rest/default/V1/orders": 1,
                                 "GET /rest/default/V1/invoices": 1, "GET /rest/default/V1/creditmemos": 1}
    # every order line names a real QAD item; each document's total is the store's
    by_number = {o["salesOrderNumber"]: o for o in pair.qad_orders()}
    for order in live:
        booked = by_number["M" + order["increment_id"][-7:]]
        assert [(ln["itemCode"], ln["quantityOrdered"], ln["netPrice"]) for ln in booked["lines"]] == [
            (i["sku"], i["qty_ordered"], i["price"]) for i in order["items"] if not i.get("parent_item_id")]
    for memo in memos:
        [invoice] = [i for i in invoices if i["entity_id"] == memo["invoice_id"]]
        note = pair.qad.store.get("creditNotes", "MC" + memo["increment_id"])
        assert note["invoiceNumber"] == "MI" + invoice["increment_id"] and note["totalAmount"] == memo["grand_total"]
        booked_invoice = pair.qad.store.get("customerInvoices", note["invoiceNumber"])
        assert booked_invoice["customerCode"] == by_number[booked_invoice["salesOrderNumber"]]["customerCode"]

    pair.shop.log.reset()
    pair.qad.log.reset()
    code, flows = pair.run()
    assert code == 0 and pair.qad_writes() == {}
    assert all(flow["created"] + flow["updated"] + flow.get("linked", 0) == 0 for flow in flows.values())


def test_an_unknown_sku_parks_its_order_and_it_goes_through_once_the_item_exists(pair: Pair) -> None:
    assert pair.run()[0] == 0
    pair.admin("POST", "/_admin/products", {"sku": "WB-9000", "name": "Workbench", "price": 499.0})
    order = _place(pair, [("10-1001", 1), ("WB-9000", 1)])
    code, flows = pair.run()
    assert code == 1                                       # the SKU without a QAD item is a failed link
    # (the read looks back 2 minutes: records just seeded come again, unchanged)
    assert (flows["skus_to_items"]["failed"], flows["skus_to_items"]["linked"]) == (1, 0)
    assert (flows["orders_to_sales_orders"]["deferred"], flows["orders_to_sales_orders"]["created"]) == (1, 0)
    assert not [o for o in pair.qad_orders() if o["externalReference"] == f"commerce-order-{order['increment_id']}"]
    parked = pair.cli("parked", "list", "orders_to_sales_orders").stdout
    assert "skus_to_items" in parked and "WB-9000" in parked, parked   # the reason names the map and the SKU

    pair.qad.store.insert("items", _qad_item("WB-9000"))
    code, flows = pair.run()
    assert code == 0
    assert counts(flows["skus_to_items"])["linked"] == 1
    assert flows["orders_to_sales_orders"]["created"] == 1
    [booked] = [o for o in pair.qad_orders() if o["externalReference"] == f"commerce-order-{order['increment_id']}"]
    assert [ln["itemCode"] for ln in booked["lines"]] == ["10-1001", "WB-9000"]


def test_a_crash_between_the_qad_post_and_the_state_write_never_books_an_order_twice(pair: Pair) -> None:
    from ml_connector.sandbox.core import Fault

    assert pair.run()[0] == 0
    order = _place(pair, [("10-1002", 3)])
    number = "M" + order["increment_id"][-7:]
    # QAD books the order, then its answer hangs; the run is killed before it can record anything
    # QAD's limit off: a POST its limiter refuses inside the fault is never booked (the fault's 500 replaces the 429);
    # that failed this test when the run reached the POST within a second of 20 calls (make test, 2026-12-07)
    pair.qad.config["rate_per_second"] = 0
    pair.qad.faults.add(Fault(method="POST", path="/clouderp/api/erp/salesOrders", after=True, delay=60,
                              status=500))
    errors = pair.workspace.parent / "killed-run.stderr"
    with errors.open("w") as sink:
        process = subprocess.Popen([sys.executable, "-m", "ml_connector.cli", "-vv", "run", "-w", str(pair.workspace)],
                                   cwd=REPO, env={**os.environ, **SANDBOX_ENV}, stdout=subprocess.DEVNULL,
                                   stderr=sink)
    # a loaded CI machine (two suites side by side) can take long to get there: wait while the run is alive
    deadline = time.monotonic() + 240
    while pair.qad.store.peek("salesOrders", number) is None and process.poll() is None \
            and time.monotonic() < deadline:
        time.sleep(0.05)
    if pair.qad.store.peek("salesOrders", number) is None:
        failed = pair.cli("audit", "--outcome", "failed", "--json").stdout if process.poll() is not None else ""
        raise AssertionError(f"not booked; the run's exit: {process.poll()}\n{errors.read_text()[-8000:]}\n"
                             f"{failed[-4000:]}\nQAD's log: {pair.qad.log.summary()}")
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=10)
    pair.qad.faults.clear()

    code, flows = pair.run()
    assert code == 0
    assert [o["salesOrderNumber"] for o in pair.qad_orders()].count(number) == 1
    assert flows["orders_to_sales_orders"]["created"] == 0       # found by its number, linked, not booked again
    code, flows = pair.run()
    assert code == 0 and all(f["api_calls"]["writes"] == 0 for f in flows.values())


def test_company_changes_are_found_by_content_hash_on_a_full_read(pair: Pair) -> None:
    assert pair.run()[0] == 0
    pair.shop.log.reset()
    code, flows = pair.run("--flow", "companies_to_customers")
    assert code == 0 and counts(flows["companies_to_customers"]) == {"read": 2, "unchanged": 2}
    company = pair.shop.store.records("companies", "default")[0]
    pair.admin("PATCH", f"/_admin/companies/{company['id']}", {"company_name": "Harbor Supply Renamed"})
    code, flows = pair.run("--flow", "companies_to_customers")
    assert code == 0 and counts(flows["companies_to_customers"]) == {"read": 2, "updated": 1, "unchanged": 1}
    assert pair.qad.store.get("customerV2s", f"B{company['id']:07d}")["name"] == "Harbor Supply Renamed"
    assert pair.shop_calls() == {"GET /rest/default/V1/company/": 2}   # a full read each time: no updated_at


def test_the_cloud_service_is_called_with_an_ims_token_and_the_store_header(
        pair_factory: Callable[..., Pair]) -> None:
    pair = pair_factory(deployment="saas")
    code, flows = pair.run()
    assert code == 0 and flows["orders_to_sales_orders"]["created"] > 0
    calls = pair.shop_calls()
    assert calls.pop("POST /ims/token/v3") == 1
    assert set(calls) == {f"GET /SbxTenant7Qm2Lx9Rk4Wd8Vp3/V1/{path}" for path in (
        "products", "customers/search", "company/", "orders", "invoices", "creditmemos")}


def test_the_signed_order_webhook_is_answered_at_once_and_the_order_posted_and_a_forged_one_is_refused(
        pair: Pair) -> None:
    assert pair.run()[0] == 0
    key = httpx.get(pair.urls["adobe_commerce"] + "/_admin/webhooks/public_key", timeout=10).text
    document = yaml.safe_load(pair.workspace.read_text())
    document["connections"]["commerce"]["settings"]["webhook_public_key"] = key
    document["serve"] = {"public_url": "https://hooks.example.test"}
    pair.workspace.write_text(yaml.safe_dump(document, sort_keys=False))
    process = subprocess.Popen([sys.executable, "-m", "ml_connector.cli", "serve", "--interval", "3600", "--listen",
                                "127.0.0.1:0", "-w", str(pair.workspace)], cwd=REPO,
                               env={**os.environ, **SANDBOX_ENV}, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True)
    assert process.stdout is not None and process.stderr is not None
    _out, err = Lines(process.stdout), Lines(process.stderr)  # both pipes drained
    try:
        listening = wait_for(lambda: next((m for line in err.lines
                                           if (m := re.search(r"listening for callbacks on (http://\S+)", line))),
                                          None), 30, "serve never said where it listens")
        hooks = listening.group(1) + "/hooks/commerce/order_placed/order"
        pair.admin("PATCH", "/_admin/config", {"webhook_url": hooks, "webhook_signing": True})
        wait_for(lambda: httpx.post(hooks, json={}).status_code != 404, 15, "the endpoint never came up")

        order = _place(pair, [("10-1003", 2)])           # the store waits for our answer before it places it
        [delivery] = [d for d in pair.admin("GET", "/_admin/webhooks/deliveries")["deliveries"] if d["status"]]
        assert (delivery["status"], delivery["reply"]) == (200, {"op": "success"}), delivery
        number = "M" + order["increment_id"][-7:]
        wait_for(lambda: pair.qad.store.peek("salesOrders", number), 30, "the webhook did not get the order posted")
        assert pair.shop_calls().get("GET /rest/default/V1/orders/{id}") == 1   # the order read by its id

        forged = {"eventName": "sales_order_place_after", "data": {"order": {"entity_id": 99999}}}
        refused = httpx.post(hooks, json=forged, headers={"x-adobe-commerce-webhook-signature": "AAAA"})
        assert refused.status_code == 401
        assert httpx.post(hooks, json=forged).status_code == 401          # unsigned: refused too
        time.sleep(1.5)  # had it been queued, serve would have read order 99999 by now
        assert pair.shop_calls().get("GET /rest/default/V1/orders/{id}") == 1   # order 99999 never read
    finally:
        process.send_signal(signal.SIGTERM)
        process.communicate(timeout=30)
    assert "Harbor" not in err.text()   # record data never in the service's log
