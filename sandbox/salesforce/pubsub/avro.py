"""The Avro shape of a change event (facts §7.3-§7.5): the schema GetSchema serves and the body a change becomes.

Field 0 is the ``ChangeEventHeader`` record, then the object's fields, all nullable; address parts (``BillingCity``)
travel inside a compound record (``BillingAddress.City``) and Contact's name parts inside ``Name``. The header's
``changedFields``/``nulledFields``/``diffFields`` are bitmaps over those positions (§7.4), so a client that does not
decode them with the schema cannot tell which fields changed: the sandbox is exactly as unkind as the real bus.
"""

from __future__ import annotations

import base64
import hashlib
import json
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

NAMESPACE = "com.sforce.eventbus"
CHANGE_TYPES = ("CREATE", "UPDATE", "DELETE", "UNDELETE", "GAP_CREATE", "GAP_UPDATE", "GAP_DELETE", "GAP_UNDELETE",
                "GAP_OVERFLOW", "SNAPSHOT")
GAP_TYPES = frozenset({"GAP_CREATE", "GAP_UPDATE", "GAP_DELETE", "GAP_UNDELETE", "GAP_OVERFLOW"})
# Not in a change event body (UNCONFIRMED for SystemModstamp; the record id travels in the header's recordIds).
BODY_EXCLUDED = frozenset({"Id", "IsDeleted", "SystemModstamp"})
ADDRESS_PARTS = ("Street", "City", "State", "PostalCode", "Country")
ADDRESS_SUBFIELDS = (("Street", "string"), ("City", "string"), ("State", "string"), ("PostalCode", "string"),
                     ("Country", "string"), ("Latitude", "double"), ("Longitude", "double"),
                     ("GeocodeAccuracy", "string"))
NAME_PARTS = ("Salutation", "FirstName", "LastName")
_AVRO_TYPES = {"boolean": "boolean", "int": "int", "double": "double", "currency": "double", "percent": "double",
               "datetime": "long", "date": "long", "time": "long"}  # everything else is a string
_DOC_TYPES = {"datetime": "DateTime", "date": "Date", "reference": "Reference", "boolean": "Boolean",
              "currency": "Currency", "double": "Double", "picklist": "Picklist", "textarea": "Text"}


@dataclass(frozen=True)
class Slot:
    """One top-level body field: a plain field (``parts`` empty) or a compound of record fields."""

    name: str
    avro: str  # Avro type of a plain field
    doc: str
    parts: tuple[tuple[str, str, str], ...] = ()  # (sub-field name, record field it comes from or "", avro type)


@dataclass(frozen=True)
class EventSchema:
    """One object's change event schema: its JSON (as served), its id, and the positions bitmaps refer to."""

    entity: str
    slots: tuple[Slot, ...]
    json: str
    schema_id: str

    def position(self, field: str) -> tuple[int, int | None] | None:
        """(top-level position, sub-field position or None) of a record field; position 0 is the header."""
        for pos, slot in enumerate(self.slots, start=1):
            if not slot.parts and slot.name == field:
                return pos, None
            for sub, (_, source, _) in enumerate(slot.parts):
                if source == field:
                    return pos, sub
        return None


def event_name(entity: str) -> str:
    """``Account`` -> ``AccountChangeEvent``; ``Employee__c`` -> ``Employee__ChangeEvent`` (facts §7.1)."""
    return entity.removesuffix("__c") + "__ChangeEvent" if entity.endswith("__c") else entity + "ChangeEvent"


def _header_schema() -> dict[str, Any]:
    strings = {"type": "array", "items": "string"}
    return {"type": "record", "name": "ChangeEventHeader", "namespace": NAMESPACE, "fields": [
        {"name": "entityName", "type": "string"}, {"name": "recordIds", "type": strings},
        {"name": "changeType", "type": {"type": "enum", "name": "ChangeType", "namespace": NAMESPACE,
                                        "symbols": list(CHANGE_TYPES)}},
        {"name": "changeOrigin", "type": "string"}, {"name": "transactionKey", "type": "string"},
        {"name": "sequenceNumber", "type": "int"}, {"name": "commitTimestamp", "type": "long"},
        {"name": "commitNumber", "type": "long"}, {"name": "commitUser", "type": "string"},
        {"name": "nulledFields", "type": strings}, {"name": "diffFields", "type": strings},
        {"name": "changedFields", "type": strings}]}


