"""Customer activities (QAD CRM activity history): what happened with an account, e.g. a marketing touch.

An activity belongs to one customer, and optionally to one of its contacts; sent with a contact only, it takes
the contact's customer. It never moves: ``customerCode`` and ``contactId`` are fixed at creation (sending them
unchanged is not a change). ``activityDate`` is kept as ISO 8601 UTC with milliseconds, like every stamp.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from ml_connector.sandbox.qad.timestamps import is_timestamp, iso_ms, parse_timestamp_ms

if TYPE_CHECKING:
    from ml_connector.sandbox.qad.store import QadStore

ENTITY = "customerActivities"
FIXED = ("customerCode", "contactId")  # an activity cannot move to another customer or contact
Errors = list[tuple[str, str]]


def fill_key(store: QadStore, record: dict[str, Any]) -> None:
    """A new activity sent with a contact and no customer is the contact's customer's."""
    if store.peek(ENTITY, str(record.get("activityId") or "")) is not None or "customerCode" in record:
        return
    contact = record.get("contactId")
    owner = contact_owner(store, contact) if isinstance(contact, str) else None
    if owner is not None:
        record["customerCode"] = owner


def contact_owner(store: QadStore, contact_id: str) -> str | None:
    """Code of the customer holding contact ``contact_id``, or None.

    Generated ids are ``<customerCode>-NN``, so that customer is looked at first; a caller-chosen id can only
    be on a customer written since seeding.
    """
    prefix = contact_id.rpartition("-")[0]
    candidates = [store.peek("customerV2s", prefix)] if prefix else []
    candidates += store.changed("customerV2s")
    for customer in candidates:
        if customer is not None and _holds(customer, contact_id):
            return str(customer["customerCode"])
    return None


def reference_errors(store: QadStore, merged: Mapping[str, Any], payload: Mapping[str, Any],
                     existing: Mapping[str, Any] | None) -> Errors:
    """A new activity names an existing customer and one of its contacts; a saved one keeps both."""
    if existing is not None:
        return [(name, f"{name} cannot be changed on a customer activity")
                for name in FIXED if name in payload and payload[name] != existing.get(name)]
    code, contact = merged.get("customerCode"), merged.get("contactId")
    errors: Errors = []
    customer = store.peek("customerV2s", code) if isinstance(code, str) else None
    if isinstance(code, str) and customer is None:
        errors.append(("customerCode", f"Customer '{code}' does not exist"))
    if isinstance(contact, str) and (customer is None or not _holds(customer, contact)):
        owner = contact_owner(store, contact)
        if owner is None:
            errors.append(("contactId", f"Contact '{contact}' does not exist"))
        elif customer is not None:
            errors.append(("contactId", f"Contact {contact} belongs to customer {owner}"))
    if code is None and not errors:
        errors.append(("customerCode", "Value is mandatory"))
    return errors


def complete(record: dict[str, Any]) -> None:
    """Keep activityDate in UTC with milliseconds (an unvalidated admin value is left as sent)."""
    when = record.get("activityDate")
    if isinstance(when, str) and is_timestamp(when):
        record["activityDate"] = iso_ms(parse_timestamp_ms(when))


def _holds(customer: Mapping[str, Any], contact_id: str) -> bool:
    return any(isinstance(c, dict) and c.get("contactId") == contact_id for c in customer.get("contacts") or [])
