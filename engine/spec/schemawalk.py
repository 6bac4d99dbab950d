"""Walking a document together with its JSON Schema: which subschemas apply to which values.

Defaults and expression tags live in the schemas; filling the one and compiling the other both need to know,
for each value of a document, the subschemas that describe it (through `$ref`, `allOf`, `if`/`then`/`else`,
the valid branch of `oneOf`/`anyOf`, `properties`, `patternProperties`, `additionalProperties` and `items`).
jsonschema's validator answers "is it valid", not "where does this subschema apply", hence this walker.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from functools import cache
from typing import TYPE_CHECKING, Any

from ml_connector.spec.problems import JsonPath
from ml_connector.spec.schemas import Kind, load_schema

if TYPE_CHECKING:
    from jsonschema import Draft202012Validator

Node = tuple[JsonPath, Mapping[str, Any], Any]


class SchemaWalk:
    """Applies one schema to documents; `nodes` yields every (path, subschema, value) that applies."""

    def __init__(self, schema: Mapping[str, Any]) -> None:
        self.root = schema
        self._validator: Draft202012Validator | None = None  # made when a branch is first chosen (see `_valid`)

    def nodes(self, instance: Any) -> Iterator[Node]:
        """Each subschema applying to each value, a value's own nodes before those of its children.

        A consumer may add keys to a dict when it is yielded (defaults): its children are listed afterwards.
        """
        yield from self._walk(instance, self.root, ())

    def _walk(self, instance: Any, schema: Any, path: JsonPath) -> Iterator[Node]:
        if not isinstance(schema, Mapping):
            return  # a boolean schema describes nothing
        yield path, schema, instance
        if "$ref" in schema:
            yield from self._walk(instance, self._resolve(schema["$ref"]), path)
        for sub in schema.get("allOf", ()):
            yield from self._walk(instance, sub, path)
        for sub in (*schema.get("anyOf", ()), *schema.get("oneOf", ())):
            if self._valid(instance, sub):
                yield from self._walk(instance, sub, path)
        if "if" in schema:
            branch = schema.get("then") if self._valid(instance, schema["if"]) else schema.get("else")
            yield from self._walk(instance, branch, path)
        if isinstance(instance, dict):
            for trigger, sub in schema.get("dependentSchemas", {}).items():
                if trigger in instance:
                    yield from self._walk(instance, sub, path)
            yield from self._children(instance, schema, path)
        elif isinstance(instance, list) and "items" in schema:
            for index, item in enumerate(list(instance)):
                yield from self._walk(item, schema["items"], (*path, index))

    def _children(self, instance: dict[Any, Any], schema: Mapping[str, Any], path: JsonPath) -> Iterator[Node]:
        properties = schema.get("properties", {})
        patterns = schema.get("patternProperties", {})
        for key, value in list(instance.items()):
            described = False
            if key in properties:
                described = True
                yield from self._walk(value, properties[key], (*path, key))
            for pattern, sub in patterns.items():
                if isinstance(key, str) and re.search(pattern, key):
                    described = True
                    yield from self._walk(value, sub, (*path, key))
            if not described and "additionalProperties" in schema:
                yield from self._walk(value, schema["additionalProperties"], (*path, key))

    def _valid(self, instance: Any, schema: Any) -> bool:
        if self._validator is None:  # jsonschema imported on first use: a command whose specs are cached never does
            from jsonschema import Draft202012Validator
            self._validator = Draft202012Validator(self.root)
        return bool(self._validator.evolve(schema=schema).is_valid(instance))

    def _resolve(self, ref: str) -> Any:
        """A local reference (`#/$defs/name`); the schemas use no other kind."""
        if not ref.startswith("#"):
            raise ValueError(f"only local $ref is supported, not {ref!r}")
        node: Any = self.root
        for part in ref[1:].split("/")[1:]:
            node = node[part.replace("~1", "/").replace("~0", "~")]
        return node


@cache
def schema_walk(kind: Kind) -> SchemaWalk:
    """The walker of one kind of spec file's schema."""
    return SchemaWalk(load_schema(kind))