def _slots(fields: list[dict[str, Any]]) -> tuple[Slot, ...]:
    """Body slots in describe order, address parts folded into ``<Prefix>Address`` where the first part stood."""
    names = {f["name"] for f in fields}
    prefixes = {f["name"][:-len("Street")] for f in fields if f["name"].endswith("Street")
                and all(f["name"][:-len("Street")] + p in names for p in ADDRESS_PARTS)}
    has_name = {"Name", "LastName"} <= names
    slots: list[Slot] = []
    for f in fields:
        name, kind = f["name"], f.get("type", "string")
        if name in BODY_EXCLUDED:
            continue
        prefix = next((p for p in prefixes if name in {p + part for part in ADDRESS_PARTS}), None)
        if prefix is not None:
            if name == prefix + "Street":
                parts = tuple((sub, prefix + sub if sub in ADDRESS_PARTS else "", avro)
                              for sub, avro in ADDRESS_SUBFIELDS)
                slots.append(Slot(prefix + "Address", "", f"{prefix}Address:Address", parts))
            continue
        if has_name and name in NAME_PARTS:
            continue
        if has_name and name == "Name":
            parts = tuple((part, part, "string") for part in NAME_PARTS)
            slots.append(Slot("Name", "", "Name:PersonName", parts))
            continue
        slots.append(Slot(name, _AVRO_TYPES.get(kind, "string"), f"{name}:{_DOC_TYPES.get(kind, 'Text')}"))
    return tuple(slots)


def build_schema(entity: str, describe: dict[str, Any]) -> EventSchema:
    """The change event schema of ``entity`` from its describe body; the id hashes the schema, so it is stable."""
    slots = _slots(describe.get("fields", []))
    body: list[dict[str, Any]] = [{"name": "ChangeEventHeader", "type": _header_schema(),
                                   "doc": "Data:ChangeEventHeader"}]
    for slot in slots:
        if slot.parts:
            record = {"type": "record", "name": slot.name, "namespace": f"{NAMESPACE}.{event_name(entity)}",
                      "fields": [{"name": sub, "type": ["null", avro], "default": None} for sub, _, avro in slot.parts]}
            body.append({"name": slot.name, "type": ["null", record], "doc": slot.doc, "default": None})
        else:
            body.append({"name": slot.name, "type": ["null", slot.avro], "doc": slot.doc, "default": None})
    schema: dict[str, Any] = {"name": event_name(entity), "namespace": NAMESPACE, "type": "record", "fields": body}
    digest = hashlib.sha256(json.dumps(schema, sort_keys=True).encode()).digest()
    schema_id = base64.urlsafe_b64encode(digest[:16]).decode().rstrip("=")
    schema["uuid"] = schema_id
    return EventSchema(entity, slots, json.dumps(schema), schema_id)


def bitmap(schema: EventSchema, fields: tuple[str, ...] | list[str]) -> list[str]:
    """Facts §7.4: ``"0x…"`` over top-level positions, then ``"<pos>-0x…"`` per compound with changed parts.

    A field the schema does not carry (``SystemModstamp``) has no bit. An empty field list is an empty list.
    """
    top = 0
    nested: dict[int, int] = {}
    for name in fields:
        found = schema.position(name)
        if found is None:
            continue
        pos, sub = found
        if sub is None:
            top |= 1 << pos
        else:
            nested[pos] = nested.get(pos, 0) | 1 << sub
    if not top and not nested:
        return []
    return [_hex(top)] + [f"{pos}-{_hex(bits)}" for pos, bits in sorted(nested.items())]


def _hex(bits: int) -> str:
    digits = f"{bits:X}"
    return "0x" + digits.zfill(len(digits) + len(digits) % 2)


def to_avro_value(avro: str, value: Any) -> Any:
    """A record value in its Avro type: datetimes and dates as epoch ms (facts §7.3), numbers as numbers."""
    if value is None:
        return None
    if avro == "long":
        return _epoch_ms(value)
    if avro == "double":
        return float(value)
    if avro == "int":
        return int(value)
    if avro == "boolean":
        return bool(value)
    return value if isinstance(value, str) else str(value)


def _epoch_ms(value: Any) -> int:
    if isinstance(value, bool):
        raise ValueError(f"not a timestamp: {value!r}")
    if isinstance(value, int | float):
        return int(value)
    if isinstance(value, datetime):
        return int(value.timestamp() * 1000)
    if isinstance(value, date):
        return int(datetime(value.year, value.month, value.day, tzinfo=UTC).timestamp() * 1000)
    text = str(value)
    if len(text) == 10:
        day = date.fromisoformat(text)
        return int(datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp() * 1000)
    parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return int(parsed.timestamp() * 1000)


def body_values(schema: EventSchema, record: dict[str, Any], only: set[str] | None) -> dict[str, Any]:
    """The body fields of ``record``; with ``only`` (an UPDATE's changed fields) every other field is null."""
    out: dict[str, Any] = {}
    for slot in schema.slots:
        if not slot.parts:
            keep = only is None or slot.name in only
            out[slot.name] = to_avro_value(slot.avro, record.get(slot.name)) if keep else None
            continue
        parts = {sub: to_avro_value(avro, record.get(source)) if source and (only is None or source in only)
                 else None for sub, source, avro in slot.parts}
        # a compound is present when a part has a value (all fields) or a part changed (an UPDATE)
        present = any(v is not None for v in parts.values()) if only is None else \
            any(source in only for _, source, _ in slot.parts if source)
        out[slot.name] = parts if present else None
    return out
