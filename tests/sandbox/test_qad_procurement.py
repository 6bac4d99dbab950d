"""Tests of the QAD sandbox's procurement: purchase orders, receipts, supplier invoices, three-way match."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest

from ml_connector.sandbox.core import ManualClock
from ml_connector.sandbox.qad import QadSandbox, create_qad_sandbox, parse_timestamp_ms
from ml_connector.spec import load_specs

T = TypeVar("T")
REPO = Path(__file__).resolve().parents[2]
API = "/clouderp/api/erp"
POS, RECEIPTS, INVOICES = f"{API}/purchaseOrders", f"{API}/purchaseOrderReceipts", f"{API}/supplierInvoices"
SCOPE = {"x-qad-workspace-id": "10USA_10USACO"}
LOGIN = {"client_id": "ml-connector", "grant_type": "password", "username": "demo", "password": "demo-password"}


def run(sandbox: QadSandbox, scenario: Callable[[httpx.AsyncClient], Awaitable[T]]) -> T:
    async def go() -> T:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=sandbox), base_url="http://qad.test") as c:
            return await scenario(c)
    return asyncio.run(go())


async def login(client: httpx.AsyncClient) -> dict[str, str]:
    response = await client.post("/clouderp/oauth/token", params=LOGIN)
    return {"Authorization": f"Bearer {response.json()['access_token']}", **SCOPE}


@pytest.fixture()
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture()
def box(clock: ManualClock) -> QadSandbox:
    sandbox = create_qad_sandbox(customers=20, items=40, suppliers=10, purchase_orders=20, receipts=12,
                                 supplier_invoices=16, clock=clock)
    sandbox.config["rate_per_second"] = 10_000
    return sandbox


def active_item(box: QadSandbox) -> dict[str, Any]:
    return next(i for i in box.store.all("items") if i["itemStatus"] == "ACTIVE")


def active_supplier(box: QadSandbox) -> dict[str, Any]:
    return next(s for s in box.store.all("supplierV2s") if s["isActive"])


# ---- seeding -----------------------------------------------------------------------------------------

def test_defaults_seed_no_procurement_so_existing_counts_stay() -> None:
    plain = create_qad_sandbox()
    assert [plain.store.count(e) for e in ("supplierV2s", "purchaseOrders", "purchaseOrderReceipts",
                                           "supplierInvoices")] == [0, 0, 0, 0]


def test_seeded_procurement_is_consistent_and_deterministic(box: QadSandbox, clock: ManualClock) -> None:
    store = box.store
    orders = store.all("purchaseOrders")
    assert len(orders) == 20
    assert sorted(o["purchaseOrderNumber"] for o in orders)[:2] == ["P0000001", "P0000002"]
    for order in orders:
        supplier = store.get("supplierV2s", order["supplierCode"])
        assert supplier is not None and supplier["isActive"] and order["currencyCode"] == supplier["currencyCode"]
        assert order["status"] in {"open", "closed", "cancelled"}
        assert order["totalAmount"] == round(sum(ln["quantityOrdered"] * ln["unitCost"] for ln in order["lines"]), 2)
        for line in order["lines"]:
            assert store.get("items", line["itemCode"])["itemStatus"] == "ACTIVE"  # type: ignore[index]
            assert 0 <= line["quantityReceived"] <= line["quantityOrdered"]
    receipts = store.all("purchaseOrderReceipts")
    assert receipts and all(r["receiptId"] == f"{r['receiverNumber']}-{r['lineNumber']}" for r in receipts)
    assert receipts[0]["receiverNumber"].startswith("RC") and len(receipts[0]["receiverNumber"]) == 8
    by_line: dict[tuple[str, int], float] = {}
    for receipt in receipts:
        key = (receipt["purchaseOrderNumber"], receipt["lineNumber"])
        by_line[key] = by_line.get(key, 0.0) + receipt["quantityReceived"]
    for order in orders:  # every PO line's quantityReceived is the sum of its posted receipts
        for line in order["lines"]:
            assert line["quantityReceived"] == by_line.get((order["purchaseOrderNumber"], line["lineNumber"]), 0.0)
    invoices = store.all("supplierInvoices")
    assert len(invoices) == 16
    first = next(i for i in invoices if i["voucherNumber"] == 1)
    assert store.get("supplierInvoices", first["invoiceId"]) == first
    assert re.fullmatch(r"10USACO-(\d{4})-APINV-000001", first["invoiceId"])
    assert (first["entityCode"], first["invoiceYear"]) == ("10USACO", int(first["invoiceDate"][:4]))
    assert {i["matchStatus"] for i in invoices} == {"matched", "pending", "mismatch"}
    assert all(i["matchStatus"] == "pending" for i in invoices if i["voucherNumber"] > 12)  # no receipt posted
    again = create_qad_sandbox(customers=20, items=40, suppliers=10, purchase_orders=20, receipts=12,
                               supplier_invoices=16, clock=clock)
    assert again.store.all("supplierInvoices") == invoices and again.store.all("purchaseOrders") == orders


def test_match_status_follows_the_three_way_rules(box: QadSandbox) -> None:
    store = box.store
    for invoice in store.all("supplierInvoices"):
        statuses = []
        for line in invoice["lines"]:
            order = store.get("purchaseOrders", line["purchaseOrderNumber"])
            assert order is not None and order["supplierCode"] == invoice["supplierCode"]
            po_line = next(ln for ln in order["lines"] if ln["lineNumber"] == line["poLineNumber"])
            if line["unitCost"] != po_line["unitCost"]:
                statuses.append("mismatch")
            elif po_line["quantityReceived"] < line["quantity"]:
                statuses.append("pending" if order["status"] == "open" else "mismatch")
            else:
                statuses.append("matched")
        expected = "mismatch" if "mismatch" in statuses else "pending" if "pending" in statuses else "matched"
        assert invoice["matchStatus"] == expected, invoice["invoiceId"]
        assert invoice["totalAmount"] == round(
            sum(ln["quantity"] * ln["unitCost"] for ln in invoice["lines"]) + invoice["taxAmount"], 2)


# ---- posting a receipt -------------------------------------------------------------------------------

def test_posted_receipt_makes_a_pending_invoice_matched_for_the_next_incremental_read(
        box: QadSandbox, clock: ManualClock) -> None:
    store = box.store

    async def scenario(c: httpx.AsyncClient) -> None:
        headers = await login(c)
        first = (await c.get(INVOICES, headers=headers, params={"pageSize": 1000})).json()["data"]
        pending = next(i for i in first if i["matchStatus"] == "pending" and i["voucherNumber"] > 12)
        watermark = max(i["lastModifiedDate"] for i in first)
        order = store.get("purchaseOrders", pending["lines"][0]["purchaseOrderNumber"])
        assert order is not None and all(ln["quantityReceived"] == 0 for ln in order["lines"])
        clock.advance(60)
        body = {"supplementaryMessages": [], "purchaseOrderReceipts": [
            {"receiverNumber": "RC900001", "lineNumber": ln["poLineNumber"],
             "purchaseOrderNumber": ln["purchaseOrderNumber"], "quantityReceived": ln["quantity"]}
            for ln in pending["lines"]]}
        posted = (await c.post(RECEIPTS, headers=headers, json=body)).json()
        assert posted["submitResult"] == {"success": True, "errors": []}
        assert [r["receiptId"] for r in posted["purchaseOrderReceipts"]] == [
            f"RC900001-{ln['poLineNumber']}" for ln in pending["lines"]]
        assert posted["purchaseOrderReceipts"][0]["itemCode"] == order["lines"][0]["itemCode"]
        after = (await c.get(INVOICES, headers=headers, params={"modifiedSince": watermark})).json()["data"]
        changed = [i for i in after if i["invoiceId"] == pending["invoiceId"]]
        assert len(changed) == 1 and changed[0]["matchStatus"] == "matched"
        assert changed[0]["matchedReceivers"] == [f"RC900001-{ln['poLineNumber']}" for ln in pending["lines"]]
        assert parse_timestamp_ms(changed[0]["lastModifiedDate"]) > parse_timestamp_ms(watermark)
        assert {i["invoiceId"] for i in after} <= {pending["invoiceId"]} | {
            i["invoiceId"] for i in first if i["lastModifiedDate"] == watermark}
        order_after = (await c.get(f"{POS}/{order['purchaseOrderNumber']}", headers=headers)).json()["data"][0]
        assert [ln["quantityReceived"] for ln in order_after["lines"]] == [
            ln["quantity"] for ln in pending["lines"]]
        assert order_after["lastModifiedDate"] > order["lastModifiedDate"]
        assert order_after["lastModifiedDate"] < changed[0]["lastModifiedDate"]
    run(box, scenario)


def test_invoice_without_status_change_keeps_its_timestamp(box: QadSandbox) -> None:
    store = box.store
    pending = next(i for i in store.all("supplierInvoices") if i["voucherNumber"] > 12 and len(i["lines"]) > 1
                   and i["matchStatus"] == "pending")
    line = pending["lines"][0]
    receipt = store.insert("purchaseOrderReceipts", {"receiverNumber": "RC900002", "lineNumber": line["poLineNumber"],
                                                     "purchaseOrderNumber": line["purchaseOrderNumber"],
                                                     "quantityReceived": line["quantity"]})
    assert receipt["receiptId"] == f"RC900002-{line['poLineNumber']}"
    assert store.get("supplierInvoices", pending["invoiceId"]) == pending  # still pending: other lines open


def test_admin_route_posts_a_receipt(box: QadSandbox) -> None:
    store = box.store
    order = next(o for o in store.all("purchaseOrders")
                 if o["status"] == "open" and o["lines"][0]["quantityReceived"] < o["lines"][0]["quantityOrdered"])
    line = order["lines"][0]
    missing = line["quantityOrdered"] - line["quantityReceived"]

    async def scenario(c: httpx.AsyncClient) -> None:
        url = f"/_admin/purchaseOrders/{order['purchaseOrderNumber']}/receive"
        response = await c.post(url, json={"lineNumber": line["lineNumber"], "quantityReceived": missing})
        assert response.status_code == 201, response.text
        receipt = response.json()
        assert receipt["receiverNumber"] == "RC000013" and receipt["receiptId"] == f"RC000013-{line['lineNumber']}"
        assert receipt["quantityReceived"] == missing and receipt["lastModifiedUser"] == "sandbox-admin"
        assert (await c.post("/_admin/purchaseOrders/P9999999/receive",
                             json={"lineNumber": 1, "quantityReceived": 1})).status_code == 404
        assert (await c.post(url, json={"lineNumber": 99, "quantityReceived": 1})).status_code == 400
    run(box, scenario)
    after = store.get("purchaseOrders", order["purchaseOrderNumber"])
    assert after is not None and after["lines"][0]["quantityReceived"] == line["quantityOrdered"]


def test_receipt_writes_are_validated(box: QadSandbox) -> None:
    store = box.store
    open_order = next(o for o in store.all("purchaseOrders") if o["status"] == "open"
                      and o["lines"][0]["quantityReceived"] < o["lines"][0]["quantityOrdered"])
    line = open_order["lines"][0]
    closed = next(o for o in store.all("purchaseOrders") if o["status"] != "open")
    seeded = store.all("purchaseOrderReceipts")[0]

    async def scenario(c: httpx.AsyncClient) -> None:
        headers = await login(c)
        rows = [
            {"receiverNumber": "RC900003", "lineNumber": line["lineNumber"],
             "purchaseOrderNumber": open_order["purchaseOrderNumber"],
             "quantityReceived": line["quantityOrdered"] - line["quantityReceived"] + 1},
            {"receiverNumber": "RC900004", "lineNumber": 1, "purchaseOrderNumber": closed["purchaseOrderNumber"],
             "quantityReceived": 1},
            {"receiverNumber": "RC900005", "lineNumber": 77, "purchaseOrderNumber": open_order["purchaseOrderNumber"],
             "quantityReceived": 1},
            {"receiverNumber": "RC900006", "lineNumber": 1, "purchaseOrderNumber": "P9999999", "quantityReceived": 1},
            {"receiverNumber": "RC900007", "lineNumber": line["lineNumber"],
             "purchaseOrderNumber": open_order["purchaseOrderNumber"], "quantityReceived": 1, "itemCode": "99-9999"},
            {"receiverNumber": "RC90000899", "lineNumber": 1, "purchaseOrderNumber": open_order["purchaseOrderNumber"],
             "quantityReceived": 1},
            {"receiverNumber": seeded["receiverNumber"], "lineNumber": seeded["lineNumber"],
             "purchaseOrderNumber": seeded["purchaseOrderNumber"], "quantityReceived": 1,
             "concurrencyHash": seeded["concurrencyHash"]},
        ]
        response = await c.post(RECEIPTS, headers=headers, json={"purchaseOrderReceipts": rows})
        assert response.status_code == 200
        body = response.json()
        assert body["submitResult"]["success"] is False and body["purchaseOrderReceipts"] == []
        errors = [(e["index"], e["fieldName"], e["message"]) for e in body["submitResult"]["errors"]]
        assert errors == [
            (0, "quantityReceived", "Quantity received exceeds the quantity open on the purchase order line"),
            (1, "purchaseOrderNumber", f"Purchase order {closed['purchaseOrderNumber']} is {closed['status']}"),
            (2, "lineNumber", f"Purchase order {open_order['purchaseOrderNumber']} has no line 77"),
            (3, "purchaseOrderNumber", "Purchase order 'P9999999' does not exist"),
            (4, "itemCode", f"Item '99-9999' is not the item of purchase order line {line['lineNumber']}"),
            (5, "receiverNumber", "Value exceeds the maximum length of 8"),
            (6, "receiptId", "Posted receipts cannot be changed"),
        ]
    run(box, scenario)
    assert store.get("purchaseOrders", open_order["purchaseOrderNumber"]) == open_order


# ---- purchase order writes ---------------------------------------------------------------------------

def test_purchase_order_create_validates_supplier_items_and_widths(box: QadSandbox) -> None:
    store = box.store
    supplier, item = active_supplier(box), active_item(box)
    inactive_supplier = store.insert("supplierV2s", {"supplierCode": "VOFF", "name": "Off", "isActive": False})
    held = store.insert("items", {"itemCode": "HELD-1", "description": "Held", "itemStatus": "HOLD"})

    async def scenario(c: httpx.AsyncClient) -> None:
        headers = await login(c)
        bad = [
            {"purchaseOrderNumber": "PNEW0001", "supplierCode": "V999999", "currencyCode": "USD",
             "lines": [{"itemCode": item["itemCode"], "quantityOrdered": 5, "unitCost": 1.5}]},
            {"purchaseOrderNumber": "PNEW0002", "supplierCode": inactive_supplier["supplierCode"],
             "currencyCode": "USD", "lines": [{"itemCode": held["itemCode"], "quantityOrdered": 0, "unitCost": 1}]},
            {"purchaseOrderNumber": "PNEW00033", "supplierCode": supplier["supplierCode"], "currencyCode": "USD",
             "lines": [{"itemCode": item["itemCode"], "quantityOrdered": 1, "quantityReceived": 1}]},
        ]
        refused = (await c.post(POS, headers=headers, json={"purchaseOrders": bad})).json()
        assert [(e["index"], e["fieldName"], e["message"]) for e in refused["submitResult"]["errors"]] == [
            (0, "supplierCode", "Supplier 'V999999' does not exist"),
            (1, "supplierCode", "Supplier 'VOFF' is inactive"),
            (1, "lines[0].itemCode", "Item status HOLD does not allow order entry"),
            (1, "lines[0].quantityOrdered", "Quantity ordered must be greater than 0"),
            (2, "purchaseOrderNumber", "Value exceeds the maximum length of 8"),
        ]
        good = {"purchaseOrderNumber": "PNEW0004", "supplierCode": supplier["supplierCode"], "currencyCode": "USD",
                "orderDate": "2026-01-01",
                "lines": [{"itemCode": item["itemCode"], "quantityOrdered": 4, "unitCost": 2.5}]}
        saved = (await c.post(POS, headers=headers, json={"purchaseOrders": [good]})).json()
        assert saved["submitResult"] == {"success": True, "errors": []}
        order = saved["purchaseOrders"][0]
        assert order["status"] == "open" and order["totalAmount"] == 10.0 and order["dataOperation"] == "C"
        assert order["lines"] == [{"lineNumber": 1, "itemCode": item["itemCode"], "quantityOrdered": 4,
                                   "quantityReceived": 0.0, "unitCost": 2.5, "siteCode": item["siteCode"],
                                   "dueDate": None}]
        cheat = {**order, "lines": [{**order["lines"][0], "quantityReceived": 4}]}
        refused2 = (await c.post(POS, headers=headers, json={"purchaseOrders": [cheat]})).json()
        assert refused2["submitResult"]["errors"] == [{"index": 0, "fieldName": "lines[0].quantityReceived",
                                                       "message": "Quantity received is maintained by receipts",
                                                       "severity": "error"}]
    run(box, scenario)


# ---- supplier invoice writes -------------------------------------------------------------------------

def test_supplier_invoice_create_gets_key_and_match_status(box: QadSandbox, clock: ManualClock) -> None:
    store = box.store
    order = next(o for o in store.all("purchaseOrders") if o["status"] == "closed")
    line = order["lines"][0]

    async def scenario(c: httpx.AsyncClient) -> None:
        headers = await login(c)
        base = {"supplierCode": order["supplierCode"], "supplierInvoiceReference": "SUP-INV-1",
                "invoiceDate": "2026-01-02", "currencyCode": order["currencyCode"]}
        invoices = [
            {**base, "lines": [{"purchaseOrderNumber": order["purchaseOrderNumber"],
                                "poLineNumber": line["lineNumber"], "quantity": line["quantityOrdered"],
                                "unitCost": line["unitCost"]}], "taxAmount": 1.0},
            {**base, "supplierInvoiceReference": "SUP-INV-2",
             "lines": [{"purchaseOrderNumber": order["purchaseOrderNumber"], "poLineNumber": line["lineNumber"],
                        "quantity": line["quantityOrdered"], "unitCost": round(line["unitCost"] + 0.01, 2)}]},
        ]
        saved = (await c.post(INVOICES, headers=headers, json={"supplierInvoices": invoices})).json()
        assert saved["submitResult"] == {"success": True, "errors": []}
        first, second = saved["supplierInvoices"]
        assert first["invoiceId"] == "10USACO-2026-APINV-000017" and second["voucherNumber"] == 18
        assert (first["entityCode"], first["invoiceYear"], first["journalCode"]) == ("10USACO", 2026, "APINV")
        assert first["matchStatus"] == "matched" and second["matchStatus"] == "mismatch"
        assert first["totalAmount"] == round(line["quantityOrdered"] * line["unitCost"] + 1.0, 2)
        assert first["isApproved"] is False and first["dueDate"] is None
        box.config["match_price_tolerance"] = 0.05
        clock.advance(1)
        resent = {k: v for k, v in second.items() if k not in {"matchStatus", "matchedReceivers"}}
        again = (await c.post(INVOICES, headers=headers, json={"supplierInvoices": [resent]})).json()
        assert again["supplierInvoices"][0]["matchStatus"] == "matched"
        wrong = {**base, "supplierCode": "V999999", "lines": [
            {"purchaseOrderNumber": "P9999999", "poLineNumber": 1, "quantity": 1, "unitCost": 1}]}
        other = next(s for s in store.all("supplierV2s")
                     if s["isActive"] and s["supplierCode"] != order["supplierCode"])
        foreign = {**base, "supplierCode": other["supplierCode"], "lines": [
            {"purchaseOrderNumber": order["purchaseOrderNumber"], "poLineNumber": 99, "quantity": 1, "unitCost": 1}]}
        refused = (await c.post(INVOICES, headers=headers, json={"supplierInvoices": [
            wrong, foreign, {**base, "lines": []}]})).json()
        assert [(e["index"], e["fieldName"], e["message"]) for e in refused["submitResult"]["errors"]] == [
            (0, "supplierCode", "Supplier 'V999999' does not exist"),
            (0, "lines[0].purchaseOrderNumber", "Purchase order 'P9999999' does not exist"),
            (1, "lines[0].purchaseOrderNumber",
             f"Purchase order {order['purchaseOrderNumber']} belongs to supplier {order['supplierCode']}"),
            (2, "lines", "A supplier invoice needs at least one purchase order line"),
        ]
    run(box, scenario)


def test_procurement_entities_are_listed_browsed_and_fetched(box: QadSandbox) -> None:
    async def scenario(c: httpx.AsyncClient) -> None:
        headers = await login(c)
        page = (await c.get(RECEIPTS, headers=headers, params={"pageSize": 5})).json()
        assert page["page"] == 1 and len(page["data"]) == 5 and page["hasMore"] is True
        receipt = page["data"][0]
        assert receipt["uri"] == f"urn:be:com.qad.purchasing.receipt.IPurchaseOrderReceipt:10USA.{receipt['receiptId']}"
        got = (await c.get(f"{RECEIPTS}/{receipt['receiptId']}", headers=headers)).json()
        assert got == {"data": [receipt]}
        assert (await c.get(f"{INVOICES}/10USACO-2025-APINV-999999", headers=headers)).status_code == 404
        rows = (await c.get("/clouderp/api/qracore/browses", headers=headers, params={
            "browseId": "urn:browse:bebrowse:com.qad.erp.purchasing.purchaseOrders", "page": 1,
            "pageAction": "first", "pageSize": 3})).json()["data"]
        assert len(rows) == 3 and "lines" not in rows[0] and rows[0]["purchaseOrderNumber"].startswith("P")
    run(box, scenario)


def test_admin_patch_of_a_po_rematches_its_invoices_and_admin_insert_posts(box: QadSandbox, clock: ManualClock) -> None:
    store = box.store
    invoice = next(i for i in store.all("supplierInvoices") if i["matchStatus"] == "matched")
    number = invoice["lines"][0]["purchaseOrderNumber"]
    order = store.get("purchaseOrders", number)
    assert order is not None

    async def scenario(c: httpx.AsyncClient) -> None:
        lines = [{**ln, "unitCost": round(ln["unitCost"] + 1, 2)} for ln in order["lines"]]
        clock.advance(5)
        patched = await c.patch(f"/_admin/records/purchaseOrders/{number}", json={"lines": lines})
        assert patched.status_code == 200
        assert patched.json()["totalAmount"] == round(sum(ln["quantityOrdered"] * ln["unitCost"] for ln in lines), 2)
        after = (await c.get(f"/_admin/records/supplierInvoices/{invoice['invoiceId']}")).json()
        assert (after["matchStatus"], after["matchedReceivers"]) == ("mismatch", [])
        assert after["lastModifiedDate"] > patched.json()["lastModifiedDate"]
        open_order = next(o for o in store.all("purchaseOrders") if o["status"] == "open")
        line = open_order["lines"][-1]
        inserted = await c.post("/_admin/records/purchaseOrderReceipts", json={
            "receiverNumber": "RC800000", "lineNumber": line["lineNumber"],
            "purchaseOrderNumber": open_order["purchaseOrderNumber"], "quantityReceived": 1})
        assert inserted.status_code == 201 and inserted.json()["receiptId"] == f"RC800000-{line['lineNumber']}"
        raised = store.get("purchaseOrders", open_order["purchaseOrderNumber"])
        assert raised is not None and raised["lines"][-1]["quantityReceived"] == line["quantityReceived"] + 1
    run(box, scenario)


@pytest.mark.parametrize(("entity", "path"), [("supplier", "supplierV2s"), ("purchase_order", "purchaseOrders"),
                                              ("receipt", "purchaseOrderReceipts"),
                                              ("supplier_invoice", "supplierInvoices")])
def test_connector_spec_declares_exactly_the_sandbox_fields(box: QadSandbox, entity: str, path: str) -> None:
    project, problems = load_specs([REPO / "connectors" / "qad.yaml"])
    assert [str(p) for p in problems if "qad.yaml" in str(p)] == []
    spec = project.entity("qad", entity)
    assert spec["read"]["path"] == f"/api/erp/{path}" and spec["get"]["path"] == f"/api/erp/{path}/{{{{ id }}}}"
    records = box.store.all(path)
    assert {k for r in records for k in r} == set(spec["fields"])
    for name, decl in spec["fields"].items():
        if decl.get("required"):
            assert all(r.get(name) is not None for r in records), name
        if "fields" in decl:
            assert {k for r in records for ln in r[name] for k in ln} == set(decl["fields"]), name
    assert spec["key"] in records[0]


def test_receipts_in_one_batch_may_not_together_exceed_the_open_quantity(box: QadSandbox) -> None:
    store = box.store
    order = next(o for o in store.all("purchaseOrders")
                 if o["status"] == "open" and all(ln["quantityReceived"] == 0 for ln in o["lines"]))
    line = order["lines"][0]
    half = line["quantityOrdered"] / 2

    async def scenario(c: httpx.AsyncClient) -> None:
        headers = await login(c)
        rows = [{"receiverNumber": f"RC70000{n}", "lineNumber": line["lineNumber"],
                 "purchaseOrderNumber": order["purchaseOrderNumber"], "quantityReceived": qty}
                for n, qty in ((1, half), (2, half), (3, 1))]
        body = (await c.post(RECEIPTS, headers=headers, json={"purchaseOrderReceipts": rows})).json()
        assert body["submitResult"]["errors"] == [{
            "index": 2, "fieldName": "quantityReceived", "severity": "error",
            "message": "Quantity received exceeds the quantity open on the purchase order line"}]
        ok = (await c.post(RECEIPTS, headers=headers, json={"purchaseOrderReceipts": rows[:2]})).json()
        assert ok["submitResult"]["success"] is True
    run(box, scenario)
    after = store.get("purchaseOrders", order["purchaseOrderNumber"])
    assert after is not None and after["lines"][0]["quantityReceived"] == line["quantityOrdered"]
    assert len([r for r in store.all("purchaseOrderReceipts") if r["receiverNumber"].startswith("RC70000")]) == 2
