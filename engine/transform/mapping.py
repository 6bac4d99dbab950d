"""A mapping spec compiled once: filter, key, let, fields (with child lists), producing target payloads."""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, cast

from ml_connector.config import Expr, MappingConfig
from ml_connector.config.entity import EntityConfig
from ml_connector.config.mapping import ChildListConfig, FieldConfig
from ml_connector.errors import MlConnectorError
from ml_connector.transform.expressions import (
    DECLARED_ONLY,
    Constant,
    JMESPathExpression,
    TemplateTree,
    UndeclaredName,
)


class Deferred(Exception):
    """A record references something not synced yet; it waits for the flow it depends on."""


class MappingError(Exception):
    """A record could not be mapped (bad data, not bad spec)."""


def require_reference(flow: str, value: Any) -> str:
    """A lookup's value as a key; an empty one is the record's own problem (no later sync can resolve it)."""
    if value is None or value == "":
        raise MappingError(f"lookup into {flow!r} got an empty value")
    return str(value)


class UndeclaredField(MlConnectorError):
    """A mapping read a name its source entity does not declare: the spec is wrong, not the record."""


def declared_names(config: MappingConfig, source: EntityConfig | None) -> frozenset[str] | None:
    """The top-level names of a record this flow maps, when its source declares them (None: not declared).

    Declared fields, the custom-field object and the expansions the flow asks for; with `from.each` naming a
    declared array of objects, that array's fields.
    """
    if source is None or source.fields is None:
        return None
    names = set(source.fields) | set(config.source.expand)
    if source.custom_fields is not None:
        names.add(source.custom_fields.object)
    if config.source.each is None:
        return frozenset(names)
    items = source.fields.get(config.source.each.source) if isinstance(config.source.each.source, str) else None
    return frozenset(items.fields) if items is not None and items.fields is not None else None


Lookup = Callable[[str, Any], Any]


@dataclass(frozen=True)
class MapResult:
    key: str
    payload: dict[str, Any] | None  # None: filtered out
    target_id: str | None = None  # given by the mapping's `target_id`, else the id map decides
    digest: str | None = field(default=None, compare=False)  # content_hash(payload), computed with the mapping


# name as written, its dotted target path split, Expr or _ChildList, the Expr's own evaluation (None for a list), and
# whether its values are checked one by one for what JSON cannot carry (a template's may be anything; a JMESPath
# value or a constant is JSON data already, and the payload's strict encoding refuses a NaN it may hold)
_Field = tuple[str, tuple[str, ...], Any, Callable[[Any], Any] | None, bool]


@dataclass(frozen=True)
class _ChildList:
    each: Expr
    fields: list[_Field]


def _field_paths(fields: Mapping[str, FieldConfig]) -> list[_Field]:
    """The mapped fields by name and target path (split once here, not per record; child lists likewise)."""
    compiled: list[_Field] = []
    for path, value in fields.items():
        target = tuple(path.split("."))
        if isinstance(value, ChildListConfig):
            compiled.append((path, target, _ChildList(value.each, _field_paths(value.fields)), None, True))
        else:
            compiled.append((path, target, value, _direct(value),
                             not isinstance(value.compiled, (JMESPathExpression, Constant))))
    return compiled


def _direct(expr: Expr) -> Callable[[Any], Any]:
    """What ``expr.evaluate`` calls, bound once: a field costs one call per record instead of three."""
    compiled = expr.compiled
    if expr.kind == "jmespath":
        return cast(Callable[[Any], Any], compiled.search)
    if isinstance(compiled, TemplateTree):
        return cast(Callable[[Any], Any], compiled.render)
    return cast(Callable[[Any], Any], compiled.evaluate)


def _assign(payload: dict[str, Any], path: tuple[str, ...], value: Any) -> None:
    node = payload
    for part in path[:-1]:
        node = node.setdefault(part, {})
    node[path[-1]] = value


def _type_name(value: Any) -> str:
    return "null" if value is None else f"a {type(value).__name__}"


_LEAVES = frozenset({str, int, bool, type(None)})  # exact types that are JSON, tested before the isinstance chains
_PLAIN = _LEAVES | {float}  # and those that hold no text


