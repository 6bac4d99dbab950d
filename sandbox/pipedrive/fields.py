"""Pipedrive sandbox field metadata: system fields, per-account custom fields (40-hex keys), value checks."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

from ml_connector.sandbox.core import is_date
from ml_connector.sandbox.pipedrive.common import (
    ApiError,
    is_int,
    is_num,
    is_time,
    num_str,
    v1_error,
    validation_error,
)

SINGULAR = {"organizations": "organization", "persons": "person", "deals": "deal", "products": "product"}
PLURAL = {v: k for k, v in SINGULAR.items()}
SEARCHABLE_TYPES = frozenset({"address", "varchar", "text", "varchar_auto", "double", "monetary", "phone"})
CREATE_TYPES = frozenset(
    {
        "varchar",
        "varchar_auto",
        "text",
        "double",
        "monetary",
        "date",
        "daterange",
        "time",
        "timerange",
        "set",
        "enum",
        "phone",
        "address",
        "org",
        "people",
        "user",
    }
)
ADDRESS_PARTS = (
    "value",
    "country",
    "admin_area_level_1",
    "admin_area_level_2",
    "locality",
    "sublocality",
    "route",
    "street_number",
    "subpremise",
    "postal_code",
    "formatted_address",
)
SEED_TIME = "2024-01-02 08:00:00"

_SYSTEM: dict[str, list[tuple[str, str, str]]] = {
    "organization": [
        ("name", "Name", "varchar"),
        ("owner_id", "Owner", "user"),
        ("address", "Address", "address"),
        ("visible_to", "Visible to", "visible_to"),
        ("label_ids", "Labels", "set"),
        ("add_time", "Organization created", "date"),
        ("update_time", "Update time", "date"),
    ],
    "person": [
        ("name", "Name", "varchar"),
        ("first_name", "First name", "varchar"),
        ("last_name", "Last name", "varchar"),
        ("owner_id", "Owner", "user"),
        ("org_id", "Organization", "org"),
        ("emails", "Email", "varchar"),
        ("phones", "Phone", "phone"),
        ("visible_to", "Visible to", "visible_to"),
        ("label_ids", "Labels", "set"),
        ("add_time", "Person created", "date"),
        ("update_time", "Update time", "date"),
    ],
    "deal": [
        ("title", "Title", "varchar"),
        ("value", "Value", "monetary"),
        ("currency", "Currency", "varchar"),
        ("org_id", "Organization", "org"),
        ("person_id", "Contact person", "people"),
        ("owner_id", "Owner", "user"),
        ("pipeline_id", "Pipeline", "double"),
        ("stage_id", "Stage", "stage"),
        ("status", "Status", "status"),
        ("probability", "Probability", "double"),
        ("expected_close_date", "Expected close date", "date"),
        ("won_time", "Won time", "date"),
        ("lost_time", "Lost time", "date"),
        ("close_time", "Deal closed on", "date"),
        ("lost_reason", "Lost reason", "varchar"),
        ("visible_to", "Visible to", "visible_to"),
        ("label_ids", "Labels", "set"),
        ("add_time", "Deal created", "date"),
        ("update_time", "Update time", "date"),
    ],
    "product": [
        ("name", "Name", "varchar"),
        ("code", "Product code", "varchar"),
        ("description", "Description", "text"),
        ("unit", "Unit", "varchar"),
        ("tax", "Tax", "double"),
        ("category", "Category", "enum"),
        ("owner_id", "Owner", "user"),
        ("is_linkable", "Linkable", "boolean"),
        ("visible_to", "Visible to", "visible_to"),
        ("prices", "Price", "price_list"),
        ("billing_frequency", "Billing frequency", "billing_frequency"),
        ("add_time", "Product created", "date"),
        ("update_time", "Update time", "date"),
    ],
}

SEED_CUSTOM: dict[str, list[tuple[str, str, list[str] | None]]] = {
    "organization": [
        ("ERP Customer Id", "varchar", None),
        ("Credit Limit", "double", None),
        ("Payment Terms", "varchar", None),
    ],
    "person": [("ERP Contact Id", "varchar", None)],
    "product": [("ERP Item Code", "varchar", None), ("Product Line", "varchar", None)],
    "deal": [
        ("ERP Order Number", "varchar", None),
        ("Source", "enum", ["ERP", "Web", "Referral", "Trade show"]),
    ],
}


@dataclass
class FieldDef:
    """One field of an entity (system or custom)."""

    id: int
    key: str
    name: str
    field_type: str
    custom: bool
    order_nr: int
    options: list[dict[str, Any]] | None = None
    add_time: str = SEED_TIME

    @property
    def searchable(self) -> bool:
        return self.custom and self.field_type in SEARCHABLE_TYPES

    def v1(self) -> dict[str, Any]:
        """The v1 ``/…Fields`` item."""
        return {
            "id": self.id,
            "key": self.key,
            "name": self.name,
            "order_nr": self.order_nr,
            "field_type": self.field_type,
            "add_time": self.add_time,
            "update_time": self.add_time,
            "last_updated_by_user_id": 18 if self.custom else None,
            "active_flag": True,
            "edit_flag": self.custom,
            "index_visible_flag": True,
            "details_visible_flag": True,
            "add_visible_flag": True,
            "important_flag": False,
            "bulk_edit_allowed": True,
            "searchable_flag": self.searchable,
            "filtering_allowed": True,
            "sortable_flag": True,
            "mandatory_flag": self.key in {"name", "title"},
            "options": self.options,
        }

    def v2(self) -> dict[str, Any]:
        """The v2 ``/api/v2/…Fields`` item."""
        subfields = None
        if self.field_type == "address":
            subfields = [
                {"field_code": part, "field_name": f"{part} of {self.name}", "field_type": "varchar"}
                for part in ADDRESS_PARTS
            ]
        return {
            "field_name": self.name,
            "field_code": self.key,
            "field_type": self.field_type,
            "options": self.options,
            "subfields": subfields,
            "is_custom_field": self.custom,
            "is_optional_response_field": False,
        }


@dataclass
class FieldCatalog:
    """All field definitions of the account, per singular entity name."""

    seed: int
    fields: dict[str, list[FieldDef]] = field(default_factory=dict)
    _next_option: int = 100
    _custom: dict[str, dict[str, FieldDef]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for entity, system in _SYSTEM.items():
            self.fields[entity] = [
                FieldDef(i + 1, key, name, ftype, False, i + 1) for i, (key, name, ftype) in enumerate(system)
            ]
        for entity, customs in SEED_CUSTOM.items():
            for name, ftype, options in customs:
                self.create(entity, name, ftype, options)

    def _hash(self, entity: str, name: str, n: int) -> str:
        return hashlib.sha1(f"pipedrive:{self.seed}:{entity}:{name}:{n}".encode()).hexdigest()

    def create(self, entity: str, name: str, field_type: str, options: list[str] | None = None) -> FieldDef:
        """Add a custom field with a fresh random-looking 40-hex key."""
        defs = self.fields[entity]
        opts = None
        if field_type in {"enum", "set"}:
            opts = []
            for label in options or []:
                self._next_option += 1
                opts.append({"id": self._next_option, "label": label})
        new = FieldDef(
            max(d.id for d in defs) + 1,
            self._hash(entity, name, len(defs)),
            name,
            field_type,
            True,
            len(defs) + 1,
            opts,
        )
        defs.append(new)
        self._custom.pop(entity, None)
        return new

    def custom(self, entity: str) -> dict[str, FieldDef]:
        """Custom fields of an entity by key (cached; do not mutate)."""
        cached = self._custom.get(entity)
        if cached is None:
            cached = self._custom[entity] = {d.key: d for d in self.fields[entity] if d.custom}
        return cached

    def key_for(self, entity: str, label: str) -> str:
        """The key of the field called ``label`` (custom fields first)."""
        entity = SINGULAR.get(entity, entity)
        for d in sorted(self.fields[entity], key=lambda d: not d.custom):
            if d.name == label:
                return d.key
        raise KeyError(f"no {entity} field labelled {label!r}")

    def labels(self, entity: str) -> dict[str, str]:
        """``{label: key}`` of an entity's custom fields."""
        return {d.name: d.key for d in self.fields[SINGULAR.get(entity, entity)] if d.custom}


