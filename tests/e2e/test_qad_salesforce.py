"""QAD <-> Salesforce end to end (issue 21): the sandboxes over real HTTP (and gRPC), the CLI in child processes."""

from __future__ import annotations

import contextlib
import os
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

from ml_connector.sandbox.qad import QadSandbox, create_qad_sandbox
from ml_connector.sandbox.salesforce import create_salesforce_sandbox
from ml_connector.sandbox.salesforce.app import SalesforceSandbox
from ml_connector.sandbox.salesforce.pubsub import PubSubServer, event_bus, start_pubsub
from ml_connector.sandbox.serve import SandboxServer
from ml_connector.sandbox.workspace import SANDBOX_ENV, write_workspace
from tests.e2e.conftest import cli, counts, run_flows, wait_for

REPO = Path(__file__).resolve().parents[2]
API = "/services/data/v66.0"


@dataclass
class Pair:
    qad: QadSandbox
    sf: SalesforceSandbox
    pubsub: PubSubServer
    workspace: Path
    urls: dict[str, str]

    def cli(self, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        return cli(self.workspace, *args, timeout=timeout)

    def run(self, *args: str) -> tuple[int, dict[str, dict[str, Any]]]:
        return run_flows(self.workspace, *args)

    def calls(self) -> dict[str, int]:
        counts: dict[str, int] = self.sf.log.summary()["counts"]
        return counts

    def writes(self) -> dict[str, int]:
        return {k: v for k, v in self.calls().items()
                if not k.startswith("GET ") and k != "POST /services/oauth2/token"}

    def admin(self, method: str, path: str, body: Any = None) -> Any:
        response = httpx.request(method, self.urls["salesforce"] + path, json=body, timeout=10)
        assert response.status_code < 300, response.text
        return response.json()

    def account(self, erp_id: str) -> dict[str, Any]:
        return next(r for r in self.admin("GET", "/_admin/records/Account")["records"] if r["ERP_Id__c"] == erp_id)


@pytest.fixture
def pair_factory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., Pair]]:
    for key, value in SANDBOX_ENV.items():
        monkeypatch.setenv(key, value)
    server = SandboxServer()
    streams: list[PubSubServer] = []

    def make(revenue_cloud: bool = False, **qad_counts: int) -> Pair:
        qad = create_qad_sandbox(**{"customers": 30, "items": 40, "suppliers": 10, **qad_counts})
        sf = create_salesforce_sandbox(revenue_cloud=revenue_cloud)
        pubsub = start_pubsub(sf)
        sf.config.update(pubsub_keepalive_seconds=1)  # a position to resume from within a second
        streams.append(pubsub)
        urls = {"qad": server.start("qad", qad).url, "salesforce": server.start("salesforce", sf).url,
                "salesforce_pubsub": f"127.0.0.1:{pubsub.port}"}
        return Pair(qad, sf, pubsub, write_workspace(tmp_path, urls), urls)

    try:
        yield make
    finally:
        for stream in streams:
            stream.stop()
        server.stop()


@pytest.fixture
def pair(pair_factory: Callable[..., Pair]) -> Pair:
    return pair_factory()


def test_first_sync_upserts_by_external_id_and_a_rerun_writes_nothing(pair: Pair) -> None:
    code, flows = pair.run()
    assert code == 0
    assert {name: counts(flow) for name, flow in flows.items()} == {
        "customers_to_sf_accounts": {"read": 30, "created": 27, "filtered": 3},
        "suppliers_to_sf_accounts": {"read": 10, "created": 9, "filtered": 1},
        "items_to_sf_products": {"read": 40, "created": 40},
        "contacts_to_sf_contacts": {"read": 54, "created": 32, "filtered": 22},
        "sf_accounts_to_customers": {"read": 36, "filtered": 9, "echoes": 27},
        "activated_orders_to_sales_orders": {},
        "sf_invoices_to_sales_orders": {},
    }
    assert flows["sf_invoices_to_sales_orders"]["status"] == "skipped"   # a basic org: no Invoice object
    assert pair.calls() == {
        "POST /services/oauth2/token": 1,
        f"PATCH {API}/composite/sobjects/Account/ERP_Id__c": 2,        # customers, then suppliers
        f"PATCH {API}/composite/sobjects/Product2/ERP_Item_No__c": 1,
        f"PATCH {API}/composite/sobjects/Contact/ERP_Id__c": 1,
        f"GET {API}/query": 3,                                         # accounts back, orders, invoices
    }
    pair.sf.log.reset()
    code, flows = pair.run()
    assert code == 0
    assert pair.calls() == {f"GET {API}/query": 3}                     # the token is kept; nothing written
    assert all(flow["created"] + flow["updated"] == 0 for flow in flows.values())