def _not_json(value: Any, where: str = "") -> tuple[str, str] | None:
    """Where inside ``value`` something is not JSON, and what (None when it all is).

    A payload goes to the target exactly as mapped, so a value JSON cannot carry (an object a template made,
    NaN) is the record's problem, found here with its path, not a crash at send time.
    """
    if value is None or isinstance(value, (str, bool, int)):
        return None
    if isinstance(value, float):
        return None if math.isfinite(value) else (where, f"{value} is not a JSON number")
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                return where, f"the key {key!r} is not text"
            if type(item) in _LEAVES:
                continue
            found = _not_json(item, f"{where}.{key}")
            if found:
                return found
        return None
    if isinstance(value, list):
        for index, item in enumerate(value):
            if type(item) in _LEAVES:
                continue
            found = _not_json(item, f"{where}[{index}]")
            if found:
                return found
        return None
    return where, f"{_type_name(value)} is not a JSON value"




def _too_long(value: Any, limit: int) -> tuple[str, int] | None:
    """Where inside ``value`` a text is longer than ``limit`` characters, and its length (None when none is).

    A 200 MB response must not end up in a product name: the record is parked instead of sent. The path is
    spelled only for the text found (every record is checked; almost none has one).
    """
    found = _longest_path(value, limit)
    if found is None:
        return None
    length, steps = found
    where = ""
    for index, step in reversed(steps):
        where = f"{where}[{step}]" if index else f"{where}.{step}" if where else str(step)
    return where, length


def _longest_path(value: Any, limit: int) -> tuple[int, list[tuple[bool, Any]]] | None:
    """The length of the first text longer than ``limit`` and the steps to it (is an index, key or index),
    innermost first."""
    if isinstance(value, str):
        return (len(value), []) if len(value) > limit else None
    index = isinstance(value, list)
    if isinstance(value, dict):
        items: Any = value.items()
    elif index:
        items = enumerate(value)
    else:
        return None
    for step, item in items:
        if type(item) is str:  # the common case inline: a call per text was most of the check's cost
            if len(item) > limit:
                return len(item), [(index, step)]
            continue
        if type(item) in _PLAIN:
            continue
        found = _longest_path(item, limit)
        if found is not None:
            found[1].append((index, step))
            return found
    return None


#: One encoder for every hash (`json.dumps` with options builds a new one per call); the same text as
#: `json.dumps(payload, sort_keys=True, separators=(",", ":"), default=str)`, so stored hashes stay comparable.
_HASH_ENCODER = json.JSONEncoder(sort_keys=True, separators=(",", ":"), default=str)


#: The same text for JSON data; refuses NaN and anything that is not JSON instead of writing it as text.
_STRICT_ENCODER = json.JSONEncoder(sort_keys=True, separators=(",", ":"), allow_nan=False)


def _not_json_field(fields: list[_Field], payload: dict[str, Any]) -> str | None:
    """Which mapped field holds what JSON cannot carry, said as the field check says it."""
    for name, path, _expr, direct, _check in fields:
        value: Any = payload
        for part in path:
            value = value.get(part) if isinstance(value, dict) else None
        problem = _not_json(value) if direct is not None else None
        if problem:
            return f"field {name}{problem[0]}: {problem[1]}"
    return None


def _field_error(field: str, exc: Exception) -> Exception:
    """What a field's evaluation raising ``exc`` is: a spec error (an undeclared name), else the record's data
    (wrong types, division by zero, strict undefined)."""
    if isinstance(exc, UndeclaredName):
        return UndeclaredField(f"field {field}: {exc} (a spec error: declare it or fix the name)")
    return MappingError(f"field {field}: {type(exc).__name__}: {exc}")


def content_hash(payload: Any) -> str:
    """A stable hash of a mapped payload (key order does not matter)."""
    return hashlib.sha256(_HASH_ENCODER.encode(payload).encode()).hexdigest()


