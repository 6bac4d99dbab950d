"""Normalised documents: every default written in the JSON Schemas filled in where the spec leaves it out."""

from __future__ import annotations

import copy
from collections.abc import Mapping
from functools import cache
from typing import Any

from ml_connector.spec.schemas import Kind, load_schema
from ml_connector.spec.schemawalk import SchemaWalk, schema_walk


def with_defaults(kind: Kind, data: Any) -> Any:
    """A deep copy of `data` with each schema `default` set where its key is absent (`data` is untouched).

    Applied after validation; the line map still describes `data`, and a filled-in key has no line of its own.
    """
    return _filled(schema_walk(kind), data)


def definition_defaults(kind: Kind, definition: str) -> Any:
    """An empty section of `$defs/<definition>` with its defaults filled in: what the runtime uses when a spec
    declares no such section at all (the pool of calls that name no quota)."""
    return _filled(_definition_walk(kind, definition), {})


@cache
def _definition_walk(kind: Kind, definition: str) -> SchemaWalk:
    return SchemaWalk({"$defs": load_schema(kind)["$defs"], "$ref": f"#/$defs/{definition}"})


def _filled(walk: SchemaWalk, data: Any) -> Any:
    normalised = copy.deepcopy(data)
    for _, schema, value in walk.nodes(normalised):
        if isinstance(value, dict):
            for key, sub in schema.get("properties", {}).items():
                if isinstance(sub, Mapping) and "default" in sub and key not in value:
                    value[key] = copy.deepcopy(sub["default"])
    return normalised
