"""Deterministic seed data for receivables: customer invoices, their credit notes and applied payments.

Seeded receivables hang together by index: invoice ``k`` bills sales order ``k`` when that order exists, is not
cancelled and names an active customer (else an active customer and items drawn at random); credit note ``k``
credits invoice ``k`` (``k < credit_notes``) and payment ``k`` pays invoice ``k`` (``k < payments``). Credit
notes are 10% price allowances on the first line, except a full credit (the invoice is cancelled) for every
second one past the paid invoices; every third payment pays half the open balance, the others all of it.
Each posting comes days after the one before, and an invoice's lastModifiedDate is that of its last posting.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

from ml_connector.sandbox.qad import data

TAX_RATE = 0.07
DAY_MS = 86_400_000
TERMS_DAYS = {"COD": 0, "15D": 15, "30D": 30, "45D": 45, "60D": 60, "2/10N30": 30}
_FREIGHT = (0.0, 0.0, 9.95, 15.0, 25.0)
_NUMBER = re.compile(r"^([A-Z]{2})(\d{7,})$")


def invoice_number(k: int) -> str:
    return f"IN{k + 1:07d}"


def credit_note_number(k: int) -> str:
    return f"CN{k + 1:07d}"


def payment_number(k: int) -> str:
    return f"PY{k + 1:07d}"


def _index(key: str, prefix: str, fmt: Callable[[int], str]) -> int | None:
    m = _NUMBER.match(key)
    if not m or m.group(1) != prefix:
        return None
    k = int(m.group(2)) - 1
    return k if k >= 0 and fmt(k) == key else None


def invoice_index(key: str) -> int | None:
    return _index(key, "IN", invoice_number)


def credit_note_index(key: str) -> int | None:
    return _index(key, "CN", credit_note_number)


def payment_index(key: str) -> int | None:
    return _index(key, "PY", payment_number)


# ---- amounts shared by the seed and the business rules -------------------------------------------------

def line_amount(line: dict[str, Any]) -> float:
    """A line's amount: the one sent, else quantity x unit price to the cent."""
    if "amount" in line:
        return float(line["amount"])
    return round(float(line.get("quantity", 0)) * float(line.get("unitPrice", 0)), 2)


def document_total(document: dict[str, Any]) -> float:
    """Sum of the line amounts plus freight and tax, to the cent."""
    lines = document.get("lines") or []
    return round(sum(line_amount(ln) for ln in lines) + float(document.get("freightAmount") or 0.0)
                 + float(document.get("taxAmount") or 0.0), 2)


def due_date(invoice_date: str, terms: Any) -> str:
    """Due date from the customer's credit terms (unknown terms: 30 days)."""
    days = TERMS_DAYS.get(terms, 30) if isinstance(terms, str) else 30
    return (date.fromisoformat(invoice_date) + timedelta(days=days)).isoformat()


def derive(invoice: dict[str, Any]) -> None:
    """Balance and status of an invoice from its total and the credits and payments applied to it.

    Open while a balance is left; at zero it is "paid" when any payment was applied, else "cancelled"
    (credited in full).
    """
    paid = float(invoice.get("paidAmount") or 0.0)
    balance = round(float(invoice.get("totalAmount") or 0.0) - float(invoice.get("creditedAmount") or 0.0) - paid, 2)
    invoice["balance"] = balance
    invoice["status"] = "open" if balance > 0 else "paid" if paid > 0 else "cancelled"


# ---- seeded documents ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class Refs:
    """Stream bases and counts of the seeded data receivables refer to."""

    customers: tuple[int, int]
    items: tuple[int, int]
    orders: tuple[int, int]
    credits: int  # seeded credit notes (credit note k credits invoice k)
    payments: int  # seeded payments (payment k pays invoice k)