class CompiledMapping:
    """One flow's transformation from a source record to a target payload (expressions compiled at load)."""

    def __init__(self, config: MappingConfig, source: EntityConfig | None = None) -> None:
        self.flow = config.flow
        self.declared = declared_names(config, source)  # None: an absent name is null; else only these exist
        self._nulls: dict[str, None] = dict.fromkeys(self.declared or ())
        self.filter = config.filter
        self.key = config.key
        self.each = config.source.each
        self.lets = list(config.let.items())
        self.fields = _field_paths(config.fields)
        self.target_id = config.target_id
        self.max_value_length = config.max_value_length

    def explode(self, record: dict[str, Any]) -> list[dict[str, Any]]:
        """The records this flow maps from one source record (children with ``_parent`` when ``each`` is set)."""
        if self.each is None:
            return [record]
        children = self.each.evaluate(record) or []
        return [{**child, "_parent": record} for child in children if isinstance(child, dict)]

    def source_key(self, record: Mapping[str, Any]) -> str:
        key = self._evaluate(self.key, record, "key")
        if key is None or key == "":
            raise MappingError(f"key expression {self.key.source!r} gave no value")
        return str(key)

    def map(self, record: dict[str, Any], lookup: Lookup, lookup_source: Lookup, key: str | None = None) -> MapResult:
        """Map one (already exploded) record. Raises Deferred or MappingError.

        ``key``: the record's `source_key` when the caller has it already (a flow run needs it first, to audit a
        record that fails), so it is not evaluated twice.
        """
        if key is None:
            key = self.source_key(record)
        context: dict[str, Any]  # one copy of the record: lets and lookups never land in the caller's record
        if self.declared is not None:  # a declared field the record lacks is null; any other name is an error
            context = {**self._nulls, **record, DECLARED_ONLY: True, "lookup": lookup, "lookup_source": lookup_source}
        else:
            context = {**record, "lookup": lookup, "lookup_source": lookup_source}
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
        payload = self._map_fields(self.fields, context)
        try:
            text = _STRICT_ENCODER.encode(payload)  # the hash's very text, or what JSON cannot carry refused
        except (TypeError, ValueError) as exc:
            raise MappingError(_not_json_field(self.fields, payload) or f"payload: {exc}") from None
        # JSON text is never shorter than any text inside it: a short payload needs no walk for long values
        too_long = _too_long(payload, self.max_value_length) if len(text) > self.max_value_length else None
        if too_long:
            raise MappingError(f"field {too_long[0]}: a text of {too_long[1]} characters is longer than "
                               f"max_value_length {self.max_value_length}")
        return MapResult(key, payload, target_id, hashlib.sha256(text.encode()).hexdigest())

    def _map_fields(self, fields: list[_Field], context: dict[str, Any]) -> dict[str, Any]:
        payload: dict[str, Any] = {}
        for name, path, expr, direct, check in fields:
            if direct is None:
                items = self._evaluate(expr.each, context, name)
                if items is None:
                    items = []
                if not isinstance(items, list):
                    raise MappingError(f"field {name}: {_type_name(items)} is not a list of objects")
                children = []
                for index, item in enumerate(items):
                    if not isinstance(item, dict):
                        raise MappingError(f"field {name}[{index}]: {_type_name(item)} is not an object")
                    child_context = {**context, **item, "_parent": context,  # an item's fields are not listed:
                                     "loop": {"index": index + 1, "index0": index}, DECLARED_ONLY: False}  # null
                    children.append(self._map_fields(expr.fields, child_context))
                _assign(payload, path, children)
                continue
            try:  # as _evaluate, inline: this is the loop every record of every flow goes through
                value = direct(context)
            except Deferred:
                raise
            except Exception as exc:
                raise _field_error(name, exc) from exc
            if check and type(value) not in _LEAVES:  # a float may be NaN
                problem = _not_json(value)
                if problem:
                    raise MappingError(f"field {name}{problem[0]}: {problem[1]}")
            if len(path) == 1:
                payload[name] = value
            else:
                _assign(payload, path, value)
        return payload

    @staticmethod
    def _evaluate(expr: Expr, context: Mapping[str, Any], field: str) -> Any:
        try:
            return expr.evaluate(context)
        except Deferred:
            raise
        except Exception as exc:
            raise _field_error(field, exc) from exc
