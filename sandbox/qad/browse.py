"""The qracore browse facade: browse ids, ``<field>,<op>,<value>[,literal]`` filters and flat rows."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from ml_connector.sandbox.qad.entities import SPECS
from ml_connector.sandbox.qad.timestamps import parse_timestamp_ms

_BROWSE_PREFIX = "urn:browse:bebrowse:com.qad.erp."
_BROWSE_OPS: dict[str, Callable[[Any, Any], bool]] = {
    "eq": lambda a, b: a == b, "ne": lambda a, b: a != b, "ge": lambda a, b: a >= b,
    "gt": lambda a, b: a > b, "le": lambda a, b: a <= b, "lt": lambda a, b: a < b,
}


def browse_entity(browse_id: str) -> str | None:
    """Entity of a browse id ``urn:browse:bebrowse:com.qad.erp.<module>.<entity>``, or None."""
    if not browse_id.startswith(_BROWSE_PREFIX):
        return None
    module, _, entity = browse_id[len(_BROWSE_PREFIX):].partition(".")
    spec = SPECS.get(entity)
    return entity if spec is not None and spec.module == module else None


def browse_filters(raw: list[str]) -> list[tuple[str, str, str]] | None:
    """Parse ``<field>,<op>,<value>[,literal]`` filters (field may be ``prefix.field``)."""
    out = []
    for text in raw:
        parts = text.split(",")
        if len(parts) == 4 and parts[3] == "literal":
            parts = parts[:3]
        if len(parts) != 3 or parts[1] not in _BROWSE_OPS:
            return None
        name = parts[0].rpartition(".")[2]
        if name == "lastModifiedDate":
            try:
                parse_timestamp_ms(parts[2])
            except ValueError:
                return None
        out.append((name, parts[1], parts[2]))
    return out


def flat(record: Mapping[str, Any]) -> dict[str, Any]:
    """A browse row: the record's scalar fields only."""
    return {k: v for k, v in record.items() if not isinstance(v, list | dict)}


def matches(record: Mapping[str, Any], filters: list[tuple[str, str, str]]) -> bool:
    for name, op, raw in filters:
        value = record.get(name)
        left: Any
        right: Any
        if name == "lastModifiedDate" and isinstance(value, str):
            left, right = parse_timestamp_ms(value), parse_timestamp_ms(raw)
        elif isinstance(value, bool):
            left, right = str(value).lower(), raw.lower()
        elif isinstance(value, int | float):
            try:
                left, right = float(value), float(raw)
            except ValueError:
                return False
        else:
            left, right = str(value), raw
        if value is None or not _BROWSE_OPS[op](left, right):
            return False
    return True
