"""Procurement rules: purchase orders, posted receipts and supplier invoices with QAD AP's three-way match.

A receipt exists only once posted; posting raises its PO line's quantityReceived (and re-stamps the PO).
An invoice's ``matchStatus`` is "mismatch" when a line can never match (unknown PO line, unit cost off by
more than ``match_price_tolerance``, more than ordered, or not yet received on a PO that is no longer
open), else "pending" while posted receipts do not cover an invoiced quantity, else "matched";
``matchedReceivers`` lists the receipts of its PO lines once matched. Whenever either changes, the invoice
gets a new lastModifiedDate so incremental readers see it.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from ml_connector.sandbox.core import is_date
from ml_connector.sandbox.qad import data
from ml_connector.sandbox.qad import procurement_data as pd
from ml_connector.sandbox.qad.checks import duplicate_errors, item_errors

if TYPE_CHECKING:
    from ml_connector.sandbox.qad.store import QadStore

PO, RCV, INV = "purchaseOrders", "purchaseOrderReceipts", "supplierInvoices"
ENTITIES = frozenset({PO, RCV, INV})
Errors = list[tuple[str, str]]


# ---- keys ------------------------------------------------------------------------------------------------

def fill_key(store: QadStore, entity: str, record: dict[str, Any], reserved: set[str]) -> None:
    """Compose ``receiptId`` / ``invoiceId`` from their parts, numbering new receivers and vouchers."""
    if entity == RCV and "receiptId" not in record:
        if record.get("receiverNumber") is None:
            record["receiverNumber"] = pd.receiver_number(_next_receiver(store, reserved))
        receiver, line = record["receiverNumber"], record.get("lineNumber")
        if isinstance(receiver, str) and isinstance(line, int) and not isinstance(line, bool):
            record["receiptId"] = pd.receipt_id(receiver, line)
    elif entity == INV and "invoiceId" not in record:
        record.setdefault("entityCode", store.entity_code)
        record.setdefault("journalCode", pd.JOURNAL)
        if record.get("invoiceYear") is None:
            when = record.get("invoiceDate")
            when = when if isinstance(when, str) and is_date(when) else data.date_of(store.clock())
            record["invoiceYear"] = int(when[:4])
        if record.get("voucherNumber") is None:
            record["voucherNumber"] = _next_voucher(store, reserved)
        parts = (record["entityCode"], record["invoiceYear"], record["journalCode"], record["voucherNumber"])
        if isinstance(parts[0], str) and isinstance(parts[1], int) and isinstance(parts[2], str) \
                and isinstance(parts[3], int):
            record["invoiceId"] = pd.invoice_id(*parts)


def _next_receiver(store: QadStore, reserved: set[str]) -> int:
    """Index of the next free receiver number (after seeded, posted and same-batch receivers)."""
    used = [getattr(store.tables[RCV].seeder, "receivers", 0) - 1]
    for key in [*store.tables[RCV].changed, *reserved]:
        parsed = pd.parse_receipt_id(key)
        if parsed is not None:
            used.append(parsed[0])
    return max(used) + 1


def _next_voucher(store: QadStore, reserved: set[str]) -> int:
    used = [store.tables[INV].seeded]
    for key in [*store.tables[INV].changed, *reserved]:
        parsed = pd.parse_invoice_id(key)
        if parsed is not None:
            used.append(parsed[3])
    return max(used) + 1


# ---- validation ----------------------------------------------------------------------------------------

def reference_errors(store: QadStore, entity: str, merged: Mapping[str, Any], payload: Mapping[str, Any],
                     existing: Mapping[str, Any] | None, config: Mapping[str, Any], batch: dict[str, Any]
                     ) -> Errors:
    """Business errors of a purchase order, receipt or supplier invoice about to be saved."""
    if entity == RCV:
        pending: dict[tuple[str, int], float] = batch.setdefault("received", {})
        problems = _receipt_errors(store, merged, existing, config, pending)
        if not problems:
            key = (merged["purchaseOrderNumber"], merged["lineNumber"])
            pending[key] = pending.get(key, 0.0) + float(merged["quantityReceived"])
        return problems
    errors: Errors = []
    if existing is None or "supplierCode" in payload:
        errors += _supplier_errors(store, merged["supplierCode"], config)
    if entity == PO and "lines" in payload:
        errors += _po_line_errors(store, merged["lines"], existing, config)
    if entity == INV:
        errors += _invoice_errors(merged)
        if not merged.get("lines"):
            errors.append(("lines", "A supplier invoice needs at least one purchase order line"))
        elif "lines" in payload:
            errors += _invoice_line_errors(store, merged)
    return errors


def _supplier_errors(store: QadStore, code: str, config: Mapping[str, Any]) -> Errors:
    supplier = store.peek("supplierV2s", code)
    if supplier is None:
        return [("supplierCode", f"Supplier '{code}' does not exist")]
    if config["enforce_active_references"] and not supplier.get("isActive", True):
        return [("supplierCode", f"Supplier '{code}' is inactive")]
    return []


def _po_line_errors(store: QadStore, lines: list[dict[str, Any]], existing: Mapping[str, Any] | None,
                    config: Mapping[str, Any]) -> Errors:
    received = _received(existing)
    errors = duplicate_errors(lines, "lines", "lineNumber", "Duplicate line number")
    numbers = set()
    for k, line in enumerate(lines):
        number = line.get("lineNumber", k + 1)
        numbers.add(number)
        errors += item_errors(store, f"lines[{k}].itemCode", line["itemCode"], config)
        if line["quantityOrdered"] <= 0:
            errors.append((f"lines[{k}].quantityOrdered", "Quantity ordered must be greater than 0"))
        current = received.get(number, 0.0)
        if line.get("quantityReceived", current) != current:
            errors.append((f"lines[{k}].quantityReceived", "Quantity received is maintained by receipts"))
        elif line["quantityOrdered"] < current:
            errors.append((f"lines[{k}].quantityOrdered", "Quantity ordered is less than the quantity received"))
    errors += [("lines", f"Line {n} has receipts and cannot be removed")
               for n, qty in received.items() if qty > 0 and n not in numbers]
    return errors


def _receipt_errors(store: QadStore, receipt: Mapping[str, Any], existing: Mapping[str, Any] | None,
                    config: Mapping[str, Any], pending: Mapping[tuple[str, int], float]) -> Errors:
    """A receipt posts once, against an open PO line, for its item, within the open quantity."""
    if existing is not None:
        return [("receiptId", "Posted receipts cannot be changed")]
    if receipt["receiptId"] != pd.receipt_id(receipt["receiverNumber"], receipt["lineNumber"]):
        return [("receiptId", "receiptId must be <receiverNumber>-<lineNumber>")]
    number, line_number = receipt["purchaseOrderNumber"], receipt["lineNumber"]
    order = store.peek(PO, number)
    if order is None:
        return [("purchaseOrderNumber", f"Purchase order '{number}' does not exist")]
    if order["status"] != "open":
        return [("purchaseOrderNumber", f"Purchase order {number} is {order['status']}")]
    line = _line(order, line_number)
    if line is None:
        return [("lineNumber", f"Purchase order {number} has no line {line_number}")]
    errors: Errors = []
    if receipt.get("itemCode", line["itemCode"]) != line["itemCode"]:
        errors.append(("itemCode", f"Item '{receipt['itemCode']}' is not the item of purchase order line "
                                   f"{line_number}"))
    quantity = receipt["quantityReceived"]
    if quantity <= 0:
        errors.append(("quantityReceived", "Quantity received must be greater than 0"))
    elif quantity > line["quantityOrdered"] - line["quantityReceived"] - pending.get((number, line_number), 0.0) \
            and not config["allow_over_receipt"]:
        errors.append(("quantityReceived", "Quantity received exceeds the quantity open on the purchase order line"))
    return errors


def _invoice_errors(invoice: Mapping[str, Any]) -> Errors:
    parts = (invoice.get("entityCode"), invoice.get("invoiceYear"), invoice.get("journalCode"),
             invoice.get("voucherNumber"))
    if None not in parts and invoice["invoiceId"] != pd.invoice_id(*parts):  # type: ignore[arg-type]
        return [("invoiceId", "invoiceId must be <entityCode>-<invoiceYear>-<journalCode>-<voucherNumber>")]
    return []


def _invoice_line_errors(store: QadStore, invoice: Mapping[str, Any]) -> Errors:
    errors: Errors = []
    for k, line in enumerate(invoice["lines"]):
        number = line["purchaseOrderNumber"]
        order = store.peek(PO, number)
        if order is None:
            errors.append((f"lines[{k}].purchaseOrderNumber", f"Purchase order '{number}' does not exist"))
        elif order["supplierCode"] != invoice["supplierCode"]:
            errors.append((f"lines[{k}].purchaseOrderNumber",
                           f"Purchase order {number} belongs to supplier {order['supplierCode']}"))
        elif _line(order, line["poLineNumber"]) is None:
            errors.append((f"lines[{k}].poLineNumber", f"Purchase order {number} has no line {line['poLineNumber']}"))
    return errors


# ---- derived fields ------------------------------------------------------------------------------------

def complete(store: QadStore, entity: str, record: dict[str, Any]) -> None:
    """Defaults and derived fields of a procurement record about to be saved."""
    today = data.date_of(store.clock())
    if entity == PO:
        record.setdefault("orderDate", today)
        received = _received(store.peek(PO, record["purchaseOrderNumber"]))
        for n, line in enumerate(record["lines"]):
            item = store.peek("items", line.get("itemCode", "")) or {}
            line.setdefault("lineNumber", n + 1)
            line.setdefault("quantityReceived", received.get(line["lineNumber"], 0.0))
            line.setdefault("unitCost", item.get("listPrice", 0.0))
            line.setdefault("siteCode", item.get("siteCode", "10-100"))
            line.setdefault("dueDate", record.get("dueDate"))
        record["totalAmount"] = pd.po_total(record["lines"])
    elif entity == RCV:
        order = store.peek(PO, record.get("purchaseOrderNumber", "")) or {"lines": []}
        line = _line(order, record.get("lineNumber")) or {}
        record.setdefault("itemCode", line.get("itemCode"))
        record.setdefault("siteCode", line.get("siteCode", "10-100"))
        record.setdefault("receiptDate", today)
    elif entity == INV:
        record.setdefault("totalAmount", pd.invoice_total(record["lines"], record["taxAmount"]))
        record["matchStatus"], record["matchedReceivers"] = match(store, record)


def rederive(store: QadStore, entity: str, record: dict[str, Any], changes: Mapping[str, Any]) -> None:
    """Derived fields after an unvalidated (admin) patch, unless the patch sets them."""
    if entity == PO and "lines" in changes and "totalAmount" not in changes:
        record["totalAmount"] = pd.po_total(record["lines"])
    if entity == INV and "matchStatus" not in changes:
        record["matchStatus"], record["matchedReceivers"] = match(store, record)


def match(store: QadStore, invoice: Mapping[str, Any]) -> tuple[str, list[str]]:
    """(matchStatus, matchedReceivers) of an invoice against the current PO lines and posted receipts."""
    return match_against(invoice, lambda number: store.peek(PO, number),
                         lambda number, line: receipts_of(store, number, line),
                         float(store.config.get("match_price_tolerance", 0.0)))


def match_against(invoice: Mapping[str, Any], order_of: Callable[[str], Mapping[str, Any] | None],
                  receipts: Callable[[str, int], list[str]], tolerance: float) -> tuple[str, list[str]]:
    """The three-way match over any view of the data (the store's, or the seed's for seeded invoices)."""
    statuses = set()
    receivers: set[str] = set()
    for line in invoice.get("lines", []):
        order = order_of(line.get("purchaseOrderNumber", ""))
        po_line = _line(order, line.get("poLineNumber")) if order is not None else None
        if order is None or po_line is None:
            statuses.add("mismatch")
            continue
        if abs(float(line["unitCost"]) - float(po_line["unitCost"])) > tolerance + 1e-9 \
                or line["quantity"] > po_line["quantityOrdered"]:
            statuses.add("mismatch")
        elif po_line["quantityReceived"] < line["quantity"]:
            statuses.add("pending" if order["status"] == "open" else "mismatch")
        else:
            statuses.add("matched")
        receivers.update(receipts(order["purchaseOrderNumber"], po_line["lineNumber"]))
    if not statuses:
        return "pending", []  # nothing to match yet
    for status in ("mismatch", "pending"):
        if status in statuses:
            return status, []
    return "matched", sorted(receivers)


def receipts_of(store: QadStore, number: str, line_number: int) -> list[str]:
    """Ids of the posted receipts of one PO line."""
    table = store.tables[RCV]
    found = set()
    i = pd.po_index(number)
    if i is not None:
        key = pd.receipt_id(pd.receiver_number(i), line_number)
        if table.seeder.ms(key) is not None:
            found.add(key)
    found.update(key for key, r in table.changed.items()
                 if r.get("purchaseOrderNumber") == number and r.get("lineNumber") == line_number)
    return sorted(found)


# ---- side effects --------------------------------------------------------------------------------------

def after_save(store: QadStore, entity: str, record: Mapping[str, Any], previous: Mapping[str, Any] | None,
               user: str) -> None:
    """A posted receipt raises its PO line (re-stamping the PO); a changed PO re-matches its invoices."""
    if entity == RCV:
        _post(store, record, previous, user)
    elif entity == PO:
        rematch(store, record["purchaseOrderNumber"], user)


def _post(store: QadStore, receipt: Mapping[str, Any], previous: Mapping[str, Any] | None, user: str) -> None:
    delta = float(receipt.get("quantityReceived", 0.0))
    if previous is not None and (previous.get("purchaseOrderNumber"), previous.get("lineNumber")) == (
            receipt.get("purchaseOrderNumber"), receipt.get("lineNumber")):
        delta -= float(previous.get("quantityReceived", 0.0))
    current = store.peek(PO, receipt.get("purchaseOrderNumber", ""))
    if current is None or delta == 0:
        return
    order = copy.deepcopy(current)
    line = _line(order, receipt.get("lineNumber"))
    if line is None:
        return
    line["quantityReceived"] = line["quantityReceived"] + delta
    store.save(PO, order, None, user, "U", current)


def rematch(store: QadStore, number: str, user: str) -> None:
    """Re-evaluate every invoice billing PO ``number``; re-stamp those whose match changed."""
    table = store.tables[INV]
    keys = [key for key, inv in table.changed.items()
            if any(ln.get("purchaseOrderNumber") == number for ln in inv.get("lines", []))]
    i = pd.po_index(number)
    seeder = table.seeder
    if i is not None and i < table.seeded and hasattr(seeder, "key_of"):
        key = seeder.key_of(i)
        if key not in table.changed:
            keys.append(key)
    for key in keys:
        invoice = store.peek(INV, key)
        if invoice is None or not any(ln.get("purchaseOrderNumber") == number for ln in invoice["lines"]):
            continue
        status, receivers = match(store, invoice)
        if (status, receivers) != (invoice.get("matchStatus"), invoice.get("matchedReceivers")):
            updated = copy.deepcopy(invoice)
            updated["matchStatus"], updated["matchedReceivers"] = status, receivers
            store.save(INV, updated, None, user, "U", invoice)


def post_receipt(store: QadStore, number: str, fields: Mapping[str, Any]) -> dict[str, Any]:
    """Post a receipt for PO ``number`` without API validation (KeyError: no PO; ValueError: no line)."""
    order = store.peek(PO, number)
    if order is None:
        raise KeyError(number)
    if _line(order, fields.get("lineNumber")) is None:
        raise ValueError(f"Purchase order {number} has no line {fields.get('lineNumber')}")
    return store.insert(RCV, {**fields, "purchaseOrderNumber": number})


def _line(order: Mapping[str, Any], number: Any) -> dict[str, Any] | None:
    return next((ln for ln in order.get("lines", []) if ln.get("lineNumber") == number), None)


def _received(order: Mapping[str, Any] | None) -> dict[int, float]:
    return {} if order is None else {ln["lineNumber"]: ln.get("quantityReceived", 0.0) for ln in order["lines"]}