@dataclass(frozen=True)
class SeededReceivables:
    """Builds seeded invoice, credit note and payment ``k``; ``*_ms`` give their lastModifiedDate cheaply.

    A record is built from its invoice as posted, which is built once per record read.
    """

    refs: Refs
    invoice_base: int
    credit_base: int
    payment_base: int

    # -- posting times (epoch ms) ---------------------------------------------------------------------

    def posted_ms(self, k: int) -> int:
        """When invoice ``k`` was posted: days after its sales order, else a seeded time."""
        _order, order_ms = self._order(k)
        return self._posted_ms(k, order_ms)

    def credit_ms(self, k: int, posted_ms: int | None = None) -> int:
        base = self.posted_ms(k) if posted_ms is None else posted_ms
        return base + data.record_rng(self.credit_base, k).randint(1, 20) * DAY_MS

    def payment_ms(self, k: int, posted_ms: int | None = None) -> int:
        base = self.posted_ms(k) if posted_ms is None else posted_ms
        if k < self.refs.credits:
            base = self.credit_ms(k, base)
        return base + data.record_rng(self.payment_base, k).randint(1, 30) * DAY_MS

    def invoice_ms(self, k: int) -> int:
        """Invoice ``k``'s lastModifiedDate: that of its last posting (itself, its credit note or payment)."""
        if k < self.refs.payments:
            return self.payment_ms(k)
        return self.credit_ms(k) if k < self.refs.credits else self.posted_ms(k)

    def _posted_ms(self, k: int, order_ms: int | None) -> int:
        if order_ms is None:
            return data.seeded_lmd_ms(self.invoice_base, k)
        return order_ms + data.record_rng(self.invoice_base ^ 0xD1, k).randint(1, 10) * DAY_MS

    # -- documents -------------------------------------------------------------------------------------

    def posted_invoice(self, k: int) -> tuple[dict[str, Any], int]:
        """Invoice ``k`` as posted (nothing credited or paid) and its posting time."""
        rng = data.record_rng(self.invoice_base, k)
        order, order_ms = self._order(k)
        ms = self._posted_ms(k, order_ms)
        if order is not None:
            customer = data.customer(self.refs.customers[0], data.customer_index(order["customerCode"]) or 0)
            lines = [_line(n, ln["itemCode"], ln["quantityOrdered"], ln["netPrice"])
                     for n, ln in enumerate(order["lines"])]
        else:
            cb, cn = self.refs.customers
            customer = _probe(rng.randrange(cn), cn, lambda j: data.customer(cb, j), lambda c: bool(c["isActive"]))
            ib, n_items = self.refs.items
            lines = []
            for n in range(rng.randint(1, 4)):
                item = data.item(ib, rng.randrange(n_items))
                lines.append(_line(n, item["itemCode"], float(rng.choice((1, 2, 5, 10, 20, 50))), item["listPrice"]))
        invoiced = data.date_of(ms / 1000)
        invoice = {
            "invoiceNumber": invoice_number(k),
            "customerCode": customer["customerCode"],
            "salesOrderNumber": order["salesOrderNumber"] if order is not None else None,
            "invoiceDate": invoiced,
            "dueDate": due_date(invoiced, customer["creditTermsCode"]),
            "currencyCode": customer["currencyCode"],
            "totalAmount": 0.0,
            "taxAmount": round(sum(ln["amount"] for ln in lines) * TAX_RATE, 2),
            "freightAmount": rng.choice(_FREIGHT),
            "externalReference": f"WEB-{rng.randint(100000000, 999999999)}" if rng.random() < 0.5 else None,
            "status": "open",
            "balance": 0.0,
            "creditedAmount": 0.0,
            "paidAmount": 0.0,
            "lines": lines,
        }
        invoice["totalAmount"] = document_total(invoice)
        derive(invoice)
        return invoice, ms

    def credit_note(self, k: int) -> dict[str, Any]:
        """Credit note ``k`` (on invoice ``k``)."""
        return self._credit(k, *self.posted_invoice(k))

    def payment(self, k: int) -> dict[str, Any]:
        """Payment ``k`` (on invoice ``k``, after its credit note if any)."""
        invoice, ms = self.posted_invoice(k)
        credited = self._credit(k, invoice, ms)["totalAmount"] if k < self.refs.credits else 0.0
        return self._payment(k, invoice, ms, credited)

    def invoice(self, k: int) -> dict[str, Any]:
        """Invoice ``k`` with its seeded credit note and payment applied."""
        invoice, ms = self.posted_invoice(k)
        if k < self.refs.credits:
            invoice["creditedAmount"] = self._credit(k, invoice, ms)["totalAmount"]
        if k < self.refs.payments:
            invoice["paidAmount"] = self._payment(k, invoice, ms, invoice["creditedAmount"])["amount"]
        derive(invoice)
        return invoice

    def _credit(self, k: int, invoice: dict[str, Any], posted_ms: int) -> dict[str, Any]:
        rng = data.record_rng(self.credit_base, k)
        if k >= self.refs.payments and (k - self.refs.payments) % 2 == 1:
            lines, freight, tax, reason = copy.deepcopy(invoice["lines"]), invoice["freightAmount"], \
                invoice["taxAmount"], "Order cancelled"
        else:
            first = invoice["lines"][0]
            lines = [_line(0, first["itemCode"], first["quantity"], max(0.01, round(first["unitPrice"] * 0.1, 2)))]
            freight, tax, reason = 0.0, round(lines[0]["amount"] * TAX_RATE, 2), "Price allowance"
        credit = {
            "creditNoteNumber": credit_note_number(k),
            "customerCode": invoice["customerCode"],
            "invoiceNumber": invoice["invoiceNumber"],
            "creditDate": data.date_of(self.credit_ms(k, posted_ms) / 1000),
            "currencyCode": invoice["currencyCode"],
            "totalAmount": 0.0,
            "taxAmount": tax,
            "freightAmount": freight,
            "externalReference": f"RMA-{rng.randint(10000, 99999)}" if rng.random() < 0.5 else None,
            "reason": reason,
            "lines": lines,
        }
        credit["totalAmount"] = document_total(credit)
        return credit

    def _payment(self, k: int, invoice: dict[str, Any], posted_ms: int, credited: float) -> dict[str, Any]:
        balance = round(invoice["totalAmount"] - credited, 2)
        return {
            "paymentNumber": payment_number(k),
            "customerCode": invoice["customerCode"],
            "invoiceNumber": invoice["invoiceNumber"],
            "paymentDate": data.date_of(self.payment_ms(k, posted_ms) / 1000),
            "amount": round(balance / 2, 2) if k % 3 == 1 else balance,
            "currencyCode": invoice["currencyCode"],
        }

    def _order(self, k: int) -> tuple[dict[str, Any] | None, int | None]:
        """Sales order ``k`` and its seeded time when an invoice may bill it (not cancelled, active customer)."""
        ob, on = self.refs.orders
        if k >= on:
            return None, None
        ms = data.seeded_lmd_ms(ob, k)
        order = data.sales_order(ob, k, ms, self.refs.customers, self.refs.items)
        customer = data.customer(self.refs.customers[0], data.customer_index(order["customerCode"]) or 0)
        if order["status"] == "cancelled" or not customer["isActive"]:
            return None, None
        return order, ms


def _line(n: int, item: str, quantity: float, unit_price: float) -> dict[str, Any]:
    return {"lineNumber": n + 1, "itemCode": item, "quantity": quantity, "unitPrice": unit_price,
            "amount": round(quantity * unit_price, 2)}


def _probe(start: int, count: int, build: Callable[[int], dict[str, Any]],
           ok: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
    """The first record from ``start`` on (wrapping) that passes ``ok``; else the start record."""
    for step in range(count):
        record = build((start + step) % count)
        if ok(record):
            return record
    return build(start)