def test_five_thousand_accounts_take_twenty_five_upsert_calls_at_most(pair_factory: Callable[..., Pair]) -> None:
    pair = pair_factory(customers=5_000, items=0, suppliers=0)
    code, flows = pair.run("--flow", "customers_to_sf_accounts")
    assert code == 0
    created = flows["customers_to_sf_accounts"]["created"]
    assert created > 4_000
    upserts = pair.calls()[f"PATCH {API}/composite/sobjects/Account/ERP_Id__c"]
    assert -(-created // 200) <= upserts <= 25   # 200 per call; a batch does not wait for the next page read


def test_an_expired_session_costs_one_new_token_and_no_failed_record(pair: Pair) -> None:
    assert pair.run()[0] == 0
    for code in ("C000001", "C000002", "C000004"):
        pair.qad.store.patch("customerV2s", code, {"name": f"Renamed {code}"})
    pair.admin("POST", "/_admin/tokens/expire")
    pair.sf.log.reset()
    code, flows = pair.run()
    assert code == 0
    assert flows["customers_to_sf_accounts"]["updated"] == 3 and sum(f["failed"] for f in flows.values()) == 0
    statuses = [e.status for e in pair.sf.log.entries() if e.path != "/services/oauth2/token"]
    assert statuses[0] == 401 and statuses.count(401) == 1               # refused once, then a new token
    assert pair.calls()["POST /services/oauth2/token"] == 1
    assert pair.account("C000001")["Name"] == "Renamed C000001"


def _order(pair: Pair, account_id: str, product_ids: list[str]) -> dict[str, Any]:
    book = next(r for r in pair.admin("GET", "/_admin/records/Pricebook2")["records"] if r["IsStandard"])
    order = pair.admin("POST", "/_admin/records/Order", {"AccountId": account_id, "EffectiveDate": "2026-12-01",
                                                         "Status": "Draft", "Pricebook2Id": book["Id"]})
    for quantity, product in enumerate(product_ids, start=2):
        entry = pair.admin("POST", "/_admin/records/PricebookEntry", {
            "Pricebook2Id": book["Id"], "Product2Id": product, "UnitPrice": 12.5, "IsActive": True})
        pair.admin("POST", "/_admin/records/OrderItem", {"OrderId": order["Id"], "PricebookEntryId": entry["Id"],
                                                         "Quantity": quantity, "UnitPrice": 12.5})
    return order


def test_a_draft_order_is_not_moved_and_becomes_a_qad_sales_order_once_activated(pair: Pair) -> None:
    assert pair.run()[0] == 0
    products = [r for r in pair.admin("GET", "/_admin/records/Product2")["records"] if r["IsActive"]][:2]
    order = _order(pair, pair.account("C000001")["Id"], [p["Id"] for p in products])
    code, flows = pair.run()
    assert code == 0 and counts(flows["activated_orders_to_sales_orders"]) == {"read": 1, "filtered": 1}
    assert not [o for o in pair.qad.store.all("salesOrders") if o.get("externalReference") == f"sf-order-{order['Id']}"]

    pair.admin("PATCH", f"/_admin/records/Order/{order['Id']}", {"Status": "Activated"})
    code, flows = pair.run()
    assert code == 0 and flows["activated_orders_to_sales_orders"]["created"] == 1
    [moved] = [o for o in pair.qad.store.all("salesOrders") if o.get("externalReference") == f"sf-order-{order['Id']}"]
    assert moved["customerCode"] == "C000001"
    assert [(ln["itemCode"], ln["quantityOrdered"]) for ln in moved["lines"]] == [
        (p["ERP_Item_No__c"], n) for n, p in enumerate(products, start=2)]


def test_the_daily_api_limit_stops_the_run_cleanly_and_the_next_run_resumes(pair: Pair) -> None:
    pair.sf.config.update(daily_api_requests=4)   # the first run needs 6 calls
    pair.admin("POST", "/_admin/limits/reset")
    code, flows = pair.run()
    result_status = {name: flow["status"] for name, flow in flows.items()}
    assert code == 3, result_status
    assert "quota" in result_status.values() or any(f.get("not_started") for f in flows.values())
    assert "403" not in pair.sf.log.summary()["statuses"]          # stopped before the limit, never refused
    done = {name for name, flow in flows.items() if flow["status"] == "ok"}
    pair.sf.config.update(daily_api_requests=15_000)
    code, flows = pair.run()
    assert code == 0, {name: flow["status"] for name, flow in flows.items()}
    assert all(flows[name]["created"] == 0 for name in done)   # what was done is not done again
    assert pair.account("V000001")["Name"]                         # the suppliers' accounts came on resuming




def _serve(pair: Pair) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "ml_connector.cli", "serve", "-w", str(pair.workspace),
                             "--interval", "1"], cwd=REPO, env={**os.environ, **SANDBOX_ENV},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _stop(process: subprocess.Popen[str]) -> str:
    process.send_signal(signal.SIGTERM)
    try:
        out, err = process.communicate(timeout=30)
    except subprocess.TimeoutExpired:  # a rare hang on SIGTERM under load: say where every thread was, then fail
        report = _where_it_hangs(process.pid)
        process.kill()
        out, err = process.communicate()
        raise AssertionError(f"serve did not stop within 30 s of SIGTERM\n{report}\n{err[-8000:]}") from None
    assert process.returncode == 143, err[-3000:]
    return err


