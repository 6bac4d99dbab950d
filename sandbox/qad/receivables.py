"""Receivables rules: customer invoices, credit notes and applied payments (QAD Financials AR).

An invoice's total is its line amounts plus freight and tax. Once posted, an invoice or credit note keeps its
amounts, lines and parties: an update may only change ``MUTABLE`` fields (sending a field unchanged is not a
change). A posted credit note or payment lowers its invoice's ``balance`` through ``creditedAmount`` /
``paidAmount`` and re-stamps the invoice, so incremental readers see the new balance and status.
Payments are read-only over the API; the admin route applies one (``apply_payment``).
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from ml_connector.sandbox.core import is_date
from ml_connector.sandbox.qad import data
from ml_connector.sandbox.qad import receivables_data as rd
from ml_connector.sandbox.qad.checks import duplicate_errors

if TYPE_CHECKING:
    from ml_connector.sandbox.qad.store import QadStore

INV, CN, PAY = "customerInvoices", "creditNotes", "payments"
ENTITIES = frozenset({INV, CN, PAY})
MUTABLE = {INV: frozenset({"externalReference", "dueDate"}), CN: frozenset({"externalReference", "reason"}),
           PAY: frozenset()}
KEYS = {INV: "invoiceNumber", CN: "creditNoteNumber", PAY: "paymentNumber"}
_NAMES = {INV: "customer invoice", CN: "credit note", PAY: "payment"}
_CENT = 0.005
Errors = list[tuple[str, str]]


# ---- keys ------------------------------------------------------------------------------------------------

def fill_key(store: QadStore, entity: str, record: dict[str, Any], reserved: Iterable[str]) -> None:
    """Number a payment posted without a paymentNumber (after seeded, posted and same-batch payments); an
    invoice of a sales order (a credit note of an invoice) sent without a customer is the sold-to customer's."""
    if "customerCode" not in record:
        parent = (store.peek("salesOrders", str(record.get("salesOrderNumber") or "")) if entity == INV
                  else store.peek(INV, str(record.get("invoiceNumber") or "")) if entity == CN else None)
        if parent is not None:
            record["customerCode"] = parent["customerCode"]
    if entity == PAY and record.get("paymentNumber") is None:
        used = [store.tables[PAY].seeded - 1]
        for key in [*store.tables[PAY].changed, *reserved]:
            k = rd.payment_index(key)
            if k is not None:
                used.append(k)
        record["paymentNumber"] = rd.payment_number(max(used) + 1)


# ---- validation ----------------------------------------------------------------------------------------

def reference_errors(store: QadStore, entity: str, merged: Mapping[str, Any], payload: Mapping[str, Any],
                     existing: Mapping[str, Any] | None, config: Mapping[str, Any], batch: dict[str, Any]
                     ) -> Errors:
    """Business errors of an invoice, credit note or payment about to be saved.

    ``batch`` carries the credits of earlier valid records of the same submit, so that together they may not
    exceed an invoice's balance.
    """
    if existing is not None:
        return _posted_errors(entity, payload, existing) + _due_errors(entity, merged)
    errors = _customer_errors(store, merged["customerCode"], config, active=entity == INV)
    if entity == INV:
        errors += _order_errors(store, merged)
    else:
        errors += _target_errors(store, merged)
    if entity == PAY:
        return errors + _amount_errors(store, merged, "amount", batch)
    if entity == INV and not merged.get("lines"):
        errors.append(("lines", "A customer invoice needs at least one line"))
    errors += _line_errors(store, merged.get("lines") or [], config)
    errors += _total_errors(merged) + _due_errors(entity, merged)
    if entity == CN:
        errors += _amount_errors(store, merged, "totalAmount", batch)
    if not errors and entity == CN:
        pending: dict[str, float] = batch.setdefault("credited", {})
        pending[merged["invoiceNumber"]] = pending.get(merged["invoiceNumber"], 0.0) + float(merged["totalAmount"])
    return errors


def _posted_errors(entity: str, payload: Mapping[str, Any], existing: Mapping[str, Any]) -> Errors:
    """A posted document keeps everything but its ``MUTABLE`` fields; an unchanged echo is accepted."""
    errors = []
    for name, value in payload.items():
        if name == KEYS[entity] or name in MUTABLE[entity]:
            continue
        current = existing.get(name)
        sent = _complete_lines(copy.deepcopy(value)) if name == "lines" and isinstance(value, list) else value
        if sent != current:
            errors.append((name, f"{name} cannot be changed on a posted {_NAMES[entity]}"))
    return errors


