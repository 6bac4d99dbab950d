"""Syntax checks of the two expression languages, and where each appears in a spec.

Rules (spec language v1): in a mapping's `fields`, `filter`, `key`, `let` and `each`, a string containing `{{`
is a Jinja template and any other string is JMESPath; connector fields that select from a response are
JMESPath; any other connector string is a template when it contains `{{` or `{%`, else a plain literal.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import jinja2
import jmespath
from jinja2 import nodes
from jinja2.sandbox import SandboxedEnvironment
from jmespath import exceptions as jmespath_errors

from engine.spec.problems import JsonPath
from engine.transform.expressions import is_template  # one definition for validator and runtime

LOOKUP_FUNCTIONS = ("lookup", "lookup_source")
_JINJA = SandboxedEnvironment()


def is_mapping_template(text: str) -> bool:
    """A mapping expression that is Jinja (otherwise it is JMESPath)."""
    return "{{" in text


def jmespath_error(expression: str) -> str | None:
    """Why `expression` is not valid JMESPath, or None."""
    try:
        jmespath.compile(expression)
    except jmespath_errors.IncompleteExpressionError:
        return "invalid JMESPath: incomplete expression"
    except jmespath_errors.LexerError as exc:
        return f"invalid JMESPath: {exc.message} at column {exc.lexer_position + 1}"
    except jmespath_errors.ParseError as exc:
        return f"invalid JMESPath: {exc.msg} at column {exc.lex_position + 1} (token {exc.token_value!r})"
    except jmespath_errors.EmptyExpressionError:
        return "invalid JMESPath: empty expression"
    except jmespath_errors.JMESPathError as exc:
        return f"invalid JMESPath: {str(exc).splitlines()[0]}"
    return None


def jinja_error(template: str) -> str | None:
    """Why `template` does not parse as a Jinja template, or None."""
    try:
        _JINJA.parse(template)
    except jinja2.TemplateSyntaxError as exc:
        where = f" (template line {exc.lineno})" if "\n" in template.strip() else ""
        return f"invalid Jinja template: {exc.message}{where}"
    return None


def expression_error(text: str, *, mapping: bool) -> str | None:
    """Syntax problem of an expression string: Jinja if it is a template, JMESPath otherwise."""
    if is_mapping_template(text) if mapping else is_template(text):
        return jinja_error(text)
    error = jmespath_error(text)
    if error and "{%" in text:
        error += " (a Jinja template must contain '{{ ... }}')"
    return error


def lookup_calls(template: str) -> list[tuple[str, str]]:
    """`(function, flow)` of every `lookup('flow', …)` / `lookup_source('flow', …)` naming a literal flow."""
    try:
        tree = _JINJA.parse(template)
    except jinja2.TemplateSyntaxError:
        return []
    calls = []
    for call in tree.find_all(nodes.Call):
        if (
            isinstance(call.node, nodes.Name)
            and call.node.name in LOOKUP_FUNCTIONS
            and call.args
            and isinstance(call.args[0], nodes.Const)
            and isinstance(call.args[0].value, str)
        ):
            calls.append((call.node.name, call.args[0].value))
    return calls


def mapping_expressions(data: dict[str, Any]) -> Iterator[tuple[JsonPath, str]]:
    """Every expression string of a mapping: filter, key, let, from.each and fields (with child lists)."""
    for name in ("filter", "key", "target_id"):
        if isinstance(data.get(name), str):
            yield (name,), data[name]
    source = data.get("from")
    if isinstance(source, dict) and isinstance(source.get("each"), str):
        yield ("from", "each"), source["each"]
    for name, value in _items(data.get("let")):
        if isinstance(value, str):
            yield ("let", name), value
    yield from _field_expressions(data.get("fields"), ("fields",))


def mapping_templates(data: dict[str, Any]) -> Iterator[tuple[JsonPath, str]]:
    """Template strings of a mapping outside its expressions (`from.params`)."""
    source = data.get("from")
    if isinstance(source, dict):
        yield from (
            item for item in strings(source.get("params"), ("from", "params")) if is_template(item[1])
        )


def _field_expressions(fields: Any, path: JsonPath) -> Iterator[tuple[JsonPath, str]]:
    for name, value in _items(fields):
        if isinstance(value, str):
            yield (*path, name), value
        elif isinstance(value, dict):
            if isinstance(value.get("each"), str):
                yield (*path, name, "each"), value["each"]
            yield from _field_expressions(value.get("fields"), (*path, name, "fields"))


def connector_jmespaths(data: dict[str, Any]) -> Iterator[tuple[JsonPath, str]]:
    """Every JMESPath string of a connector (selectors into responses)."""
    candidates: list[JsonPath] = []
    for name, auth in _items(data.get("auth")):
        if isinstance(auth, dict) and auth.get("type") == "session":
            candidates += [("auth", name, "token"), ("auth", name, "expires_in")]
    responses = data.get("responses")
    for index in range(len(responses) if isinstance(responses, list) else 0):
        candidates += [("responses", index, "when", "body"), ("responses", index, "wait", "body")]
    for name, _ in _items(data.get("paginators")):
        candidates += [("paginators", name, "next"), ("paginators", name, "has_more")]
    for name, entity in _items(data.get("entities")):
        base: JsonPath = ("entities", name)
        candidates += [
            (*base, "read", "records"),
            (*base, "get", "record"),
            (*base, "custom_fields", "catalog", "records"),
            (*base, "write", "search", "records"),
        ]
        for child, _ in _items(_get(entity, ("expand",))):
            candidates.append((*base, "expand", child, "records"))
        for op in ("create", "update"):
            candidates.append((*base, "write", op, "id"))
            candidates += [
                (*base, "write", op, "results", part) for part in ("items", "id", "errors", "error_index")
            ]
    for path in candidates:
        value = _get(data, path)
        if isinstance(value, str):
            yield path, value


def strings(
    value: Any, path: JsonPath, skip: frozenset[JsonPath] = frozenset()
) -> Iterator[tuple[JsonPath, str]]:
    """Every string inside `value` (keys excluded) with its path, leaving out the paths in `skip`."""
    if path in skip:
        return
    if isinstance(value, str):
        yield path, value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from strings(item, (*path, key), skip)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from strings(item, (*path, index), skip)


def _items(value: Any) -> list[tuple[Any, Any]]:
    return list(value.items()) if isinstance(value, dict) else []


def _get(data: Any, path: JsonPath) -> Any:
    for part in path:
        if isinstance(data, dict):
            data = data.get(part)
        elif isinstance(data, list) and isinstance(part, int) and 0 <= part < len(data):
            data = data[part]
        else:
            return None
    return data