def _where_it_hangs(pid: int) -> str:
    """The signal masks of the process and its threads, and their Python stacks (py-spy, when installed)."""
    lines = []
    for status in [Path(f"/proc/{pid}/status"), *sorted(Path(f"/proc/{pid}/task").glob("*/status"))]:
        with contextlib.suppress(OSError):
            fields = dict(line.split(":", 1) for line in status.read_text().splitlines() if ":" in line)
            lines.append(f"{status}: " + " ".join(f"{k}={fields[k].strip()}" for k in
                                                   ("Name", "SigPnd", "ShdPnd", "SigBlk", "SigIgn", "SigCgt")
                                                   if k in fields))
    spy = Path(sys.executable).parent / "py-spy"
    if spy.exists():
        dump = subprocess.run([str(spy), "dump", "--pid", str(pid)], capture_output=True, text=True, timeout=30)
        lines.append(dump.stdout[-6000:] + dump.stderr[-1000:])
    return "\n".join(lines)


def _subscribed(pair: Pair) -> None:
    """Every topic subscribed, each at its position: an event published before a topic's LATEST subscription is
    not that subscription's (one topic up and the other not yet was a CI flake)."""
    bus = event_bus(pair.sf)
    topics = _streamed_entities()
    wait_for(lambda: bus.subscribers() >= topics, 60, f"timed out waiting for serve to subscribe to {topics} topics")


def _streamed_entities() -> int:
    """Serve subscribes once per source entity of the stream-triggered flows."""
    specs = [yaml.safe_load(path.read_text()) for path in (REPO / "mappings" / "qad-salesforce").glob("*.yaml")]
    return len({spec["from"]["entity"] for spec in specs if "stream" in (spec.get("trigger") or {})})


def _qad_name(pair: Pair, code: str) -> str:
    name: str = pair.qad.store.get("customerV2s", code)["name"]
    return name


def test_change_data_capture_delivers_changes_made_while_stopped_and_falls_back_past_retention(pair: Pair) -> None:
    assert pair.run()[0] == 0
    account = pair.account("C000003")
    serve = _serve(pair)
    try:
        _subscribed(pair)
        time.sleep(1.5)  # a keepalive position stored (every second)
        pair.admin("PATCH", f"/_admin/records/Account/{account['Id']}", {"Name": "Live Change AG"})
        wait_for(lambda: _qad_name(pair, "C000003") == "Live Change AG", 60,
                 "timed out waiting for the live change in QAD")
    finally:
        _stop(serve)

    # Stopped for less than the retention: the stored replay id brings the change on restart.
    pair.admin("PATCH", f"/_admin/records/Account/{account['Id']}", {"Name": "Changed While Stopped AG"})
    serve = _serve(pair)
    try:
        wait_for(lambda: _qad_name(pair, "C000003") == "Changed While Stopped AG", 60,
                 "timed out waiting for the change made while stopped")
    finally:
        _stop(serve)

    # Stopped past the retention: the stored id is refused; a full SOQL read of the entity picks the change up.
    pair.admin("PATCH", f"/_admin/records/Account/{account['Id']}", {"Name": "Past Retention AG"})
    pair.admin("POST", "/_admin/pubsub/purge", {"older_than_seconds": 0})
    serve = _serve(pair)
    try:
        wait_for(lambda: _qad_name(pair, "C000003") == "Past Retention AG", 60,
                 "timed out waiting for the change past the retention")
    finally:
        err = _stop(serve)
    assert pair.sf.log.summary()["counts"].get("POST /services/oauth2/token", 0) <= 3
    assert "Past Retention AG" not in err  # names are data: never in the service's log