def check_custom_value(fdef: FieldDef, value: Any) -> Any:
    """Validate one v2 custom field value (read = write format); returns the stored value."""
    if value is None:
        return None
    key, ftype = fdef.key, fdef.field_type
    ok: bool
    if ftype in {"varchar", "varchar_auto", "text", "phone"}:
        ok = isinstance(value, str) and (ftype != "varchar" or len(value) <= 255)
    elif ftype == "double":
        ok = is_num(value)
    elif ftype == "monetary":
        ok = (
            isinstance(value, dict)
            and set(value) <= {"value", "currency"}
            and is_num(value.get("value"))
            and isinstance(value.get("currency"), str)
        )
    elif ftype == "enum":
        ok = is_int(value) and any(o["id"] == value for o in fdef.options or [])
    elif ftype == "set":
        ids = {o["id"] for o in fdef.options or []}
        ok = isinstance(value, list) and bool(value) and all(is_int(v) and v in ids for v in value)
    elif ftype in {"user", "org", "people"}:
        ok = is_int(value)
    elif ftype == "date":
        ok = is_date(value)
    elif ftype in {"daterange", "timerange"}:
        check = is_date if ftype == "daterange" else is_time
        ok = isinstance(value, dict) and set(value) == {"value", "until"} and all(map(check, value.values()))
    elif ftype == "time":
        ok = is_time(value)
    elif ftype == "address":
        ok = (
            isinstance(value, dict)
            and set(value) <= set(ADDRESS_PARTS)
            and isinstance(value.get("value"), str)
            and all(v is None or isinstance(v, str) for v in value.values())
        )
        if ok:
            value = {part: value.get(part) for part in ADDRESS_PARTS}
    else:
        ok = True
    if not ok:
        raise validation_error(key, f"Parameter '{key}' has an invalid value for a field of type {ftype}")
    return value


