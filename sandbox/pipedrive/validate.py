"""Strict v2 body validation: required fields, no coercion, unknown keys fail the whole write."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ml_connector.sandbox.core import is_date
from ml_connector.sandbox.pipedrive.common import (
    ApiError,
    is_int,
    is_num,
    not_allowed,
    not_found,
    parse_datetime,
    validation_error,
)
from ml_connector.sandbox.pipedrive.fields import ADDRESS_PARTS, SINGULAR, check_custom_value
from ml_connector.sandbox.pipedrive.store import PipedriveStore

Checker = Callable[[str, Any], Any]
CONTACT_SYNC_FIELDS = frozenset({"im", "postal_address", "notes", "birthday", "job_title"})
BILLING = ("one-time", "annually", "semi-annually", "quarterly", "monthly", "weekly")


def _fail(key: str, what: str) -> ApiError:
    return validation_error(key, f"Parameter '{key}' must be {what}")


def _str(key: str, value: Any) -> Any:
    if not isinstance(value, str):
        raise _fail(key, "string")
    return value


def _nonempty(key: str, value: Any) -> Any:
    if not isinstance(value, str) or not value.strip():
        raise _fail(key, "a non-empty string")
    return value


def _int(key: str, value: Any) -> Any:
    if not is_int(value):
        raise _fail(key, "integer")
    return value


def _num(key: str, value: Any) -> Any:
    if not is_num(value):
        raise _fail(key, "number")
    return value


def _bool(key: str, value: Any) -> Any:
    if not isinstance(value, bool):
        raise _fail(key, "boolean")
    return value


def _enum(*allowed: Any) -> Checker:
    def check(key: str, value: Any) -> Any:
        if value not in allowed or isinstance(value, bool):
            raise _fail(key, f"one of [{', '.join(map(str, allowed))}]")
        return value

    return check


def _datetime(key: str, value: Any) -> Any:
    parsed = parse_datetime(value)
    if parsed is None:
        raise validation_error(key, f"Parameter '{key}' is not a valid datetime")
    return parsed


def _date(key: str, value: Any) -> Any:
    if not is_date(value):
        raise validation_error(key, f"Parameter '{key}' is not a valid date (YYYY-MM-DD)")
    return value


def _int_list(key: str, value: Any) -> Any:
    if not isinstance(value, list) or not all(is_int(v) for v in value):
        raise _fail(key, "an array of integers")
    return value


def _str_or_num(key: str, value: Any) -> Any:
    if not (isinstance(value, str) or is_num(value)):
        raise _fail(key, "number or string")
    return value


def _address(key: str, value: Any) -> Any:
    if not isinstance(value, dict):
        raise _fail(key, "object")
    for part in value:
        if part not in ADDRESS_PARTS or part == "formatted_address":
            raise not_allowed(f"{key}.{part}")
    if not isinstance(value.get("value"), str):
        raise validation_error(f"{key}.value", f"Parameter '{key}.value' is required")
    for part, text in value.items():
        if text is not None and not isinstance(text, str):
            raise _fail(f"{key}.{part}", "string")
    return dict(value)


def _contacts(key: str, value: Any) -> Any:
    """``emails``/``phones``: ``[{value, primary, label}]``, label defaults to work, one primary."""
    if not isinstance(value, list):
        raise _fail(key, "an array")
    out = []
    for i, item in enumerate(value):
        where = f"{key}[{i}]"
        if not isinstance(item, dict):
            raise _fail(where, "object")
        for part in item:
            if part not in {"value", "primary", "label"}:
                raise not_allowed(f"{where}.{part}")
        _nonempty(f"{where}.value", item.get("value"))
        if "primary" in item:
            _bool(f"{where}.primary", item["primary"])
        label = item.get("label", "work")
        _enum("work", "home", "mobile", "other")(f"{where}.label", label)
        out.append({"value": item["value"], "primary": bool(item.get("primary")), "label": label})
    primary = next((i for i, item in enumerate(out) if item["primary"]), 0)
    for i, item in enumerate(out):
        item["primary"] = i == primary
    return out


def _prices(key: str, value: Any) -> Any:
    """Product prices: one row per currency; PATCH replaces the whole array."""
    if not isinstance(value, list):
        raise _fail(key, "an array")
    seen: set[str] = set()
    out = []
    for i, row in enumerate(value):
        where = f"{key}[{i}]"
        if not isinstance(row, dict):
            raise _fail(where, "object")
        for part in row:
            if part not in {"currency", "price", "cost", "direct_cost", "notes"}:
                raise not_allowed(f"{where}.{part}")
        currency = _nonempty(f"{where}.currency", row.get("currency"))
        if currency in seen:
            raise validation_error(where, f"Duplicate price for currency {currency}")
        seen.add(currency)
        for part in ("price", "cost", "direct_cost"):
            if part in row:
                _num(f"{where}.{part}", row[part])
        if "notes" in row and row["notes"] is not None:
            _str(f"{where}.notes", row["notes"])
        out.append(dict(row))
    return out


# key -> (checker, nullable, create only)
Spec = dict[str, tuple[Checker, bool, bool]]
_COMMON: Spec = {
    "owner_id": (_int, False, False),
    "visible_to": (_enum(1, 3, 5, 7), False, False),
    "label_ids": (_int_list, False, False),
    "add_time": (_datetime, False, True),
}
SPECS: dict[str, Spec] = {
    "organizations": {
        **_COMMON,
        "name": (_nonempty, False, False),
        "address": (_address, True, False),
        "website": (_str, True, False),
        "linkedin": (_str, True, False),
        "industry": (_int, True, False),
        "annual_revenue": (_num, True, False),
        "employee_count": (_int, True, False),
    },
    "persons": {
        **_COMMON,
        "name": (_nonempty, False, False),
        "first_name": (_str, True, False),
        "last_name": (_str, True, False),
        "org_id": (_int, True, False),
        "emails": (_contacts, False, False),
        "phones": (_contacts, False, False),
        "marketing_status": (_enum("no_consent", "unsubscribed", "subscribed", "archived"), False, False),
    },
    "deals": {
        **_COMMON,
        "title": (_nonempty, False, False),
        "person_id": (_int, True, False),
        "org_id": (_int, True, False),
        "pipeline_id": (_int, False, False),
        "stage_id": (_int, False, False),
        "value": (_num, False, False),
        "currency": (_nonempty, False, False),
        "status": (_enum("open", "won", "lost"), False, False),
        "probability": (_num, True, False),
        "lost_reason": (_str, True, False),
        "close_time": (_datetime, True, False),
        "won_time": (_datetime, True, False),
        "lost_time": (_datetime, True, False),
        "expected_close_date": (_date, True, False),
        "is_archived": (_bool, False, False),
        "archive_time": (_datetime, True, False),
    },
    "products": {
        "owner_id": (_int, False, False),
        "visible_to": (_enum(1, 3, 5, 7), False, False),
        "name": (_nonempty, False, False),
        "code": (_str, True, False),
        "description": (_str, True, False),
        "unit": (_str, True, False),
        "tax": (_num, False, False),
        "category": (_str_or_num, True, False),
        "is_linkable": (_bool, False, False),
        "prices": (_prices, False, False),
        "billing_frequency": (_enum(*BILLING), False, False),
        "billing_frequency_cycles": (_int, True, False),
    },
}
LINE_SPEC: Spec = {
    "product_id": (_int, False, False),
    "item_price": (_num, False, False),
    "quantity": (_num, False, False),
    "tax": (_num, False, False),
    "tax_method": (_enum("exclusive", "inclusive", "none"), False, False),
    "discount": (_num, False, False),
    "discount_type": (_enum("percentage", "amount"), False, False),
    "comments": (_str, True, False),
    "is_enabled": (_bool, False, False),
    "product_variation_id": (_int, True, False),
    "billing_frequency": (_enum(*BILLING), False, False),
    "billing_frequency_cycles": (_int, True, False),
    "billing_start_date": (_date, True, False),
}
REQUIRED = {"organizations": ("name",), "persons": ("name",), "deals": ("title",), "products": ("name",)}


def _apply_spec(spec: Spec, body: Any, create: bool, skip: frozenset[str] = frozenset()) -> dict[str, Any]:
    """Check every key of a body against a spec; returns the normalised values."""
    if not isinstance(body, dict):
        raise validation_error("body", "Request body must be a JSON object")
    out: dict[str, Any] = {}
    for key, value in body.items():
        if key in skip:
            continue
        rule = spec.get(key)
        if rule is None or (rule[2] and not create):
            raise not_allowed(key)
        checker, nullable, _ = rule
        if value is None:
            if not nullable:
                raise validation_error(key, f"Parameter '{key}' must not be null")
            out[key] = None
        else:
            out[key] = checker(key, value)
    return out


def reference_error(store: PipedriveStore, key: str, label: str, value: Any) -> ApiError:
    """A dangling reference: 400 validation error, or 404 when ``reference_error_status`` is 404."""
    if store.config.get("reference_error_status") == 404:
        return not_found(f"{label} not found")
    return validation_error(key, f"{label} with id {value} does not exist")


def validate_entity(
    store: PipedriveStore, entity: str, body: Any, *, create: bool, current: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Validate a v2 create/PATCH body for an entity; returns the fields to store."""
    skip = frozenset({"custom_fields"})
    if entity == "persons" and isinstance(body, dict):
        blocked = sorted(CONTACT_SYNC_FIELDS & set(body))
        if blocked and not store.config.get("contact_sync"):
            raise ApiError(
                403,
                {
                    "success": False,
                    "error": f"Field '{blocked[0]}' requires Contact Sync",
                    "code": "ERR_FORBIDDEN",
                },
            )
        skip |= CONTACT_SYNC_FIELDS
    out = _apply_spec(SPECS[entity], body, create, skip)
    if entity == "persons":
        out.update({key: body[key] for key in CONTACT_SYNC_FIELDS & set(body)})
    if "custom_fields" in body:
        out["custom_fields"] = validate_custom(store, entity, body["custom_fields"])
    if create:
        _check_required(entity, out)
    _check_references(store, out)
    if entity == "deals":
        _deal_consistency(store, out, current)
    return out


