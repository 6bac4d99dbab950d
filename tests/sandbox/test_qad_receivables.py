"""Tests of the QAD sandbox's receivables: customer invoices, credit notes and applied payments."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import date, timedelta
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
INVOICES, CREDITS, PAYMENTS = f"{API}/customerInvoices", f"{API}/creditNotes", f"{API}/payments"
SCOPE = {"x-qad-workspace-id": "10USA_10USACO"}
LOGIN = {"client_id": "ml-connector", "grant_type": "password", "username": "demo", "password": "demo-password"}
SYSTEM = {"uri", "domainCode", "lastModifiedDate", "lastModifiedUser", "concurrencyHash", "dataOperation"}


def run(sandbox: QadSandbox, scenario: Callable[[httpx.AsyncClient], Awaitable[T]]) -> T:
    async def go() -> T:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=sandbox), base_url="http://qad.test") as c:
            return await scenario(c)
    return asyncio.run(go())


async def login(client: httpx.AsyncClient) -> dict[str, str]:
    response = await client.post("/clouderp/oauth/token", params=LOGIN)
    return {"Authorization": f"Bearer {response.json()['access_token']}", **SCOPE}


def errors_of(body: dict[str, Any]) -> list[tuple[int, str, str]]:
    return [(e["index"], e["fieldName"], e["message"]) for e in body["submitResult"]["errors"]]


@pytest.fixture()
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture()
def box(clock: ManualClock) -> QadSandbox:
    sandbox = create_qad_sandbox(customers=20, items=40, sales_orders=10, customer_invoices=12, credit_notes=6,
                                 payments=4, clock=clock)
    sandbox.config["rate_per_second"] = 10_000
    return sandbox


def active_customer(box: QadSandbox, currency: str | None = None, skip: str = "") -> dict[str, Any]:
    return next(c for c in box.store.all("customerV2s") if c["isActive"] and c["customerCode"] != skip
                and currency in (None, c["currencyCode"]))


def any_item(box: QadSandbox) -> dict[str, Any]:
    return box.store.all("items")[0]


def new_invoice(customer: dict[str, Any], item: dict[str, Any], number: str = "MAG-000000101",
                **extra: Any) -> dict[str, Any]:
    """An invoice of 2 x 10.00 + 5.00 freight + 1.40 tax = 26.40."""
    return {"invoiceNumber": number, "customerCode": customer["customerCode"], "invoiceDate": "2026-01-05",
            "currencyCode": customer["currencyCode"], "taxAmount": 1.4, "freightAmount": 5.0, "totalAmount": 26.4,
            "lines": [{"itemCode": item["itemCode"], "quantity": 2, "unitPrice": 10.0}], **extra}


def new_credit(invoice: dict[str, Any], item: dict[str, Any], number: str, amount: float,
               **extra: Any) -> dict[str, Any]:
    """A credit note of one line worth ``amount``, no tax."""
    return {"creditNoteNumber": number, "customerCode": invoice["customerCode"],
            "invoiceNumber": invoice["invoiceNumber"], "currencyCode": invoice["currencyCode"],
            "totalAmount": amount, "lines": [{"itemCode": item["itemCode"], "quantity": 1, "unitPrice": amount}],
            **extra}


# ---- seeding -----------------------------------------------------------------------------------------

def test_defaults_seed_no_receivables_so_existing_counts_stay() -> None:
    plain = create_qad_sandbox()
    assert [plain.store.count(e) for e in ("customerInvoices", "creditNotes", "payments")] == [0, 0, 0]
    with pytest.raises(ValueError, match="credit note"):
        create_qad_sandbox(customer_invoices=2, credit_notes=3)
    with pytest.raises(ValueError, match="customer and one item"):
        create_qad_sandbox(customers=0, customer_invoices=1)


def test_seeded_receivables_are_consistent_and_deterministic(box: QadSandbox, clock: ManualClock) -> None:
    store = box.store
    invoices = store.all("customerInvoices")
    credits, payments = store.all("creditNotes"), store.all("payments")
    assert (len(invoices), len(credits), len(payments)) == (12, 6, 4)
    assert sorted(i["invoiceNumber"] for i in invoices)[:2] == ["IN0000001", "IN0000002"]
    for invoice in invoices:
        customer = store.get("customerV2s", invoice["customerCode"])
        assert customer is not None and customer["isActive"]
        lines = invoice["lines"]
        assert all(ln["amount"] == round(ln["quantity"] * ln["unitPrice"], 2) and store.exists("items", ln["itemCode"])
                   for ln in lines) and lines
        assert invoice["totalAmount"] == round(sum(ln["amount"] for ln in lines) + invoice["freightAmount"]
                                               + invoice["taxAmount"], 2)
        if invoice["salesOrderNumber"] is not None:
            order = store.get("salesOrders", invoice["salesOrderNumber"])
            assert order is not None and order["customerCode"] == invoice["customerCode"]
            assert order["currencyCode"] == invoice["currencyCode"] and order["status"] != "cancelled"
        mine_c = [c for c in credits if c["invoiceNumber"] == invoice["invoiceNumber"]]
        mine_p = [p for p in payments if p["invoiceNumber"] == invoice["invoiceNumber"]]
        credited = round(sum(c["totalAmount"] for c in mine_c), 2)
        paid = round(sum(p["amount"] for p in mine_p), 2)
        assert (invoice["creditedAmount"], invoice["paidAmount"]) == (credited, paid)
        assert invoice["balance"] == round(invoice["totalAmount"] - credited - paid, 2) >= 0
        assert invoice["status"] == ("open" if invoice["balance"] > 0 else "paid" if paid else "cancelled")
        for doc in mine_c + mine_p:  # the last posting touched the invoice
            assert doc["customerCode"] == invoice["customerCode"] and doc["currencyCode"] == invoice["currencyCode"]
            assert doc["lastModifiedDate"] <= invoice["lastModifiedDate"]
    assert {i["status"] for i in invoices} == {"open", "paid", "cancelled"}
    assert any(i["salesOrderNumber"] for i in invoices) and any(i["salesOrderNumber"] is None for i in invoices)
    for credit in credits:
        assert credit["totalAmount"] == round(sum(ln["amount"] for ln in credit["lines"]) + credit["freightAmount"]
                                              + credit["taxAmount"], 2) > 0
    assert store.get("creditNotes", "CN0000001") == next(c for c in credits if c["creditNoteNumber"] == "CN0000001")
    again = create_qad_sandbox(customers=20, items=40, sales_orders=10, customer_invoices=12, credit_notes=6,
                               payments=4, clock=clock)
    assert again.store.all("customerInvoices") == invoices and again.store.all("payments") == payments


# ---- invoice writes ----------------------------------------------------------------------------------

def test_invoice_create_computes_balance_status_and_due_date(box: QadSandbox) -> None:
    customer, item = active_customer(box), any_item(box)
    terms = {"COD": 0, "15D": 15, "30D": 30, "45D": 45, "60D": 60, "2/10N30": 30}[customer["creditTermsCode"]]

    async def scenario(c: httpx.AsyncClient) -> None:
        headers = await login(c)
        sent = {"supplementaryMessages": [], "customerInvoices": [new_invoice(customer, item)]}
        body = (await c.post(INVOICES, headers=headers, json=sent)).json()
        assert body["submitResult"] == {"success": True, "errors": []}
        saved = body["customerInvoices"][0]
        assert {k: saved[k] for k in ("totalAmount", "balance", "status", "creditedAmount", "paidAmount",
                                      "salesOrderNumber", "externalReference", "dataOperation")} == {
            "totalAmount": 26.4, "balance": 26.4, "status": "open", "creditedAmount": 0.0, "paidAmount": 0.0,
            "salesOrderNumber": None, "externalReference": None, "dataOperation": "C"}
        assert saved["lines"] == [{"lineNumber": 1, "itemCode": item["itemCode"], "quantity": 2, "unitPrice": 10.0,
                                   "amount": 20.0}]
        assert saved["dueDate"] == (date(2026, 1, 5) + timedelta(days=terms)).isoformat()
        assert saved["uri"] == "urn:be:com.qad.financials.customerinvoice.ICustomerInvoice:10USA.MAG-000000101"
        got = (await c.get(f"{INVOICES}/MAG-000000101", headers=headers)).json()
        assert got == {"data": [saved]}
    run(box, scenario)


def test_invoice_business_errors_are_exact_and_the_batch_is_all_or_nothing(box: QadSandbox) -> None:
    store = box.store
    customer, item = active_customer(box), any_item(box)
    inactive = store.insert("customerV2s", {"customerCode": "COFF", "name": "Off", "isActive": False})
    order = next(o for o in store.all("salesOrders") if o["status"] != "cancelled"
                 and store.get("customerV2s", o["customerCode"])["isActive"])  # type: ignore[index]
    owner = store.get("customerV2s", order["customerCode"])
    assert owner is not None
    stranger = active_customer(box, order["currencyCode"], skip=order["customerCode"])
    seeded = {k: v for k, v in store.all("customerInvoices")[0].items()
              if k not in SYSTEM | {"status", "balance", "creditedAmount", "paidAmount"}}
    other_currency = "EUR" if owner["currencyCode"] != "EUR" else "USD"
    cancelled = store.insert("salesOrders", {**{k: v for k, v in order.items() if k not in SYSTEM},
                                             "salesOrderNumber": "SCANCEL1", "status": "cancelled"})

    async def scenario(c: httpx.AsyncClient) -> None:
        headers = await login(c)
        rows = [
            new_invoice({**customer, "customerCode": "C999999"}, item, "B-0"),
            new_invoice(stranger, item, "B-1", salesOrderNumber=order["salesOrderNumber"]),
            new_invoice(customer, item, "B-2", salesOrderNumber="S9999999"),
            new_invoice(customer, item, "B-3", totalAmount=30.0),
            new_invoice(customer, {"itemCode": "99-9999"}, "B-4"),
            new_invoice(customer, item, "B-5", externalReference="x" * 41),
            new_invoice(customer, item, "B-6", lines=[], totalAmount=6.4),
            new_invoice(customer, item, "B-7-" + "x" * 17),
            new_invoice(customer, item, "B-8", lines=[{"itemCode": item["itemCode"], "quantity": 2,
                                                       "unitPrice": 10.0, "amount": 25.0}], totalAmount=31.4),
            seeded,
            new_invoice(owner, item, "B-10", salesOrderNumber=order["salesOrderNumber"],
                        currencyCode=other_currency),
            new_invoice(inactive, item, "B-11", currencyCode="USD"),
            new_invoice(customer, item, "B-12", lines=[{"itemCode": item["itemCode"], "quantity": 0,
                                                        "unitPrice": 10.0}], totalAmount=6.4),
            new_invoice(customer, item, "B-13", dueDate="2026-01-04"),
            new_invoice(owner, item, "B-14", salesOrderNumber=cancelled["salesOrderNumber"]),
            new_invoice(customer, item, "B-OK"),
        ]
        response = await c.post(INVOICES, headers=headers, json={"customerInvoices": rows})
        assert response.status_code == 200
        body = response.json()
        assert body["submitResult"]["success"] is False and body["customerInvoices"] == []
        assert errors_of(body) == [
            (0, "customerCode", "Customer 'C999999' does not exist"),
            (1, "salesOrderNumber",
             f"Sales order {order['salesOrderNumber']} belongs to customer {order['customerCode']}"),
            (2, "salesOrderNumber", "Sales order 'S9999999' does not exist"),
            (3, "totalAmount", "Total amount 30.00 does not equal the line amounts plus freight and tax (26.40)"),
            (4, "lines[0].itemCode", "Item '99-9999' does not exist"),
            (5, "externalReference", "Value exceeds the maximum length of 40"),
            (6, "lines", "A customer invoice needs at least one line"),
            (7, "invoiceNumber", "Value exceeds the maximum length of 20"),
            (8, "lines[0].amount", "Line amount 25.00 is not quantity x unit price (20.00)"),
            (9, "invoiceNumber", "Record already exists"),
            (10, "currencyCode", f"Currency {other_currency} differs from the currency {order['currencyCode']} "
                                 f"of sales order {order['salesOrderNumber']}"),
            (11, "customerCode", "Customer 'COFF' is inactive"),
            (12, "lines[0].quantity", "Quantity must be greater than 0"),
            (13, "dueDate", "Due date is before the invoice date"),
            (14, "salesOrderNumber", "Sales order SCANCEL1 is cancelled"),
        ]
        assert (await c.get(f"{INVOICES}/B-OK", headers=headers)).status_code == 404
        assert (await c.post(INVOICES, headers=headers, json={"customerInvoices": [rows[-1]] * 101})).status_code == 400
    run(box, scenario)
    assert store.count("customerInvoices") == 12


def test_posted_invoices_and_credit_notes_change_only_references_and_dates(box: QadSandbox, clock: ManualClock
                                                                           ) -> None:
    customer, item = active_customer(box), any_item(box)

    async def scenario(c: httpx.AsyncClient) -> None:
        headers = await login(c)
        invoice = (await c.post(INVOICES, headers=headers, json={"customerInvoices": [
            new_invoice(customer, item)]})).json()["customerInvoices"][0]
        credit = (await c.post(CREDITS, headers=headers, json={"creditNotes": [
            new_credit(invoice, item, "CR-1", 6.4)]})).json()["creditNotes"][0]
        invoice = (await c.get(f"{INVOICES}/{invoice['invoiceNumber']}", headers=headers)).json()["data"][0]
        clock.advance(1)
        hash_ = invoice["concurrencyHash"]
        touched = {"invoiceNumber": invoice["invoiceNumber"], "concurrencyHash": hash_, "totalAmount": 30.0,
                   "taxAmount": 5.0, "lines": [{"itemCode": item["itemCode"], "quantity": 3, "unitPrice": 10.0}],
                   "customerCode": active_customer(box, customer["currencyCode"],
                                                   skip=customer["customerCode"])["customerCode"]}
        refused = (await c.post(INVOICES, headers=headers, json={"customerInvoices": [touched]})).json()
        assert errors_of(refused) == [
            (0, "totalAmount", "totalAmount cannot be changed on a posted customer invoice"),
            (0, "taxAmount", "taxAmount cannot be changed on a posted customer invoice"),
            (0, "lines", "lines cannot be changed on a posted customer invoice"),
            (0, "customerCode", "customerCode cannot be changed on a posted customer invoice"),
        ]
        echo = {k: v for k, v in invoice.items() if k not in SYSTEM - {"concurrencyHash"}}
        echo.update(externalReference="magento-invoice-101", dueDate="2026-03-31", status="paid", balance=0)
        echo["lines"] = [{k: v for k, v in ln.items() if k != "lineNumber"} for ln in echo["lines"]]
        saved = (await c.post(INVOICES, headers=headers, json={"customerInvoices": [echo]})).json()
        assert saved["submitResult"] == {"success": True, "errors": []}
        updated = saved["customerInvoices"][0]
        assert (updated["externalReference"], updated["dueDate"], updated["dataOperation"]) == (
            "magento-invoice-101", "2026-03-31", "U")
        assert (updated["status"], updated["balance"]) == ("open", 20.0)  # read-only fields are ignored
        stale = (await c.post(INVOICES, headers=headers, json={"customerInvoices": [
            {"invoiceNumber": invoice["invoiceNumber"], "concurrencyHash": hash_, "externalReference": "x"}]})).json()
        assert errors_of(stale) == [(0, "concurrencyHash", "Record changed by another user")]
        credit_touch = {"creditNoteNumber": "CR-1", "concurrencyHash": credit["concurrencyHash"], "totalAmount": 1.0,
                        "lines": [], "reason": "Damaged in transit", "externalReference": "magento-creditmemo-7"}
        refused2 = (await c.post(CREDITS, headers=headers, json={"creditNotes": [credit_touch]})).json()
        assert errors_of(refused2) == [
            (0, "totalAmount", "totalAmount cannot be changed on a posted credit note"),
            (0, "lines", "lines cannot be changed on a posted credit note"),
        ]
        ok = {k: v for k, v in credit_touch.items() if k not in {"totalAmount", "lines"}}
        saved2 = (await c.post(CREDITS, headers=headers, json={"creditNotes": [ok]})).json()
        assert saved2["creditNotes"][0]["reason"] == "Damaged in transit"
        after = (await c.get(f"{INVOICES}/{invoice['invoiceNumber']}", headers=headers)).json()["data"][0]
        assert after["balance"] == 20.0 and after["lastModifiedDate"] == updated["lastModifiedDate"]
        for path in (f"{INVOICES}/{invoice['invoiceNumber']}", f"{CREDITS}/CR-1", INVOICES):
            deleted = await c.delete(path, headers=headers)
            assert deleted.status_code == 405, path
    run(box, scenario)


# ---- credit notes and payments -----------------------------------------------------------------------

def test_credit_note_errors_are_exact_and_credits_in_one_batch_share_the_balance(box: QadSandbox) -> None:
    store = box.store
    customer, item = active_customer(box), any_item(box)
    other = active_customer(box, customer["currencyCode"], skip=customer["customerCode"])

    async def scenario(c: httpx.AsyncClient) -> None:
        headers = await login(c)
        invoice = (await c.post(INVOICES, headers=headers, json={"customerInvoices": [
            new_invoice(customer, item)]})).json()["customerInvoices"][0]
        number = invoice["invoiceNumber"]
        currency = "EUR" if customer["currencyCode"] != "EUR" else "USD"
        rows = [
            new_credit({**invoice, "invoiceNumber": "IN9999999"}, item, "E-0", 1.0),
            new_credit({**invoice, "customerCode": other["customerCode"]}, item, "E-1", 1.0),
            new_credit({**invoice, "currencyCode": currency}, item, "E-2", 1.0),
            new_credit(invoice, item, "E-3", 0.0, lines=[]),
            new_credit(invoice, item, "E-4", 30.0),
            new_credit(invoice, item, "E-5", 5.0, totalAmount=6.0),
            new_credit({**invoice, "customerCode": "C999999"}, item, "E-6", 1.0),
        ]
        body = (await c.post(CREDITS, headers=headers, json={"creditNotes": rows})).json()
        assert body["submitResult"]["success"] is False and body["creditNotes"] == []
        assert errors_of(body) == [
            (0, "invoiceNumber", "Customer invoice 'IN9999999' does not exist"),
            (1, "invoiceNumber", f"Customer invoice {number} belongs to customer {customer['customerCode']}"),
            (2, "currencyCode", f"Currency {currency} differs from the currency {customer['currencyCode']} "
                                f"of customer invoice {number}"),
            (3, "totalAmount", "Total amount must be greater than 0"),
            (4, "totalAmount", f"Total amount 30.00 exceeds the balance 26.40 of customer invoice {number}"),
            (5, "totalAmount", "Total amount 6.00 does not equal the line amounts plus freight and tax (5.00)"),
            (6, "customerCode", "Customer 'C999999' does not exist"),
            (6, "invoiceNumber", f"Customer invoice {number} belongs to customer {customer['customerCode']}"),
        ]
        pair = [new_credit(invoice, item, "P-1", 15.0), new_credit(invoice, item, "P-2", 15.0)]
        body2 = (await c.post(CREDITS, headers=headers, json={"creditNotes": pair})).json()
        assert errors_of(body2) == [
            (1, "totalAmount", f"Total amount 15.00 exceeds the balance 11.40 of customer invoice {number}")]
        assert store.get("customerInvoices", number) == invoice  # nothing posted: balance and stamp unchanged
        body3 = (await c.post(CREDITS, headers=headers, json={"creditNotes": [
            pair[0], new_credit(invoice, item, "P-3", 11.4)]})).json()
        assert body3["submitResult"] == {"success": True, "errors": []}
        saved = body3["creditNotes"][0]
        assert (saved["creditDate"], saved["taxAmount"], saved["freightAmount"], saved["reason"]) == (
            "2026-01-01", 0.0, 0.0, None)
        after = store.get("customerInvoices", number)
        assert after is not None and (after["balance"], after["creditedAmount"], after["status"]) == (
            0.0, 26.4, "cancelled")
    run(box, scenario)


def test_credit_and_payment_lower_the_balance_and_show_in_incremental_reads(box: QadSandbox, clock: ManualClock
                                                                            ) -> None:
    customer, item = active_customer(box), any_item(box)

    async def scenario(c: httpx.AsyncClient) -> None:
        headers = await login(c)
        invoice = (await c.post(INVOICES, headers=headers, json={"customerInvoices": [
            new_invoice(customer, item)]})).json()["customerInvoices"][0]
        number = invoice["invoiceNumber"]
        watermark = (await c.get(INVOICES, headers=headers, params={"pageSize": 1000})).json()["data"][-1][
            "lastModifiedDate"]
        assert watermark == invoice["lastModifiedDate"]
        clock.advance(60)
        credit = (await c.post(CREDITS, headers=headers, json={"creditNotes": [
            new_credit(invoice, item, "CR-9", 6.4)]})).json()["creditNotes"][0]
        since = {"modifiedSince": watermark, "sort": "lastModifiedDate,asc"}
        changed = (await c.get(INVOICES, headers=headers, params=since)).json()
        assert [i["invoiceNumber"] for i in changed["data"]] == [number]  # inclusive: the watermark row itself
        touched = changed["data"][0]
        assert (touched["balance"], touched["creditedAmount"], touched["status"]) == (20.0, 6.4, "open")
        assert parse_timestamp_ms(touched["lastModifiedDate"]) > parse_timestamp_ms(credit["lastModifiedDate"]) \
            > parse_timestamp_ms(watermark)
        assert touched["concurrencyHash"] != invoice["concurrencyHash"]
        assert touched["lastModifiedUser"] == "demo"
        credits = (await c.get(CREDITS, headers=headers, params={"modifiedSince": watermark})).json()["data"]
        assert [x["creditNoteNumber"] for x in credits] == ["CR-9"]
        clock.advance(60)
        too_much = await c.post(f"/_admin/customerInvoices/{number}/pay", json={"amount": 20.01})
        assert too_much.status_code == 400
        assert too_much.json() == {"error": f"Amount 20.01 exceeds the balance 20.00 of customer invoice {number}"}
        assert (await c.post("/_admin/customerInvoices/NOPE/pay", json={"amount": 1})).status_code == 404
        assert (await c.post(f"/_admin/customerInvoices/{number}/pay", json={"amount": 0})).status_code == 400
        paid = await c.post(f"/_admin/customerInvoices/{number}/pay", json={"amount": 20.0})
        assert paid.status_code == 201, paid.text
        payment = paid.json()
        assert {k: payment[k] for k in ("paymentNumber", "customerCode", "invoiceNumber", "paymentDate", "amount",
                                        "currencyCode", "lastModifiedUser")} == {
            "paymentNumber": "PY0000005", "customerCode": customer["customerCode"], "invoiceNumber": number,
            "paymentDate": "2026-01-01", "amount": 20.0, "currencyCode": customer["currencyCode"],
            "lastModifiedUser": "sandbox-admin"}
        final = (await c.get(f"{INVOICES}/{number}", headers=headers)).json()["data"][0]
        assert (final["balance"], final["paidAmount"], final["status"]) == (0.0, 20.0, "paid")
        assert final["lastModifiedDate"] > payment["lastModifiedDate"] > touched["lastModifiedDate"]
        listed = (await c.get(PAYMENTS, headers=headers, params={"modifiedSince": touched["lastModifiedDate"]})
                  ).json()["data"]
        assert [p["paymentNumber"] for p in listed] == ["PY0000005"]
        assert (await c.get(f"{PAYMENTS}/PY0000005", headers=headers)).json() == {"data": [payment]}
        refused = await c.post(PAYMENTS, headers=headers, json={"payments": [
            {**{k: v for k, v in payment.items() if k not in SYSTEM}, "paymentNumber": "PY7777777"}]})
        assert refused.status_code == 405 and refused.headers["allow"] == "GET"
        rows = (await c.get("/clouderp/api/qracore/browses", headers=headers, params={
            "browseId": "urn:browse:bebrowse:com.qad.erp.financials.customerInvoices", "page": 1,
            "pageAction": "first", "filter": f"invoiceNumber,eq,{number}"})).json()["data"]
        assert len(rows) == 1 and rows[0]["status"] == "paid" and "lines" not in rows[0]
    run(box, scenario)


def test_admin_patch_of_an_invoice_total_rederives_its_balance(box: QadSandbox) -> None:
    store = box.store
    invoice = next(i for i in store.all("customerInvoices") if i["status"] == "open" and i["creditedAmount"] > 0)
    patched = store.patch("customerInvoices", invoice["invoiceNumber"], {"totalAmount": invoice["totalAmount"] + 10})
    assert patched["balance"] == round(invoice["balance"] + 10, 2)
    inserted = store.insert("payments", {"invoiceNumber": invoice["invoiceNumber"], "amount": 10.0,
                                         "customerCode": invoice["customerCode"],
                                         "currencyCode": invoice["currencyCode"]})
    assert inserted["paymentNumber"] == "PY0000005" and inserted["paymentDate"] == "2026-01-01"
    after = store.get("customerInvoices", invoice["invoiceNumber"])
    assert after is not None and after["balance"] == invoice["balance"] and after["paidAmount"] == round(
        invoice["paidAmount"] + 10, 2)


# ---- the connector spec ------------------------------------------------------------------------------

@pytest.mark.parametrize(("entity", "path"), [("customer_invoice", "customerInvoices"),
                                              ("credit_note", "creditNotes"), ("payment", "payments")])
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
    read_only = {"status", "balance", "creditedAmount", "paidAmount"} | SYSTEM
    assert {n for n, d in spec["fields"].items() if d.get("writable") is False} == (
        read_only & set(spec["fields"]) if entity != "payment" else set(spec["fields"]))
    write = spec.get("write")
    if entity == "payment":
        assert write is None
    else:
        assert write is not None
        assert write["create"]["path"] == f"/api/erp/{path}" and write["create"]["batch"]["size"] == 100
        assert write["create"]["batch"]["atomic"] is True and write["update"]["fetch_existing"] is True


def test_an_invoice_of_a_sales_order_and_a_credit_note_of_an_invoice_take_the_customer_from_it(
        box: QadSandbox) -> None:
    """AR documents made from an order (or an invoice) are the sold-to customer's: a customerCode left out is the
    order's (the invoice's); one sent must still agree with it."""
    order = next(o for o in box.store.all("salesOrders") if o["status"] != "cancelled")
    item = any_item(box)

    async def scenario(c: httpx.AsyncClient) -> None:
        headers = await login(c)
        invoice = {k: v for k, v in new_invoice({"customerCode": "", "currencyCode": order["currencyCode"]}, item,
                                                salesOrderNumber=order["salesOrderNumber"]).items()
                   if k != "customerCode"}
        body = (await c.post(INVOICES, headers=headers,
                             json={"supplementaryMessages": [], "customerInvoices": [invoice]})).json()
        assert body["submitResult"] == {"success": True, "errors": []}
        assert body["customerInvoices"][0]["customerCode"] == order["customerCode"]
        credit = {k: v for k, v in new_credit(body["customerInvoices"][0], item, "CN-X-1", 5.0).items()
                  if k != "customerCode"}
        body = (await c.post(CREDITS, headers=headers,
                             json={"supplementaryMessages": [], "creditNotes": [credit]})).json()
        assert body["submitResult"] == {"success": True, "errors": []}
        assert body["creditNotes"][0]["customerCode"] == order["customerCode"]
        orphan = {k: v for k, v in new_invoice({"customerCode": "", "currencyCode": "USD"}, item, "MAG-2").items()
                  if k != "customerCode"}
        body = (await c.post(INVOICES, headers=headers,
                             json={"supplementaryMessages": [], "customerInvoices": [orphan]})).json()
        assert errors_of(body) == [(0, "customerCode", "Value is mandatory")]
    run(box, scenario)