def search_strings(fdef: FieldDef, value: Any) -> list[str]:
    """The searchable text of a custom field value (searchable types only)."""
    if value is None or not fdef.searchable:
        return []
    if isinstance(value, dict):
        value = value.get("value")
    if value is None:
        return []
    return [num_str(value) if is_num(value) else str(value)]


def exact_strings(value: Any) -> list[str]:
    """Values an ``itemSearch/field`` exact match compares with (case-sensitive)."""
    if value is None:
        return []
    if isinstance(value, dict):
        return exact_strings(value.get("value"))
    if isinstance(value, list):
        return [s for v in value for s in exact_strings(v)]
    return [num_str(value) if is_num(value) else str(value)]


def parse_field_create(entity: str, body: dict[str, Any], v2: bool) -> tuple[str, str, list[str] | None]:
    """Validate a field-create body (v1 ``name``/v2 ``field_name``); returns name, type, option labels."""
    name_key = "field_name" if v2 else "name"
    name, ftype, options = body.get(name_key), body.get("field_type"), body.get("options")
    if not isinstance(name, str) or not name.strip():
        raise _field_error(v2, name_key, f"Parameter '{name_key}' is required")
    if ftype not in CREATE_TYPES:
        raise _field_error(v2, "field_type", f"Parameter 'field_type' must be one of {sorted(CREATE_TYPES)}")
    labels: list[str] | None = None
    if ftype in {"enum", "set"}:
        if not isinstance(options, list) or not options:
            raise _field_error(v2, "options", "Parameter 'options' is required for enum and set fields")
        raw: list[Any] = [o.get("label") if isinstance(o, dict) else o for o in options]
        if not all(isinstance(label, str) and label for label in raw):
            raise _field_error(v2, "options", "Parameter 'options' must be a list of labels")
        labels = [str(label) for label in raw]
    return name.strip(), ftype, labels


def _field_error(v2: bool, key: str, message: str) -> ApiError:
    return validation_error(key, message) if v2 else v1_error(400, message)
