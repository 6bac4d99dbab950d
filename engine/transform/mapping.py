"""A mapping spec compiled once: filter, key, let, fields (with child lists), producing target payloads."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from engine.transform.expressions import Expression, compile_expression


class Deferred(Exception):
    """A record references something not synced yet; it waits for the flow it depends on."""


class MappingError(Exception):
    """A record could not be mapped (bad data, not bad spec)."""


Lookup = Callable[[str, Any], Any]


@dataclass(frozen=True)
class MapResult:
    key: str
    payload: dict[str, Any] | None  # None: filtered out
    target_id: str | None = None  # given by the mapping's `target_id`, else the id map decides


@dataclass
class _ChildList:
    each: Expression
    fields: list[tuple[tuple[str, ...], Any]]


def _compile_fields(fields: Mapping[str, Any]) -> list[tuple[tuple[str, ...], Any]]:
    compiled: list[tuple[tuple[str, ...], Any]] = []
    for path, value in fields.items():
        target = tuple(path.split("."))
        if isinstance(value, dict):
            compiled.append((target, _ChildList(compile_expression(value["each"]),
                                                _compile_fields(value["fields"]))))
        else:
            compiled.append((target, compile_expression(value)))
    return compiled


def _assign(payload: dict[str, Any], path: tuple[str, ...], value: Any) -> None:
    node = payload
    for part in path[:-1]:
        node = node.setdefault(part, {})
    node[path[-1]] = value


def content_hash(payload: Any) -> str:
    """A stable hash of a mapped payload (key order does not matter)."""
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()


class CompiledMapping:
    """One flow's transformation from a source record to a target payload."""

    def __init__(self, spec: Mapping[str, Any]) -> None:
        self.flow: str = spec["flow"]
        self.filter = compile_expression(spec["filter"]) if "filter" in spec else None
        self.key = compile_expression(spec.get("key", "id"))
        self.each = compile_expression(spec["from"]["each"]) if spec["from"].get("each") else None
        self.lets = [(name, compile_expression(expr)) for name, expr in (spec.get("let") or {}).items()]
        self.fields = _compile_fields(spec.get("fields") or {})
        self.target_id = compile_expression(spec["target_id"]) if spec.get("target_id") else None

    def explode(self, record: dict[str, Any]) -> list[dict[str, Any]]:
        """The records this flow maps from one source record (children with ``_parent`` when ``each`` is set)."""
        if self.each is None:
            return [record]
        children = self.each.evaluate(record) or []
        return [{**child, "_parent": record} for child in children if isinstance(child, dict)]

    def source_key(self, record: Mapping[str, Any]) -> str:
        key = self.key.evaluate(record)
        if key is None or key == "":
            raise MappingError(f"key expression {self.key.source!r} gave no value")
        return str(key)

    def map(self, record: dict[str, Any], lookup: Lookup, lookup_source: Lookup) -> MapResult:
        """Map one (already exploded) record. Raises Deferred or MappingError."""
        key = self.source_key(record)
        context: dict[str, Any] = {**record, "lookup": lookup, "lookup_source": lookup_source}
        for name, expr in self.lets:
            context[name] = self._evaluate(expr, context, name)
        if self.filter is not None and not self._evaluate(self.filter, context, "filter"):
            return MapResult(key, None)
        target_id = None
        if self.target_id is not None:
            found = self._evaluate(self.target_id, context, "target_id")
            if found in (None, ""):
                raise Deferred(f"target_id expression {self.target_id.source!r} gave no value")
            target_id = str(found)
        return MapResult(key, self._map_fields(self.fields, context), target_id)

    def _map_fields(self, fields: list[tuple[tuple[str, ...], Any]], context: dict[str, Any]) -> dict[str, Any]:
        payload: dict[str, Any] = {}
        for path, expr in fields:
            if isinstance(expr, _ChildList):
                items = self._evaluate(expr.each, context, ".".join(path)) or []
                children = []
                for index, item in enumerate(items):
                    child_context = {**context, **item, "_parent": context,
                                     "loop": {"index": index + 1, "index0": index}}
                    children.append(self._map_fields(expr.fields, child_context))
                _assign(payload, path, children)
            else:
                _assign(payload, path, self._evaluate(expr, context, ".".join(path)))
        return payload

    @staticmethod
    def _evaluate(expr: Expression, context: dict[str, Any], field: str) -> Any:
        try:
            return expr.evaluate(context)
        except Deferred:
            raise
        except Exception as exc:  # data errors: wrong types, division by zero, strict undefined
            raise MappingError(f"field {field}: {type(exc).__name__}: {exc}") from exc
