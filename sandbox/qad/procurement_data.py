"""Deterministic seed data for procurement: purchase orders, their receipts and supplier invoices.

Seeded procurement hangs together by index: receiver ``r`` received purchase order ``r`` (for
``r < receipts``) and invoice ``k`` bills purchase order ``k`` (for ``k < supplier_invoices``), so a PO
line's quantityReceived is the sum of its seeded receipts and invoices past the receipts are pending.
Every PO names an active supplier and ACTIVE items (probing forward from a random start).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

from ml_connector.sandbox.qad import data

JOURNAL = "APINV"
TAX_RATE = 0.07
LOCATIONS = ("RECV", "STOCK", "QA-HOLD")
_RECEIPT = re.compile(r"^RC(\d{6})-(\d+)$")
_INVOICE = re.compile(r"^(.+)-(\d{4})-([^-]+)-(\d{6})$")


def po_number(i: int) -> str:
    return f"P{i + 1:07d}"


def po_index(key: str) -> int | None:
    return data.prefixed_index(key, "P", po_number)


def receiver_number(r: int) -> str:
    return f"RC{r + 1:06d}"


def receipt_id(receiver: str, line: int) -> str:
    return f"{receiver}-{line}"


def parse_receipt_id(key: str) -> tuple[int, int] | None:
    """(receiver index, line number) of a seeded-style receipt id, or None."""
    m = _RECEIPT.match(key)
    return (int(m.group(1)) - 1, int(m.group(2))) if m else None


def invoice_id(entity_code: str, year: int, journal: str, voucher: int) -> str:
    return f"{entity_code}-{year}-{journal}-{voucher:06d}"


def parse_invoice_id(key: str) -> tuple[str, int, str, int] | None:
    m = _INVOICE.match(key)
    return (m.group(1), int(m.group(2)), m.group(3), int(m.group(4))) if m else None


@dataclass(frozen=True)
class Refs:
    """Stream bases and counts of the seeded data procurement refers to."""

    suppliers: tuple[int, int]
    items: tuple[int, int]
    receipts: int  # seeded receivers (receiver r received PO r)
    invoices: int  # seeded invoices (invoice k bills PO k)


def _probe(rng_start: int, count: int, build: Callable[[int], dict[str, Any]],
           ok: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
    """The first record from ``rng_start`` on (wrapping) that passes ``ok``; else the start record."""
    for step in range(count):
        record = build((rng_start + step) % count)
        if ok(record):
            return record
    return build(rng_start)


def purchase_order(base: int, i: int, lmd_ms: int, refs: Refs) -> dict[str, Any]:
    """Seeded purchase order ``i`` with quantityReceived from its seeded receipts."""
    rng = data.record_rng(base, i)
    sb, sn = refs.suppliers
    ib, n_items = refs.items
    supplier = _probe(rng.randrange(sn), sn, lambda j: data.supplier(sb, j), lambda s: bool(s["isActive"]))
    ordered = datetime.fromtimestamp(lmd_ms / 1000, tz=UTC).date() - timedelta(days=rng.randint(0, 30))
    due = ordered + timedelta(days=rng.randint(7, 45))
    lines = []
    for n in range(rng.randint(1, 4)):
        item = _probe(rng.randrange(n_items), n_items, lambda j: data.item(ib, j),
                      lambda it: it["itemStatus"] == "ACTIVE")
        lines.append({
            "lineNumber": n + 1,
            "itemCode": item["itemCode"],
            "quantityOrdered": float(rng.choice((5, 10, 12, 20, 25, 50, 100, 200))),
            "quantityReceived": 0.0,
            "unitCost": max(0.01, round(item["listPrice"] * rng.choice((0.55, 0.6, 0.65)), 2)),
            "siteCode": item["siteCode"],
            "dueDate": due.isoformat(),
        })
    plan = receipt_plan(base, i, lines) if i < refs.receipts else {}
    for line in lines:
        line["quantityReceived"] = plan.get(line["lineNumber"], 0.0)
    if plan and all(ln["quantityReceived"] == ln["quantityOrdered"] for ln in lines):
        status = "closed"
    elif not plan and i >= refs.invoices and rng.random() < 0.15:
        status = "cancelled"
    else:
        status = "open"
    return {
        "purchaseOrderNumber": po_number(i),
        "supplierCode": supplier["supplierCode"],
        "orderDate": ordered.isoformat(),
        "dueDate": due.isoformat(),
        "currencyCode": supplier["currencyCode"],
        "status": status,
        "totalAmount": po_total(lines),
        "lines": lines,
    }


def receipt_plan(base: int, i: int, lines: list[dict[str, Any]]) -> dict[int, float]:
    """Quantity received per line number by PO ``i``'s seeded receiver (lines left out: not received)."""
    rng = data.record_rng(base ^ 0x5EC0, i)
    plan = {}
    for line in lines:
        roll, qty = rng.random(), line["quantityOrdered"]
        if roll < 0.7:
            plan[line["lineNumber"]] = qty
        elif roll < 0.9:
            plan[line["lineNumber"]] = float(int(qty // 2))
    return plan


def receipt(order: dict[str, Any], order_ms: int, r: int, line_number: int) -> dict[str, Any]:
    """Seeded receipt line ``line_number`` of receiver ``r`` (which received ``order``)."""
    line = next(ln for ln in order["lines"] if ln["lineNumber"] == line_number)
    rng = data.record_rng(order_ms ^ 0xEC1, r * 100 + line_number)
    receiver = receiver_number(r)
    return {
        "receiptId": receipt_id(receiver, line_number),
        "receiverNumber": receiver,
        "lineNumber": line_number,
        "purchaseOrderNumber": order["purchaseOrderNumber"],
        "itemCode": line["itemCode"],
        "quantityReceived": line["quantityReceived"],
        "receiptDate": data.date_of(order_ms / 1000),
        "siteCode": line["siteCode"],
        "locationCode": rng.choice(LOCATIONS),
        "lotSerial": f"L{rng.randint(100000, 999999)}" if rng.random() < 0.5 else None,
    }


def supplier_invoice(base: int, k: int, order: dict[str, Any], entity_code: str, refs: Refs) -> dict[str, Any]:
    """Seeded invoice ``k`` billing every line of ``order`` (PO ``k``); some received ones misprice a line."""
    rng = data.record_rng(base, k)
    invoiced = date.fromisoformat(order["orderDate"]) + timedelta(days=rng.randint(1, 20))
    lines = [{"purchaseOrderNumber": order["purchaseOrderNumber"], "poLineNumber": ln["lineNumber"],
              "quantity": ln["quantityOrdered"], "unitCost": ln["unitCost"]} for ln in order["lines"]]
    if k < refs.receipts and k % 5 == 2:  # every fifth received invoice misprices its first line
        lines[0]["unitCost"] = round(lines[0]["unitCost"] * 1.02 + 0.01, 2)
    tax = round(sum(ln["quantity"] * ln["unitCost"] for ln in lines) * TAX_RATE, 2)
    return {
        "invoiceId": invoice_id(entity_code, invoiced.year, JOURNAL, k + 1),
        "entityCode": entity_code,
        "invoiceYear": invoiced.year,
        "journalCode": JOURNAL,
        "voucherNumber": k + 1,
        "supplierCode": order["supplierCode"],
        "supplierInvoiceReference": f"INV-{rng.randint(10000, 99999)}",
        "invoiceDate": invoiced.isoformat(),
        "dueDate": (invoiced + timedelta(days=30)).isoformat(),
        "currencyCode": order["currencyCode"],
        "totalAmount": invoice_total(lines, tax),
        "taxAmount": tax,
        "isApproved": False,
        "lines": lines,
    }


def po_total(lines: list[dict[str, Any]]) -> float:
    return round(sum(float(ln["quantityOrdered"]) * float(ln["unitCost"]) for ln in lines), 2)


def invoice_total(lines: list[dict[str, Any]], tax: float) -> float:
    return round(sum(float(ln["quantity"]) * float(ln["unitCost"]) for ln in lines) + float(tax), 2)
