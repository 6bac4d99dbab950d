"""Reference checks shared by sales and procurement documents."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ml_connector.sandbox.qad.store import QadStore

Errors = list[tuple[str, str]]


def duplicate_errors(rows: Iterable[Mapping[str, Any]], path: str, fname: str, message: str) -> Errors:
    """One error per row repeating an earlier row's ``fname``."""
    seen: set[Any] = set()
    errors = []
    for k, row in enumerate(rows):
        value = row.get(fname)
        if value is not None and value in seen:
            errors.append((f"{path}[{k}].{fname}", message))
        seen.add(value)
    return errors


def item_errors(store: QadStore, fname: str, code: str, config: Mapping[str, Any]) -> Errors:
    """An order line's item must exist and (with ``enforce_active_references``) be ACTIVE."""
    item = store.peek("items", code)
    if item is None:
        return [(fname, f"Item '{code}' does not exist")]
    if config["enforce_active_references"] and item.get("itemStatus") != "ACTIVE":
        return [(fname, f"Item status {item.get('itemStatus')} does not allow order entry")]
    return []
