"""QAD <-> Zoho CRM end to end (issue 20): both sandboxes over real HTTP, the CLI in child processes.

Each promise of the pair is a test here; request logs are pinned exactly (path counts of the Zoho sandbox).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from ml_connector.sandbox.qad import QadSandbox, create_qad_sandbox
from ml_connector.sandbox.serve import SandboxServer
from ml_connector.sandbox.workspace import SANDBOX_ENV, write_workspace
from ml_connector.sandbox.zoho import create_zoho_sandbox
from ml_connector.sandbox.zoho.app import ZohoSandbox
from tests.e2e.conftest import cli, counts, run_flows, wait_for

REPO = Path(__file__).resolve().parents[2]
FIRST_RUN_CALLS = {
    "POST /oauth/v2/token": 1,
    "POST /crm/v8/Vendors/upsert": 1,
    "POST /crm/v8/Products/upsert": 1,
    "POST /crm/v8/Purchase_Orders/upsert": 1,
    "POST /crm/v8/Vendor_Invoices/upsert": 1,
    "POST /crm/v8/Accounts/upsert": 1,
    "POST /crm/bulk/v8/read": 1,               # accounts_to_customers: its first read is one Bulk Read job
    "GET /crm/bulk/v8/read/{id}": 2,
    "GET /crm/bulk/v8/read/{id}/result": 1,
    "POST /crm/v8/coql": 1,                    # approved sales orders: a filtered COQL read
}


@dataclass
class Pair:
    qad: QadSandbox
    zoho: ZohoSandbox
    workspace: Path
    urls: dict[str, str]

    def cli(self, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        return cli(self.workspace, *args, timeout=timeout)

    def run(self, *args: str) -> tuple[int, dict[str, dict[str, Any]]]:
        return run_flows(self.workspace, *args)

    def zoho_calls(self) -> dict[str, int]:
        counts: dict[str, int] = self.zoho.log.summary()["counts"]
        return counts

    def zoho_writes(self) -> dict[str, int]:
        return {k: v for k, v in self.zoho_calls().items()
                if not k.startswith("GET ") and k not in ("POST /crm/v8/coql", "POST /crm/bulk/v8/read",
                                                          "POST /oauth/v2/token")}

    def admin(self, method: str, path: str, body: Any = None) -> Any:
        response = httpx.request(method, self.urls["zoho"] + path, json=body, timeout=10)
        assert response.status_code < 300, response.text
        return response.json()

    def records(self, module: str) -> list[dict[str, Any]]:
        return list(self.zoho.store.records(module))


@pytest.fixture
def pair_factory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., Pair]]:
    for key, value in SANDBOX_ENV.items():
        monkeypatch.setenv(key, value)
    server = SandboxServer()

    def make(**qad_counts: int) -> Pair:
        sizes = {"customers": 30, "items": 40, "suppliers": 10, "purchase_orders": 8, "receipts": 4,
                 "supplier_invoices": 6, **qad_counts}
        qad = create_qad_sandbox(**sizes)
        zoho = create_zoho_sandbox()
        zoho.config.update(bulk_state_seconds=0.2)
        urls = {"qad": server.start("qad", qad).url, "zoho": server.start("zoho", zoho).url}
        return Pair(qad, zoho, write_workspace(tmp_path, urls), urls)

    try:
        yield make
    finally:
        server.stop()


@pytest.fixture
def pair(pair_factory: Callable[..., Pair]) -> Pair:
    return pair_factory()


def test_first_sync_upserts_in_batches_to_the_tokens_data_center_and_a_rerun_writes_nothing(pair: Pair) -> None:
    code, flows = pair.run()
    assert code == 0
    assert {name: counts(flow) for name, flow in flows.items()} == {
        "suppliers_to_vendors": {"read": 10, "created": 9, "filtered": 1},
        "items_to_zoho_products": {"read": 40, "created": 40},
        "purchase_orders_to_purchase_orders": {"read": 8, "created": 8},
        "supplier_invoices_to_vendor_invoices": {"read": 6, "created": 6},
        "customers_to_accounts": {"read": 30, "created": 27, "filtered": 3},
        "accounts_to_customers": {"read": 27, "echoes": 27},    # what we just wrote comes back: never echoed
        "approved_sales_orders_to_sales_orders": {},
    }
    assert flows["accounts_to_customers"]["read_path"] == "bulk"
    assert pair.zoho_calls() == FIRST_RUN_CALLS
    # The workspace starts from the US API host; the token names the EU org's host, where everything landed.
    assert pair.urls["zoho"].startswith("http://127.0.0.1:")
    assert len(pair.records("Vendors")) == 9 and len(pair.records("Products")) == 40
    po = pair.zoho.store.get("Purchase_Orders", pair.records("Purchase_Orders")[0]["id"])
    assert po is not None and po["Purchase_Items"] and all(row["Product_Name"]["id"] for row in po["Purchase_Items"])

    pair.zoho.log.reset()
    code, flows = pair.run()
    assert code == 0
    assert pair.zoho_writes() == {}
    assert pair.zoho_calls() == {"GET /crm/v8/Accounts": 1, "POST /crm/v8/coql": 1}  # the token is cached
    assert all(flow["created"] + flow["updated"] == 0 for flow in flows.values())


def test_supplier_invoice_status_follows_qad_three_way_match_pending_until_the_receipt_posts(pair: Pair) -> None:
    assert pair.run()[0] == 0
    invoices = {r["ERP_Key"]: r for r in pair.records("Vendor_Invoices")}
    qad_invoices = {i["invoiceId"]: i for i in pair.qad.store.all("supplierInvoices")}
    assert {key: r["Match_Status"] for key, r in invoices.items()} == {
        key: {"matched": "Matched", "pending": "Pending", "mismatch": "Mismatch"}[i["matchStatus"]]
        for key, i in qad_invoices.items()}
    pending = next(i for i in qad_invoices.values() if i["matchStatus"] == "pending")
    assert invoices[pending["invoiceId"]]["Match_Status"] == "Pending"
    for line in pending["lines"]:  # the goods arrive: every invoiced line's receipt posts in QAD
        order = pair.qad.store.get("purchaseOrders", line["purchaseOrderNumber"])
        po_line = next(ln for ln in order["lines"] if ln["lineNumber"] == line["poLineNumber"])
        received = httpx.post(f"{pair.urls['qad']}/_admin/purchaseOrders/{order['purchaseOrderNumber']}/receive",
                              json={"lineNumber": po_line["lineNumber"],
                                    "quantityReceived": po_line["quantityOrdered"] - po_line["quantityReceived"]})
        assert received.status_code == 201, received.text
    assert pair.qad.store.get("supplierInvoices", pending["invoiceId"])["matchStatus"] == "matched"

    pair.zoho.log.reset()
    code, flows = pair.run()
    assert code == 0
    invoice_flow = flows["supplier_invoices_to_vendor_invoices"]
    assert (invoice_flow["updated"], invoice_flow["created"]) == (1, 0)  # (a lookback may re-read an unchanged one)
    assert flows["purchase_orders_to_purchase_orders"]["updated"] == 0  # quantities received are not synced
    assert pair.zoho_writes() == {"PUT /crm/v8/Vendor_Invoices": 1}   # known record: updated by its id
    now = {r["ERP_Key"]: r for r in pair.records("Vendor_Invoices")}
    assert now[pending["invoiceId"]]["Match_Status"] == "Matched"


def test_a_partial_failure_parks_exactly_the_failed_product_and_defers_the_order_that_needs_it(pair: Pair) -> None:
    order = pair.qad.store.all("purchaseOrders")[0]
    bad_item = order["lines"][0]["itemCode"]
    pair.qad.store.patch("items", bad_item, {"description": "X" * 200})  # longer than Product_Name's 120
    code, flows = pair.run()
    assert code == 1  # some records parked; the run went on
    assert counts(flows["items_to_zoho_products"]) == {"read": 40, "created": 39, "failed": 1}
    po_flow = counts(flows["purchase_orders_to_purchase_orders"])
    assert po_flow["deferred"] >= 1 and po_flow["created"] + po_flow["deferred"] == 8
    assert pair.zoho_calls()["POST /crm/v8/Products/upsert"] == 1  # one call: not split, not re-sent
    products = {r["ERP_Key"] for r in pair.records("Products")}
    assert bad_item not in products and len(products) == 39
    assert order["purchaseOrderNumber"] not in {r["ERP_Key"] for r in pair.records("Purchase_Orders")}
    audit = pair.cli("audit", "--flow", "items_to_zoho_products", "--outcome", "failed", "--json")
    rows = json.loads(audit.stdout)
    assert [(r["source_key"], r["error"]) for r in rows] == [(bad_item, "INVALID_DATA: invalid data (Product_Name)")]

    pair.qad.store.patch("items", bad_item, {"description": "Fixed name"})
    pair.zoho.log.reset()
    code, flows = pair.run()
    assert code == 0
    assert counts(flows["items_to_zoho_products"]) == {"read": 1, "created": 1}
    assert flows["purchase_orders_to_purchase_orders"]["created"] == po_flow["deferred"]


def test_ten_thousand_products_take_one_hundred_upsert_calls_within_the_concurrency_cap(
        pair_factory: Callable[..., Pair]) -> None:
    pair = pair_factory(items=10_000, suppliers=0, purchase_orders=0, receipts=0, supplier_invoices=0)
    pair.zoho.config.update(concurrency=10, request_latency=0.02)  # the connector's cap, held by the sandbox
    code, flows = pair.run("--flow", "items_to_zoho_products")
    assert code == 0, flows
    assert counts(flows["items_to_zoho_products"]) == {"read": 10_000, "created": 10_000}
    calls = pair.zoho_calls()
    assert calls == {"POST /oauth/v2/token": 1, "POST /crm/v8/Products/upsert": 100}
    assert "429" not in pair.zoho.log.summary()["statuses"]
    assert pair.zoho.store.count("Products") == 10_000


def test_an_approved_sales_order_with_a_new_account_becomes_a_qad_customer_and_sales_order(pair: Pair) -> None:
    assert pair.run()[0] == 0
    products = [p for p in pair.records("Products") if p.get("Product_Active")][:2]  # QAD orders active items
    account = pair.admin("POST", "/_admin/records/Accounts", {
        "Account_Name": "Fresh Buyer Ltd", "Account_Type": "Customer", "Billing_Street": "1 Park Row",
        "Billing_City": "Leeds", "Billing_Country": "GB"})
    prospect = pair.admin("POST", "/_admin/records/Accounts", {"Account_Name": "Only Looking Ltd",
                                                                "Account_Type": "Prospect"})
    order = pair.admin("POST", "/_admin/records/Sales_Orders", {
        "Subject": "Order from Fresh Buyer", "Status": "Approved", "Account_Name": {"id": account["id"]},
        "Ordered_Items": [{"Product_Name": {"id": p["id"]}, "Quantity": 3, "List_Price": 12.5} for p in products]})
    draft = pair.admin("POST", "/_admin/records/Sales_Orders", {
        "Subject": "Not yet", "Status": "Created", "Account_Name": {"id": account["id"]},
        "Ordered_Items": [{"Product_Name": {"id": products[0]["id"]}, "Quantity": 1, "List_Price": 12.5}]})
    code, flows = pair.run()
    assert code == 0, pair.cli("audit", "--outcome", "failed", "--json").stdout
    customer_code = "Z" + account["id"][-7:]
    customer = pair.qad.store.get("customerV2s", customer_code)
    assert customer is not None and customer["name"] == "Fresh Buyer Ltd"
    assert pair.qad.store.get("customerV2s", "Z" + prospect["id"][-7:]) is None
    qad_order = pair.qad.store.get("salesOrders", "Z" + order["id"][-7:])
    assert qad_order is not None and qad_order["customerCode"] == customer_code
    assert [(ln["itemCode"], ln["quantityOrdered"]) for ln in qad_order["lines"]] == [
        (p["ERP_Key"], 3) for p in products]
    assert pair.qad.store.get("salesOrders", "Z" + draft["id"][-7:]) is None
    # The next run writes the new customer's code into the account, by the account's id (never a second account).
    accounts = pair.zoho.store.count("Accounts")
    pair.zoho.log.reset()
    code, flows = pair.run()
    assert code == 0 and pair.zoho_writes() == {"PUT /crm/v8/Accounts": 1}
    assert pair.zoho.store.get("Accounts", account["id"])["ERP_Key"] == customer_code
    assert pair.zoho.store.count("Accounts") == accounts
    pair.zoho.log.reset()
    code, flows = pair.run()
    assert code == 0 and pair.zoho_writes() == {}  # and that write comes back as no echo
    assert sum(f["created"] + f["updated"] for f in flows.values()) == 0

    # A later change in QAD goes to that same account.
    pair.zoho.log.reset()
    pair.qad.store.patch("customerV2s", customer_code, {"name": "Fresh Buyer Group Ltd"})
    code, flows = pair.run()
    assert code == 0
    assert pair.zoho_writes() == {"PUT /crm/v8/Accounts": 1}
    assert pair.zoho.store.count("Accounts") == accounts
    updated = pair.zoho.store.get("Accounts", account["id"])
    assert (updated["Account_Name"], updated["ERP_Key"]) == ("Fresh Buyer Group Ltd", customer_code)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port




def test_an_account_changed_in_zoho_reaches_qad_through_the_channel_without_polling_or_echo(pair: Pair) -> None:
    assert pair.run()[0] == 0
    port = _free_port()
    serve = subprocess.Popen([sys.executable, "-m", "ml_connector.cli", "serve", "-w", str(pair.workspace),
                              "--listen", f"127.0.0.1:{port}", "--interval", "3600"],
                             cwd=REPO, env={**os.environ, **SANDBOX_ENV}, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
    try:
        def ours() -> list[dict[str, Any]]:
            return [c for org in pair.admin("GET", "/_admin/watch/channels").values() for c in org
                    if c["notify_url"].startswith(f"http://127.0.0.1:{port}/")]

        # serve registers one channel per watched module, one after the other: wait for both
        wait_for(lambda: len(ours()) == 2, 30, "timed out waiting for the channels")
        channels = ours()
        assert sorted(e for c in channels for e in c["events"]) == ["Accounts.all", "Sales_Orders.all"]
        customer = pair.qad.store.get("customerV2s", "C000001")
        account = next(r for r in pair.records("Accounts") if r["ERP_Key"] == "C000001")
        pair.zoho.log.reset()
        pair.admin("PATCH", f"/_admin/records/Accounts/{account['id']}", {"Account_Name": "Renamed In Zoho GmbH"})
        wait_for(lambda: pair.qad.store.get("customerV2s", "C000001")["name"] == "Renamed In Zoho GmbH", 20,
                 "timed out waiting for the rename in QAD")
        assert customer["name"] != "Renamed In Zoho GmbH"
        time.sleep(1.0)  # an echo, if there were one, would be written back within this
        assert pair.zoho_writes() == {}
        assert pair.zoho_calls() == {"GET /crm/v8/Accounts/{id}": 1}  # re-read by id: nothing listed

        # A forged callback (wrong token) is refused and changes nothing.
        channel = next(c for c in channels if "Accounts.all" in c["events"])
        forged = {"server_time": 1, "query_params": {}, "module": "Accounts", "resource_uri": "x",
                  "ids": [account["id"]], "affected_fields": [], "operation": "update",
                  "channel_id": channel["channel_id"], "token": "not-the-token"}
        refused = httpx.post(channel["notify_url"], json=forged, timeout=5)
        assert refused.status_code == 401
        time.sleep(0.5)
        assert pair.zoho_calls() == {"GET /crm/v8/Accounts/{id}": 1}
    finally:
        serve.send_signal(signal.SIGTERM)
        out, err = serve.communicate(timeout=30)
    assert serve.returncode == 143, err[-2000:]


def test_a_change_whose_notification_was_lost_is_caught_by_the_scheduled_read(pair: Pair) -> None:
    assert pair.run()[0] == 0
    pair.zoho.config.update(watch_drop_deliveries=True)  # no serve is listening anyway: nothing is delivered
    account = next(r for r in pair.records("Accounts") if r["ERP_Key"] == "C000002")
    pair.admin("PATCH", f"/_admin/records/Accounts/{account['id']}", {"Account_Name": "Caught By Reconcile AG"})
    pair.zoho.log.reset()
    code, flows = pair.run("--flow", "accounts_to_customers")
    assert code == 0
    assert flows["accounts_to_customers"]["updated"] == 1
    assert pair.qad.store.get("customerV2s", "C000002")["name"] == "Caught By Reconcile AG"
    assert pair.zoho_calls() == {"GET /crm/v8/Accounts": 1}   # one list call since the watermark, nothing else