def test_a_gap_event_makes_the_subscriber_re_read_the_named_record_over_rest(pair: Pair) -> None:
    assert pair.run()[0] == 0
    account = pair.account("C000005")
    serve = _serve(pair)
    try:
        _subscribed(pair)
        entities = pair.sf.config["pubsub_cdc_entities"]
        pair.sf.config.update(pubsub_cdc_entities=[e for e in entities if e != "Account"])
        pair.admin("PATCH", f"/_admin/records/Account/{account['Id']}", {"Name": "Changed Without An Event AG"})
        pair.sf.config.update(pubsub_cdc_entities=entities)
        time.sleep(2)
        assert _qad_name(pair, "C000005") != "Changed Without An Event AG"   # no event, nothing moved
        pair.admin("POST", "/_admin/pubsub/gap", {"entity": "Account", "ids": [account["Id"]], "type": "GAP_UPDATE"})
        wait_for(lambda: _qad_name(pair, "C000005") == "Changed Without An Event AG", 30,
                 "timed out waiting for the re-read after the gap event")
    finally:
        _stop(serve)


def test_a_basic_org_skips_the_invoice_flow_with_a_clear_message(pair: Pair) -> None:
    result = pair.cli("run", "--flow", "sf_invoices_to_sales_orders")
    assert result.returncode == 0, result.stderr
    assert ("  sf_invoices_to_sales_orders: skipped: this org has no such object (sObject type 'Invoice' is not "
            "supported.)" in result.stdout.splitlines()), result.stdout
    assert result.stdout.splitlines()[-1].endswith(": ok")


def test_with_revenue_cloud_a_posted_invoice_is_read_onto_the_qad_sales_order_for_reference(
        pair_factory: Callable[..., Pair]) -> None:
    pair = pair_factory(revenue_cloud=True)
    assert pair.run()[0] == 0
    products = [r for r in pair.admin("GET", "/_admin/records/Product2")["records"] if r["IsActive"]][:1]
    account = pair.account("C000002")
    order = _order(pair, account["Id"], [p["Id"] for p in products])
    pair.admin("PATCH", f"/_admin/records/Order/{order['Id']}", {"Status": "Activated"})
    draft = pair.admin("POST", "/_admin/records/Invoice", {
        "BillingAccountId": account["Id"], "ReferenceEntityId": order["Id"], "InvoiceDate": "2026-12-02",
        "DueDate": "2027-01-01", "Status": "Draft"})
    code, flows = pair.run()
    assert code == 0
    assert counts(flows["sf_invoices_to_sales_orders"]) == {"read": 1, "filtered": 1}   # a draft is not read over
    [moved] = [o for o in pair.qad.store.all("salesOrders") if o.get("externalReference") == f"sf-order-{order['Id']}"]
    assert moved["invoiceNumber"] is None

    pair.admin("PATCH", f"/_admin/records/Invoice/{draft['Id']}", {"Status": "Posted"})
    code, flows = pair.run()
    assert code == 0 and counts(flows["sf_invoices_to_sales_orders"]) == {"read": 1, "updated": 1}
    moved = pair.qad.store.get("salesOrders", moved["salesOrderNumber"])
    invoice = pair.admin("GET", f"/_admin/records/Invoice/{draft['Id']}")
    assert (moved["invoiceNumber"], moved["invoiceDate"]) == (invoice["InvoiceNumber"], "2026-12-02")
    assert moved["customerCode"] == "C000002" and len(moved["lines"]) == 1        # the rest of the order kept
    code, flows = pair.run()
    assert code == 0 and flows["sf_invoices_to_sales_orders"]["updated"] == 0


def test_an_overflow_event_makes_the_subscriber_read_the_whole_entity(pair: Pair) -> None:
    assert pair.run()[0] == 0
    account = pair.account("C000007")
    serve = _serve(pair)
    try:
        _subscribed(pair)
        entities = pair.sf.config["pubsub_cdc_entities"]
        pair.sf.config.update(pubsub_cdc_entities=[e for e in entities if e != "Account"])
        pair.admin("PATCH", f"/_admin/records/Account/{account['Id']}", {"Name": "Lost In An Overflow AG"})
        pair.sf.config.update(pubsub_cdc_entities=entities)
        time.sleep(2)
        assert _qad_name(pair, "C000007") != "Lost In An Overflow AG"   # no event, nothing moved
        pair.admin("POST", "/_admin/pubsub/gap", {"entity": "Account", "ids": [], "type": "GAP_OVERFLOW"})
        wait_for(lambda: _qad_name(pair, "C000007") == "Lost In An Overflow AG", 30,
                 "timed out waiting for the full read after the overflow event")
    finally:
        _stop(serve)
