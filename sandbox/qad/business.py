"""Business rules QAD applies when a record is saved: references, defaults, derived fields, side effects.

The store calls these hooks; procurement entities delegate to ``procurement``, receivables to
``receivables``, customer activities to ``activities``. Orders must name existing (and, with
``enforce_active_references``, active) customers and ACTIVE items.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from ml_connector.sandbox.qad import activities, data, procurement, receivables
from ml_connector.sandbox.qad.checks import duplicate_errors, item_errors
from ml_connector.sandbox.qad.entities import EntitySpec

if TYPE_CHECKING:
    from ml_connector.sandbox.qad.store import QadStore

Errors = list[tuple[str, str]]


def fill_key(store: QadStore, spec: EntitySpec, record: dict[str, Any], reserved: Iterable[str] = ()) -> None:
    """Compose the key of entities whose key is built from several fields (before validation)."""
    if spec.name in procurement.ENTITIES:
        procurement.fill_key(store, spec.name, record, set(reserved))
    if spec.name in receivables.ENTITIES:
        receivables.fill_key(store, spec.name, record, reserved)
    if spec.name == activities.ENTITY:
        activities.fill_key(store, record)


def reference_errors(store: QadStore, spec: EntitySpec, merged: Mapping[str, Any], payload: Mapping[str, Any],
                     existing: Mapping[str, Any] | None, config: Mapping[str, Any],
                     batch: dict[str, Any] | None = None) -> Errors:
    """Errors of references to other records and of cross-field rules.

    ``batch`` carries what the valid records before this one in the same submit will change.
    """
    if spec.name in procurement.ENTITIES:
        return procurement.reference_errors(store, spec.name, merged, payload, existing, config,
                                            {} if batch is None else batch)
    if spec.name in receivables.ENTITIES:
        return receivables.reference_errors(store, spec.name, merged, payload, existing, config,
                                            {} if batch is None else batch)
    if spec.name == activities.ENTITY:
        return activities.reference_errors(store, merged, payload, existing)
    if spec.name == "customerV2s" and "contacts" in payload:
        return duplicate_errors(payload["contacts"], "contacts", "contactId", "Duplicate contact id")
    if spec.name != "salesOrders":
        return []
    errors: Errors = []
    for fname in ("customerCode", "shipToCode"):
        if (existing is None or fname in payload) and merged.get(fname) is not None:
            errors += _customer_errors(store, fname, merged[fname], config)
    if "lines" in payload:
        errors += _line_errors(store, payload["lines"], config)
    return errors


def complete(store: QadStore, spec: EntitySpec, record: dict[str, Any]) -> dict[str, Any]:
    """Fill defaults and derived fields of a record about to be saved."""
    for name, value in spec.defaults.items():
        record.setdefault(name, copy.deepcopy(value))
    key = record[spec.key_field]
    if "businessRelationCode" in spec.rules:
        record.setdefault("businessRelationCode", key)
    if spec.name == "customerV2s":
        _number_contacts(key, record["contacts"])
    if spec.name == "salesOrders":
        _complete_order(store, record)
    if spec.name in procurement.ENTITIES:
        procurement.complete(store, spec.name, record)
    if spec.name in receivables.ENTITIES:
        receivables.complete(store, spec.name, record)
    if spec.name == activities.ENTITY:
        activities.complete(record)
    return record


def rederive(store: QadStore, entity: str, record: dict[str, Any], changes: Mapping[str, Any]) -> None:
    """Recompute derived fields after an unvalidated (admin) patch, unless the patch sets them."""
    if entity == "salesOrders" and "lines" in changes and "totalAmount" not in changes:
        record["totalAmount"] = data.order_total(record["lines"])
    if entity in procurement.ENTITIES:
        procurement.rederive(store, entity, record, changes)
    if entity in receivables.ENTITIES:
        receivables.rederive(store, entity, record, changes)


def after_save(store: QadStore, entity: str, record: Mapping[str, Any], previous: Mapping[str, Any] | None,
               user: str) -> None:
    """Side effects of a saved record on other records."""
    if entity in procurement.ENTITIES:
        procurement.after_save(store, entity, record, previous, user)
    if entity in receivables.ENTITIES:
        receivables.after_save(store, entity, record, previous, user)


def concurrency_errors(spec: EntitySpec, existing: Mapping[str, Any] | None, sent: Any) -> Errors:
    """A create must not name an existing record; an update must carry its current concurrencyHash."""
    if existing is None:
        return [] if sent is None else [(spec.key_field, "Record not found")]
    if sent is None:
        return [(spec.key_field, "Record already exists")]
    if sent != existing["concurrencyHash"]:
        return [("concurrencyHash", "Record changed by another user")]
    return []


def _customer_errors(store: QadStore, fname: str, code: str, config: Mapping[str, Any]) -> Errors:
    customer = store.peek("customerV2s", code)
    if customer is None:
        return [(fname, f"Customer '{code}' does not exist")]
    if config["enforce_active_references"] and not customer.get("isActive", True):
        return [(fname, f"Customer '{code}' is inactive")]
    return []


def _line_errors(store: QadStore, lines: list[dict[str, Any]], config: Mapping[str, Any]) -> Errors:
    errors = duplicate_errors(lines, "lines", "lineNumber", "Duplicate line number")
    for k, line in enumerate(lines):
        errors += item_errors(store, f"lines[{k}].itemCode", line["itemCode"], config)
        if line["quantityOrdered"] <= 0:
            errors.append((f"lines[{k}].quantityOrdered", "Quantity ordered must be greater than 0"))
        if line.get("quantityShipped", 0) > line["quantityOrdered"]:
            errors.append((f"lines[{k}].quantityShipped", "Quantity shipped exceeds quantity ordered"))
    return errors


def _complete_order(store: QadStore, record: dict[str, Any]) -> None:
    record.setdefault("shipToCode", record.get("customerCode"))
    record.setdefault("orderDate", data.date_of(store.clock()))
    for n, line in enumerate(record["lines"]):
        item = store.peek("items", line.get("itemCode", "")) or {}
        line.setdefault("lineNumber", n + 1)
        line.setdefault("quantityShipped", 0.0)
        line.setdefault("listPrice", item.get("listPrice", 0.0))
        line.setdefault("netPrice", line["listPrice"])
        line.setdefault("siteCode", item.get("siteCode", "10-100"))
    record["totalAmount"] = data.order_total(record["lines"]) if all(
        "quantityOrdered" in ln for ln in record["lines"]) else record.get("totalAmount", 0.0)


def _number_contacts(key: str, contacts: list[dict[str, Any]]) -> None:
    """Give contacts without a contactId the next free ``<customerCode>-NN`` id."""
    used = {c.get("contactId") for c in contacts}
    n = 0
    for contact in contacts:
        contact.setdefault("isKeyContact", False)
        if contact.get("contactId"):
            continue
        while True:
            n += 1
            candidate = f"{key}-{n:02d}"
            if candidate not in used:
                break
        contact["contactId"] = candidate
        used.add(candidate)
