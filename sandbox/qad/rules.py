"""Field rules of writable QAD records: types, MFG/PRO field widths, code lists, nested lists.

Widths are the MFG/PRO column formats (e.g. ``cm_addr`` x(8)); whether the REST layer enforces them is
UNVERIFIED, hence the ``enforce_field_lengths`` switch (on by default: the stricter choice).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ml_connector.sandbox.core import is_date
from ml_connector.sandbox.qad import data
from ml_connector.sandbox.qad.timestamps import is_timestamp


@dataclass(frozen=True)
class Rule:
    """Validation rule of one writable field."""

    kind: str  # "str" | "email" | "number" | "int" | "bool" | "date" | "datetime" | "list"
    required: bool = False
    max_len: int | None = None
    choices: frozenset[str] | None = None
    nullable: bool = False
    minimum: float | None = None
    each: Mapping[str, Rule] | None = None  # rules of the objects in a "list"


ADDRESS_RULES = {
    "addressType": Rule("str", True, 8, frozenset({"HEADER", "SHIPTO", "BILLTO"})),
    "street": Rule("str", True, 36),
    "city": Rule("str", True, 20),
    "postalCode": Rule("str", False, 10, nullable=True),
    "country": Rule("str", True, 3),
}
CONTACT_RULES = {
    "contactId": Rule("str", False, 20),
    "firstName": Rule("str", True, 30),
    "lastName": Rule("str", True, 30),
    "email": Rule("email", False, 80, nullable=True),
    "phone": Rule("str", False, 20, nullable=True),
    "role": Rule("str", False, 30, nullable=True),
    "isKeyContact": Rule("bool"),
}
LINE_RULES = {
    "lineNumber": Rule("int", minimum=1),
    "itemCode": Rule("str", True, 18),
    "quantityOrdered": Rule("number", True, minimum=0),
    "quantityShipped": Rule("number", minimum=0),
    "listPrice": Rule("number", minimum=0),
    "netPrice": Rule("number", minimum=0),
    "siteCode": Rule("str", False, 8, data.SITES),
}
# Account context (cm_slspsn and the x(60)/decimal/date custom fields every QAD record carries): written
# back from a marketing system, so all of them are optional and may be cleared with null.
CUSTOMER_CONTEXT_RULES = {
    "salespersonCode": Rule("str", False, 8, nullable=True),
    **{f"customShort{n}": Rule("str", False, 60, nullable=True) for n in range(20)},
    **{f"customDecimal{n}": Rule("number", nullable=True) for n in range(5)},
    **{f"customDate{n}": Rule("date", nullable=True) for n in range(1, 6)},
}
CUSTOMER_RULES = {
    "customerCode": Rule("str", True, 8),
    "businessRelationCode": Rule("str", False, 8),
    "name": Rule("str", True, 60),
    "currencyCode": Rule("str", False, 3, data.CURRENCIES),
    "creditTermsCode": Rule("str", False, 8, data.CREDIT_TERMS),
    "creditLimit": Rule("number", minimum=0),
    "isActive": Rule("bool"),
    "taxZone": Rule("str", False, 16, nullable=True),
    "addresses": Rule("list", each=ADDRESS_RULES),
    "contacts": Rule("list", each=CONTACT_RULES),
    **CUSTOMER_CONTEXT_RULES,
}
SUPPLIER_RULES = {
    "supplierCode": Rule("str", True, 8),
    "businessRelationCode": Rule("str", False, 8),
    "name": Rule("str", True, 60),
    "currencyCode": Rule("str", False, 3, data.CURRENCIES),
    "paymentTermsCode": Rule("str", False, 8, data.CREDIT_TERMS),
    "isActive": Rule("bool"),
    "addresses": Rule("list", each=ADDRESS_RULES),
}
ITEM_RULES = {
    "itemCode": Rule("str", True, 18),
    "description": Rule("str", True, 24),
    "description2": Rule("str", False, 24, nullable=True),
    "unitOfMeasure": Rule("str", False, 2, data.UNITS),
    "productLine": Rule("str", False, 4),
    "itemType": Rule("str", False, 8),
    "itemStatus": Rule("str", False, 8, data.ITEM_STATUSES),
    "listPrice": Rule("number", minimum=0),
    "currencyCode": Rule("str", False, 3, data.CURRENCIES),
    "siteCode": Rule("str", False, 8, data.SITES),
}
ORDER_RULES = {
    "salesOrderNumber": Rule("str", True, 8),
    "customerCode": Rule("str", True, 8),
    "shipToCode": Rule("str", False, 8),
    "orderDate": Rule("date"),
    "requiredDate": Rule("date", nullable=True),
    "currencyCode": Rule("str", True, 3, data.CURRENCIES),
    "status": Rule("str", False, 10, data.ORDER_STATUSES),
    "externalReference": Rule("str", False, 30, nullable=True),
    "invoiceNumber": Rule("str", False, 20, nullable=True),   # so_inv_nbr: the invoice the order was billed on
    "invoiceDate": Rule("date", nullable=True),                # so_inv_date
    "lines": Rule("list", each=LINE_RULES),
}

_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_KIND_NAMES = {"str": "string", "email": "string", "number": "number", "int": "integer", "bool": "boolean",
               "date": "date (YYYY-MM-DD)", "datetime": "datetime", "list": "array"}


def _type_ok(value: Any, kind: str) -> bool:
    if kind in {"str", "email", "date", "datetime"}:
        return isinstance(value, str)
    if kind == "number":
        return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
    if kind == "int":
        return isinstance(value, int) and not isinstance(value, bool)
    if kind == "bool":
        return isinstance(value, bool)
    return isinstance(value, list)


def check_value(value: Any, rule: Rule, config: Mapping[str, Any]) -> str | None:
    """Error message for one scalar value, or None when it is valid."""
    if value is None:
        return None if rule.nullable else "Value is mandatory"
    if rule.required and value == "":
        return "Value is mandatory"
    if not _type_ok(value, rule.kind):
        return f"Invalid value type: expected {_KIND_NAMES[rule.kind]}"
    if rule.kind == "email" and not _EMAIL.match(value):
        return f"Invalid e-mail address '{value}'"
    if rule.kind == "date" and not is_date(value):
        return f"Invalid date '{value}': expected YYYY-MM-DD"
    if rule.kind == "datetime" and not is_timestamp(value):
        return f"Invalid datetime '{value}': expected ISO 8601 with zone"
    if rule.choices is not None and value not in rule.choices:
        return f"Value '{value}' is not a valid code"
    if rule.max_len is not None and isinstance(value, str) and config["enforce_field_lengths"] \
            and len(value) > rule.max_len:
        return f"Value exceeds the maximum length of {rule.max_len}"
    if rule.minimum is not None and not isinstance(value, list) and value < rule.minimum:
        return f"Value must be at least {rule.minimum:g}"
    return None


def check_object(obj: Mapping[str, Any], rules: Mapping[str, Rule], prefix: str, create: bool,
                 config: Mapping[str, Any]) -> list[tuple[str, str]]:
    """(fieldName, message) errors of one object against its rules; ``create`` enforces required fields."""
    errors: list[tuple[str, str]] = []
    if config["reject_unknown_fields"]:
        errors += [(prefix + name, "Unknown field") for name in obj if name not in rules]
    for name, rule in rules.items():
        if name not in obj:
            if create and rule.required:
                errors.append((prefix + name, "Value is mandatory"))
            continue
        message = check_value(obj[name], rule, config)
        if message:
            errors.append((prefix + name, message))
        elif rule.each is not None and isinstance(obj[name], list):
            errors += _check_list(obj[name], rule.each, f"{prefix}{name}", config)
    return errors


def _check_list(values: list[Any], rules: Mapping[str, Rule], path: str,
                config: Mapping[str, Any]) -> list[tuple[str, str]]:
    errors: list[tuple[str, str]] = []
    for k, value in enumerate(values):
        if not isinstance(value, dict):
            errors.append((f"{path}[{k}]", "Invalid value type: expected object"))
        else:
            errors += check_object(value, rules, f"{path}[{k}].", True, config)
    return errors


# ---- procurement (po_mstr/pod_det, prh_hist, Financials CInvoice) ---------------------------------------

PO_LINE_RULES = {
    "lineNumber": Rule("int", minimum=1),
    "itemCode": Rule("str", True, 18),
    "quantityOrdered": Rule("number", True, minimum=0),
    "quantityReceived": Rule("number", minimum=0),  # maintained by receipts; a write may only echo it
    "unitCost": Rule("number", minimum=0),
    "siteCode": Rule("str", False, 8, data.SITES),
    "dueDate": Rule("date", nullable=True),
}
PURCHASE_ORDER_RULES = {
    "purchaseOrderNumber": Rule("str", True, 8),
    "supplierCode": Rule("str", True, 8),
    "orderDate": Rule("date"),
    "dueDate": Rule("date", nullable=True),
    "currencyCode": Rule("str", True, 3, data.CURRENCIES),
    "status": Rule("str", False, 10, data.ORDER_STATUSES),
    "lines": Rule("list", each=PO_LINE_RULES),
}
RECEIPT_RULES = {
    "receiptId": Rule("str", True, 20),  # <receiverNumber>-<lineNumber>, composed when not sent
    "receiverNumber": Rule("str", True, 8),
    "lineNumber": Rule("int", True, minimum=1),  # the purchase order line received
    "purchaseOrderNumber": Rule("str", True, 8),
    "itemCode": Rule("str", False, 18),
    "quantityReceived": Rule("number", True, minimum=0),
    "receiptDate": Rule("date"),
    "siteCode": Rule("str", False, 8, data.SITES),
    "locationCode": Rule("str", False, 8),
    "lotSerial": Rule("str", False, 18, nullable=True),
}
INVOICE_LINE_RULES = {
    "purchaseOrderNumber": Rule("str", True, 8),
    "poLineNumber": Rule("int", True, minimum=1),
    "quantity": Rule("number", True, minimum=0),
    "unitCost": Rule("number", True, minimum=0),
}
SUPPLIER_INVOICE_RULES = {
    "invoiceId": Rule("str", True, 40),  # <entityCode>-<invoiceYear>-<journalCode>-<voucherNumber:06d>
    "entityCode": Rule("str", False, 8),
    "invoiceYear": Rule("int", minimum=1900),
    "journalCode": Rule("str", False, 8),
    "voucherNumber": Rule("int", minimum=1),
    "supplierCode": Rule("str", True, 8),
    "supplierInvoiceReference": Rule("str", True, 20),
    "invoiceDate": Rule("date", True),
    "dueDate": Rule("date", nullable=True),
    "currencyCode": Rule("str", True, 3, data.CURRENCIES),
    "totalAmount": Rule("number", minimum=0),
    "taxAmount": Rule("number", minimum=0),
    "isApproved": Rule("bool"),
    "lines": Rule("list", each=INVOICE_LINE_RULES),
}


# ---- receivables (Financials DInvoice: customer invoices, credit notes; applied payments) -------------

AR_LINE_RULES = {
    "lineNumber": Rule("int", minimum=1),
    "itemCode": Rule("str", True, 18),
    "quantity": Rule("number", True, minimum=0),
    "unitPrice": Rule("number", True, minimum=0),
    "amount": Rule("number", minimum=0),  # quantity x unitPrice when not sent
}
CUSTOMER_INVOICE_RULES = {
    "invoiceNumber": Rule("str", True, 20),
    "customerCode": Rule("str", True, 8),
    "salesOrderNumber": Rule("str", False, 8, nullable=True),
    "invoiceDate": Rule("date", True),
    "dueDate": Rule("date", nullable=True),  # from the customer's credit terms when not sent
    "currencyCode": Rule("str", True, 3, data.CURRENCIES),
    "totalAmount": Rule("number", True, minimum=0),  # line amounts + freightAmount + taxAmount
    "taxAmount": Rule("number", minimum=0),
    "freightAmount": Rule("number", minimum=0),  # trailer (shipping) charges
    "externalReference": Rule("str", False, 40, nullable=True),
    "lines": Rule("list", True, each=AR_LINE_RULES),
}
CREDIT_NOTE_RULES = {
    "creditNoteNumber": Rule("str", True, 20),
    "customerCode": Rule("str", True, 8),
    "invoiceNumber": Rule("str", True, 20),
    "creditDate": Rule("date", nullable=True),  # today when not sent
    "currencyCode": Rule("str", True, 3, data.CURRENCIES),
    "totalAmount": Rule("number", True),  # > 0 and at most the invoice's balance (business rules)
    "taxAmount": Rule("number", minimum=0),
    "freightAmount": Rule("number", minimum=0),
    "externalReference": Rule("str", False, 40, nullable=True),
    "reason": Rule("str", False, 60, nullable=True),
    "lines": Rule("list", each=AR_LINE_RULES),
}
PAYMENT_RULES = {
    "paymentNumber": Rule("str", True, 20),
    "customerCode": Rule("str", True, 8),
    "invoiceNumber": Rule("str", True, 20),
    "paymentDate": Rule("date"),
    "amount": Rule("number", True),
    "currencyCode": Rule("str", True, 3, data.CURRENCIES),
}


# ---- account context: customer activities (QAD CRM activity history) ---------------------------------

ACTIVITY_RULES = {
    "activityId": Rule("str", True, 40),  # caller-chosen, e.g. the marketing system's activity id
    "contactId": Rule("str", False, 20, nullable=True),  # a contact of the customer; null: the account itself
    "customerCode": Rule("str", False, 8),  # the contact's customer when not sent; then required (activities)
    "activityDate": Rule("datetime", True),  # stored as ISO 8601 UTC with milliseconds
    "activityType": Rule("str", True, 40),
    "subject": Rule("str", False, 255, nullable=True),
    "source": Rule("str", False, 20, nullable=True),
}