def validate_custom(store: PipedriveStore, entity: str, values: Any) -> dict[str, Any]:
    """``custom_fields`` object: every key must be a custom field of this entity."""
    if not isinstance(values, dict):
        raise _fail("custom_fields", "object")
    defs = store.catalog.custom(SINGULAR[entity])
    out = {}
    for key, value in values.items():
        if key not in defs:
            raise not_allowed(key)
        out[key] = check_custom_value(defs[key], value)
    return out


def _check_required(entity: str, out: dict[str, Any]) -> None:
    if entity == "persons" and "name" not in out and out.get("first_name") and out.get("last_name"):
        return
    for key in REQUIRED[entity]:
        if key not in out:
            raise validation_error(key, f"Parameter '{key}' is required")


def _check_references(store: PipedriveStore, out: dict[str, Any]) -> None:
    if "owner_id" in out and out["owner_id"] not in store.users:
        raise reference_error(store, "owner_id", "User", out["owner_id"])
    for key, entity, label in (
        ("org_id", "organizations", "Organization"),
        ("person_id", "persons", "Person"),
        ("product_id", "products", "Product"),
    ):
        if out.get(key) is not None and store.live(entity, out[key]) is None:
            raise reference_error(store, key, label, out[key])


def _deal_consistency(store: PipedriveStore, out: dict[str, Any], current: dict[str, Any] | None) -> None:
    """Pipeline/stage pairing (default pipeline 1, its first stage); ``lost_reason`` only on lost deals."""
    if "stage_id" in out:
        stage = store.stages.get(out["stage_id"])
        if stage is None:
            raise reference_error(store, "stage_id", "Stage", out["stage_id"])
        if out.setdefault("pipeline_id", stage["pipeline_id"]) != stage["pipeline_id"]:
            raise validation_error("stage_id", "Stage does not belong to the given pipeline")
    elif "pipeline_id" in out:
        if out["pipeline_id"] not in store.pipelines:
            raise reference_error(store, "pipeline_id", "Pipeline", out["pipeline_id"])
        stages = sorted(
            (s["order_nr"], s["id"]) for s in store.stages.values() if s["pipeline_id"] == out["pipeline_id"]
        )
        out["stage_id"] = stages[0][1]
    status = out.get("status", (current or {}).get("status", "open"))
    if out.get("lost_reason") is not None and status != "lost":
        raise validation_error("lost_reason", "Parameter 'lost_reason' is only allowed for lost deals")


def validate_line(store: PipedriveStore, body: Any, *, create: bool) -> dict[str, Any]:
    """A deal-product body (POST needs ``product_id``, ``item_price``, ``quantity``)."""
    out = _apply_spec(LINE_SPEC, body, create)
    if create:
        for key in ("product_id", "item_price", "quantity"):
            if key not in out:
                raise validation_error(key, f"Parameter '{key}' is required")
    if "comments" in out and out["comments"] is None:
        out["comments"] = ""
    _check_references(store, out)
    return out