def _customer_errors(store: QadStore, code: str, config: Mapping[str, Any], active: bool) -> Errors:
    customer = store.peek("customerV2s", code)
    if customer is None:
        return [("customerCode", f"Customer '{code}' does not exist")]
    if active and config["enforce_active_references"] and not customer.get("isActive", True):
        return [("customerCode", f"Customer '{code}' is inactive")]
    return []


def _order_errors(store: QadStore, invoice: Mapping[str, Any]) -> Errors:
    """An invoiced sales order must exist, be the customer's, not be cancelled and share the currency."""
    number = invoice.get("salesOrderNumber")
    if number is None:
        return []
    order = store.peek("salesOrders", number)
    if order is None:
        return [("salesOrderNumber", f"Sales order '{number}' does not exist")]
    if order["customerCode"] != invoice["customerCode"]:
        return [("salesOrderNumber", f"Sales order {number} belongs to customer {order['customerCode']}")]
    if order.get("status") == "cancelled":
        return [("salesOrderNumber", f"Sales order {number} is cancelled")]
    if order["currencyCode"] != invoice["currencyCode"]:
        return [("currencyCode", f"Currency {invoice['currencyCode']} differs from the currency "
                                 f"{order['currencyCode']} of sales order {number}")]
    return []


def _target_errors(store: QadStore, document: Mapping[str, Any]) -> Errors:
    """A credit note or payment names an existing invoice of the same customer, in its currency."""
    number = document["invoiceNumber"]
    invoice = store.peek(INV, number)
    if invoice is None:
        return [("invoiceNumber", f"Customer invoice '{number}' does not exist")]
    if invoice["customerCode"] != document["customerCode"]:
        return [("invoiceNumber", f"Customer invoice {number} belongs to customer {invoice['customerCode']}")]
    if invoice["currencyCode"] != document["currencyCode"]:
        return [("currencyCode", f"Currency {document['currencyCode']} differs from the currency "
                                 f"{invoice['currencyCode']} of customer invoice {number}")]
    return []


def _amount_errors(store: QadStore, document: Mapping[str, Any], field: str, batch: Mapping[str, Any]) -> Errors:
    """The amount is positive and at most what is left open on the invoice (after this batch's credits)."""
    amount = float(document[field])
    if amount <= 0:
        return [(field, f"{'Total amount' if field == 'totalAmount' else 'Amount'} must be greater than 0")]
    return _over_balance(store.peek(INV, document["invoiceNumber"]), amount, field,
                         batch.get("credited", {}))


def _over_balance(invoice: Mapping[str, Any] | None, amount: float, field: str,
                  pending: Mapping[str, float]) -> Errors:
    if invoice is None:
        return []
    number = invoice["invoiceNumber"]
    available = round(float(invoice["balance"]) - pending.get(number, 0.0), 2)
    if amount > available + _CENT:
        label = "Total amount" if field == "totalAmount" else "Amount"
        return [(field, f"{label} {amount:.2f} exceeds the balance {available:.2f} of customer invoice {number}")]
    return []


def _line_errors(store: QadStore, lines: list[dict[str, Any]], config: Mapping[str, Any]) -> Errors:
    errors = duplicate_errors(lines, "lines", "lineNumber", "Duplicate line number")
    for k, line in enumerate(lines):
        if store.peek("items", line["itemCode"]) is None:
            errors.append((f"lines[{k}].itemCode", f"Item '{line['itemCode']}' does not exist"))
        quantity, price = float(line["quantity"]), float(line["unitPrice"])
        if quantity <= 0:
            errors.append((f"lines[{k}].quantity", "Quantity must be greater than 0"))
        # A unit price to the cent leaves up to half a cent per unit between amount and quantity x price.
        if "amount" in line and config.get("enforce_line_amounts", True) \
                and abs(float(line["amount"]) - quantity * price) > _CENT * max(1.0, quantity) + 1e-9:
            errors.append((f"lines[{k}].amount",
                           f"Line amount {float(line['amount']):.2f} is not quantity x unit price "
                           f"({quantity * price:.2f})"))
    return errors


