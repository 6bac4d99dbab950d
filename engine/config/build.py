"""Building typed configs from normalised spec documents: one generic reader for every config dataclass.

A config dataclass names its fields after the spec's keys (`metadata={"key": "from"}` where Python cannot); a
field that may be absent defaults to None, and every other default comes from the JSON Schema, filled in by the
loader. A key that a config does not model, or an expression the schema does not tag (or the reverse), is an
error: schema and configs cannot drift apart unnoticed.
"""

from __future__ import annotations

import types
from collections.abc import Mapping
from dataclasses import MISSING, fields, is_dataclass
from typing import Any, Literal, TypeVar, Union, get_args, get_origin, get_type_hints

from ml_connector.config.expr import Expr

T = TypeVar("T")
JsonPath = tuple[str | int, ...]
_HINTS: dict[type, dict[str, Any]] = {}


class ConfigError(Exception):
    """A document that does not fit its config class (a schema/config mismatch, not a user error)."""

    def __init__(self, path: JsonPath, message: str) -> None:
        self.path = path
        self.message = message
        super().__init__(f"{'.'.join(map(str, path)) or '(root)'}: {message}")


def spec_key(field_name: str, metadata: Mapping[str, Any]) -> str:
    """The spec key a config field reads (its name unless `metadata["key"]` says otherwise)."""
    key: str = metadata.get("key", field_name)
    return key


def build(cls: type[T], doc: Any, path: JsonPath = ()) -> T:
    """An instance of the config dataclass `cls` read from the normalised document `doc`."""
    if not isinstance(doc, Mapping):
        raise ConfigError(path, f"expected an object for {cls.__name__}")
    hints = _hints(cls)
    values: dict[str, Any] = {}
    known: set[str] = set()
    for item in fields(cls):  # type: ignore[arg-type]
        key = spec_key(item.name, item.metadata)
        known.add(key)
        if key in doc:
            values[item.name] = _convert(hints[item.name], doc[key], (*path, key))
        elif item.default is MISSING:
            raise ConfigError((*path, key), f"missing: {cls.__name__} needs it given or defaulted by the schema")
    extra = [key for key in doc if key not in known and not (isinstance(key, str) and key.startswith("x-"))]
    if extra:
        raise ConfigError((*path, extra[0]), f"not modelled by {cls.__name__}")
    return cls(**values)


def _hints(cls: type) -> dict[str, Any]:
    if cls not in _HINTS:
        _HINTS[cls] = get_type_hints(cls)
    return _HINTS[cls]


def _convert(kind: Any, value: Any, path: JsonPath) -> Any:
    origin = get_origin(kind)
    if kind is Any:
        return value
    if origin in (Union, types.UnionType):
        return _union(get_args(kind), value, path)
    if origin is Literal:
        if value not in get_args(kind):
            raise ConfigError(path, f"{value!r} is not one of {get_args(kind)}")
        return value
    if isinstance(kind, type) and hasattr(kind, "from_spec"):  # a value the spec writes its own way (a duration)
        return kind.from_spec(value, path)
    if isinstance(kind, type) and is_dataclass(kind) and kind is not Expr:
        return build(kind, value, path)
    if origin is Mapping:
        if not isinstance(value, Mapping):
            raise ConfigError(path, "expected an object")
        item_kind = get_args(kind)[1]
        return {key: _convert(item_kind, item, (*path, key)) for key, item in value.items()}
    if origin is tuple:
        items = value if isinstance(value, list) else [value]  # one value where a list is allowed
        return tuple(_convert(get_args(kind)[0], item, (*path, index)) for index, item in enumerate(items))
    return _scalar(kind, value, path)


def _union(options: tuple[Any, ...], value: Any, path: JsonPath) -> Any:
    if value is None and type(None) in options:
        return None
    error = ConfigError(path, f"fits none of {options}")
    for option in options:
        if option is not type(None):
            try:
                return _convert(option, value, path)
            except ConfigError as exc:
                error = exc
    raise error


def _scalar(kind: Any, value: Any, path: JsonPath) -> Any:
    if kind is Expr:
        if not isinstance(value, Expr):
            raise ConfigError(path, "an expression the schema does not tag with x-expression")
        return value
    if isinstance(value, Expr):
        raise ConfigError(path, "tagged with x-expression in the schema but not an expression in the config")
    if kind is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if kind is int and isinstance(value, bool):
        raise ConfigError(path, "expected an integer, got a boolean")
    if kind in (str, int, bool) and isinstance(value, kind):
        return value
    raise ConfigError(path, f"expected {getattr(kind, '__name__', kind)}, got {type(value).__name__}")
