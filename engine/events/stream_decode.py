"""Decoding a stream event: its Avro payload by the writer's schema, and bitmaps of changed fields into names.

Schemas are fetched by id and cached (an id names one schema for good: a changed schema comes with a new id), so
a burst of events costs one schema request per id. A bitmap element ``0x..`` sets bit *i* when the schema's
top-level field at position *i* changed; ``<pos>-0x..`` does the same over the sub-fields of the compound (nested
record) at position *pos*, named ``Parent.Sub``.
"""

from __future__ import annotations

import asyncio
import io
import json
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import fastavro


class EventSchema:
    """A writer's schema: parsed for decoding, and its record fields by position for bitmaps."""

    def __init__(self, raw: dict[str, Any]) -> None:
        self.raw = raw
        self.parsed = fastavro.parse_schema(raw)
        self.fields: list[dict[str, Any]] = list(raw.get("fields") or [])

    def decode(self, payload: bytes) -> dict[str, Any]:
        """One event's payload (Avro binary, no container) as a dict."""
        record = fastavro.schemaless_reader(io.BytesIO(payload), self.parsed, None)
        if not isinstance(record, dict):
            raise ValueError("the payload is not a record")
        return record


def parse_schema(schema_json: str) -> EventSchema:
    """An Avro schema as a GetSchema answer gives it (JSON text)."""
    raw = json.loads(schema_json)
    if not isinstance(raw, dict) or raw.get("type") != "record":
        raise ValueError("the event schema is not an Avro record")
    return EventSchema(raw)


class SchemaCache:
    """Schemas by id, each fetched once (concurrent asks for one id share the fetch)."""

    def __init__(self, fetch: Callable[[str], Awaitable[str]]) -> None:
        self._fetch = fetch
        self._schemas: dict[str, EventSchema] = {}
        self._lock = asyncio.Lock()

    async def get(self, schema_id: str) -> EventSchema:
        if schema_id not in self._schemas:
            async with self._lock:
                if schema_id not in self._schemas:
                    self._schemas[schema_id] = parse_schema(await self._fetch(schema_id))
        return self._schemas[schema_id]


def _bits(hex_text: str) -> list[int]:
    value = int(hex_text, 16)
    return [position for position in range(value.bit_length()) if value >> position & 1]


def _nested_fields(field: dict[str, Any]) -> list[dict[str, Any]] | None:
    """The sub-fields of a compound field (a record, or a nullable one), None for a plain field."""
    kind = field.get("type")
    for option in kind if isinstance(kind, list) else [kind]:
        if isinstance(option, dict) and option.get("type") == "record":
            return list(option.get("fields") or [])
    return None


def _named(fields: Sequence[dict[str, Any]], positions: list[int], where: str) -> list[str]:
    for position in positions:
        if position >= len(fields):
            raise ValueError(f"bitmap bit at position {position} {where}, which has {len(fields)} fields")
    return [str(fields[position]["name"]) for position in positions]


def changed_field_names(schema: EventSchema, bitmaps: Sequence[str]) -> list[str]:
    """The field names a list of bitmaps sets: top-level fields first, then compound sub-fields, in order."""
    names: list[str] = []
    for element in bitmaps:
        parent, sep, hex_text = element.rpartition("-")
        if not sep:
            names += _named(schema.fields, _bits(element), "of the schema")
            continue
        position = int(parent)
        if position >= len(schema.fields):
            raise ValueError(f"bitmap {element!r} names position {position}, which the schema does not have")
        field = schema.fields[position]
        nested = _nested_fields(field)
        if nested is None:
            raise ValueError(f"bitmap {element!r}: field {field['name']!r} is not a compound field")
        names += [f"{field['name']}.{name}" for name in _named(nested, _bits(hex_text), f"of {field['name']}")]
    return names