def _total_errors(document: Mapping[str, Any]) -> Errors:
    expected = rd.document_total(dict(document))
    total = float(document["totalAmount"])
    if abs(total - expected) > _CENT:
        return [("totalAmount", f"Total amount {total:.2f} does not equal the line amounts plus freight and tax "
                                f"({expected:.2f})")]
    return []


def _due_errors(entity: str, document: Mapping[str, Any]) -> Errors:
    due, invoiced = document.get("dueDate"), document.get("invoiceDate")
    if entity == INV and isinstance(due, str) and isinstance(invoiced, str) and is_date(due) \
            and is_date(invoiced) and due < invoiced:
        return [("dueDate", "Due date is before the invoice date")]
    return []


# ---- derived fields ------------------------------------------------------------------------------------

def complete(store: QadStore, entity: str, record: dict[str, Any]) -> None:
    """Defaults and derived fields of a receivables record about to be saved."""
    today = data.date_of(store.clock())
    if entity == INV:
        _complete_lines(record["lines"])
        if record.get("dueDate") is None and is_date(record.get("invoiceDate")):
            customer = store.peek("customerV2s", record.get("customerCode", "")) or {}
            record["dueDate"] = rd.due_date(record["invoiceDate"], customer.get("creditTermsCode"))
        rd.derive(record)
    elif entity == CN:
        _complete_lines(record["lines"])
        if record.get("creditDate") is None:
            record["creditDate"] = today
    elif entity == PAY:
        invoice = store.peek(INV, record.get("invoiceNumber", "")) or {}
        record.setdefault("paymentDate", today)
        record.setdefault("customerCode", invoice.get("customerCode"))
        record.setdefault("currencyCode", invoice.get("currencyCode"))


def _complete_lines(lines: list[Any]) -> list[Any]:
    for n, line in enumerate(lines):
        if isinstance(line, dict):
            line.setdefault("lineNumber", n + 1)
            if "amount" not in line and "quantity" in line and "unitPrice" in line:
                line["amount"] = rd.line_amount(line)
    return lines


def rederive(store: QadStore, entity: str, record: dict[str, Any], changes: Mapping[str, Any]) -> None:
    """An admin patch of an invoice's amounts recomputes its balance and status, unless it sets them."""
    if entity == INV and "balance" not in changes and "status" not in changes:
        rd.derive(record)


# ---- side effects --------------------------------------------------------------------------------------

def after_save(store: QadStore, entity: str, record: Mapping[str, Any], previous: Mapping[str, Any] | None,
               user: str) -> None:
    """A posted credit note or payment moves its invoice's applied amount (and so its balance and stamp)."""
    if entity == CN:
        _apply(store, "creditedAmount", "totalAmount", record, previous, user)
    elif entity == PAY:
        _apply(store, "paidAmount", "amount", record, previous, user)


def _apply(store: QadStore, applied: str, amount: str, record: Mapping[str, Any],
           previous: Mapping[str, Any] | None, user: str) -> None:
    deltas: dict[str, float] = {}
    if previous is not None:
        deltas[previous.get("invoiceNumber", "")] = -float(previous.get(amount) or 0.0)
    number = record.get("invoiceNumber", "")
    deltas[number] = deltas.get(number, 0.0) + float(record.get(amount) or 0.0)
    for key, delta in deltas.items():
        current = store.peek(INV, key)
        if current is None or abs(delta) < 1e-9:
            continue
        invoice = copy.deepcopy(current)
        invoice[applied] = round(float(invoice.get(applied) or 0.0) + delta, 2)
        rd.derive(invoice)
        store.save(INV, invoice, None, user, "U", current)


def apply_payment(store: QadStore, number: str, fields: Mapping[str, Any]) -> dict[str, Any]:
    """Apply a payment to invoice ``number`` (KeyError: no invoice; ValueError: a bad or too large amount)."""
    invoice = store.peek(INV, number)
    if invoice is None:
        raise KeyError(number)
    amount = fields.get("amount")
    if not isinstance(amount, int | float) or isinstance(amount, bool) or amount <= 0:
        raise ValueError("amount must be a number greater than 0")
    problems = _over_balance(invoice, float(amount), "amount", {})
    if problems:
        raise ValueError(problems[0][1])
    return store.insert(PAY, {**fields, "invoiceNumber": number, "customerCode": invoice["customerCode"],
                              "currencyCode": invoice["currencyCode"]})
