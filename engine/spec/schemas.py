"""JSON Schema validation of spec documents, with errors turned into located, readable problems."""

from __future__ import annotations

import difflib
import importlib.util
import json
import re
from collections.abc import Iterator, Mapping
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from ml_connector.spec.problems import JsonPath, SpecProblem, field_name, sort_problems
from ml_connector.spec.yamlload import SourceMap

if TYPE_CHECKING:  # jsonschema is imported when a document is first validated: a cached load never is (~40 ms)
    from jsonschema import Draft202012Validator
    from jsonschema.exceptions import ValidationError

Kind = Literal["connector", "mapping", "integration", "workspace"]
KINDS: tuple[Kind, ...] = ("connector", "mapping", "integration", "workspace")
def _schema_dir() -> Path:
    """The repository's ``schema/`` (a checkout or editable install), else the copy installed with the package."""
    checkout = Path(__file__).resolve().parents[2] / "schema"
    if checkout.is_dir():
        return checkout
    installed = importlib.util.find_spec("ml_connector_schema")
    locations = list(installed.submodule_search_locations or []) if installed else []
    return Path(locations[0]) if locations else checkout


SCHEMA_DIR = _schema_dir()

_JSON_TYPES = {
    dict: "object",
    list: "array",
    str: "string",
    bool: "boolean",
    int: "integer",
    float: "number",
    type(None): "null",
}


@cache
def load_schema(kind: Kind) -> dict[str, Any]:
    """The JSON Schema of one kind of spec file (`schema/<kind>.schema.json`)."""
    schema: dict[str, Any] = json.loads((SCHEMA_DIR / f"{kind}.schema.json").read_text(encoding="utf-8"))
    return schema


@cache
def _validator(kind: Kind) -> Draft202012Validator:
    from jsonschema import Draft202012Validator

    schema = load_schema(kind)
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema)


def validate_document(kind: Kind, data: Any, source: SourceMap, file: str) -> list[SpecProblem]:
    """Every schema violation of `data` as a problem at the line of the offending field, in line order."""
    problems: list[SpecProblem] = []
    for error in _validator(kind).iter_errors(data):
        for path, message in _describe(error):
            problems.append(SpecProblem(file, source.line_of(path), field_name(path), message))
    return sort_problems(problems)


def json_type(value: Any) -> str:
    """The JSON type name of a loaded YAML value (`date` and other YAML-only types by their own name)."""
    return _JSON_TYPES.get(type(value), type(value).__name__)


def _describe(error: ValidationError) -> Iterator[tuple[JsonPath, str]]:
    """(path, message) pairs for one validation error; messages never quote a secret's value."""
    path: JsonPath = tuple(error.absolute_path)
    instance: Any = error.instance
    schema, kind = error.schema, error.validator
    value: Any = error.validator_value
    if "propertyNames" in error.relative_schema_path:  # `instance` is the offending key
        reason = "must not be empty" if kind == "minLength" else f"must match {value}"
        yield (*path, instance), f"invalid key {_short(instance)}: {reason}"
    elif kind == "additionalProperties" and isinstance(instance, dict) and isinstance(schema, Mapping):
        for key in _extra_keys(instance, schema):
            yield (*path, key), _unknown_key(key, list(schema.get("properties", {})))
    elif kind == "required" and isinstance(instance, dict):
        for key in value:
            if key not in instance:
                yield path, f"missing required key '{key}'"
    elif kind == "type":
        yield path, f"expected {_or(_as_list(value))}, got {json_type(instance)}"
    elif kind == "enum":
        yield (
            path,
            f"{_short(instance)} is not one of: {', '.join(map(str, value))}{_suggest(instance, value)}",
        )
    elif kind == "const":
        yield path, f"must be {json.dumps(value)}"
    elif kind == "not" and isinstance(value, Mapping) and value.get("required"):
        key = value["required"][-1]
        yield (*path, key), value.get("description") or f"key '{key}' is not allowed here"
    elif kind in ("oneOf", "anyOf") and _all_required(value) and isinstance(instance, dict):
        options = [sub["required"][0] for sub in value]
        present = [key for key in options if key in instance]
        if present and kind == "oneOf":
            yield (*path, present[-1]), f"give only one of {_or(options)} (found {', '.join(present)})"
        else:
            yield path, f"needs one of {_or(options)}"
    elif kind == "dependentRequired" and isinstance(instance, dict):
        for trigger, needed in value.items():
            for key in needed:
                if trigger in instance and key not in instance:
                    yield path + (trigger,), f"'{key}' is required when '{trigger}' is given"
    elif kind == "pattern":
        yield path, f"{_short(instance)} does not match {value}"
    elif kind in ("minProperties", "minItems", "minLength") and value == 1:
        yield path, "must not be empty"
    elif kind == "uniqueItems":
        yield path, "items must be unique"
    elif kind in ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"):
        sign = {"minimum": ">=", "maximum": "<=", "exclusiveMinimum": ">", "exclusiveMaximum": "<"}[kind]
        yield path, f"must be {sign} {value}"
    elif schema is False:
        yield path, "is not allowed here"
    else:
        yield path, _fallback(error)


def _extra_keys(instance: dict[Any, Any], schema: Mapping[str, Any]) -> list[Any]:
    known = set(schema.get("properties", {}))
    patterns = [re.compile(p) for p in schema.get("patternProperties", {})]
    return [
        key
        for key in instance
        if key not in known and not (isinstance(key, str) and any(p.search(key) for p in patterns))
    ]


def _unknown_key(key: Any, allowed: list[str]) -> str:
    message = f"unknown key '{key}'"
    close = difflib.get_close_matches(str(key), allowed, n=1, cutoff=0.6)
    if close:
        return f"{message} (did you mean '{close[0]}'?)"
    if allowed:
        return f"{message} (allowed: {', '.join(allowed)})"
    return message


def _suggest(instance: Any, options: list[Any]) -> str:
    if not isinstance(instance, str):
        return ""
    close = difflib.get_close_matches(instance, [str(o) for o in options], n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else ""


def _all_required(subschemas: Any) -> bool:
    return isinstance(subschemas, list) and all(
        isinstance(sub, Mapping) and set(sub) == {"required"} and len(sub["required"]) == 1
        for sub in subschemas
    )


def _as_list(value: Any) -> list[str]:
    return list(value) if isinstance(value, list) else [str(value)]


def _or(options: list[str]) -> str:
    options = [str(o) for o in options]
    return options[0] if len(options) == 1 else ", ".join(options[:-1]) + " or " + options[-1]


def _short(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _fallback(error: ValidationError) -> str:
    description = error.schema.get("description") if isinstance(error.schema, Mapping) else None
    if error.validator in ("oneOf", "anyOf"):
        return "does not match any allowed form" + (f" ({description})" if description else "")
    return f"fails '{error.validator}' check" + (f" ({description})" if description else "")
