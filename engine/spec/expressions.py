"""The expressions of a spec: found by the schemas' `x-expression` tags, compiled as the runtime compiles them.

One list of expression fields (the tags) serves validator and runtime: every tagged value is compiled once by
`engine.config.compile_expr` (the runtime's JMESPath, sandboxed Jinja environment and path templates), and what
does not compile is a problem at its own field. See `engine.config.expr` for the four kinds.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import jinja2
from jinja2 import nodes
from jmespath import exceptions as jmespath_errors

from ml_connector.config import EXPRESSION_KINDS, Expr, ExpressionKind, compile_expr
from ml_connector.spec.problems import JsonPath
from ml_connector.spec.schemas import Kind
from ml_connector.spec.schemawalk import schema_walk
from ml_connector.transform.expressions import ENV, PATH_ENV, is_template

LOOKUP_FUNCTIONS = ("lookup", "lookup_source")
TAG = "x-expression"

Located = tuple[JsonPath, str]


def tagged_values(kind: Kind, data: Any) -> dict[JsonPath, tuple[ExpressionKind, Any]]:
    """(expression kind, value) of every value of `data` whose schema carries an `x-expression` tag."""
    found: dict[JsonPath, tuple[ExpressionKind, Any]] = {}
    for path, schema, value in schema_walk(kind).nodes(data):
        tag = schema.get(TAG)
        if tag is None:
            continue
        if tag not in EXPRESSION_KINDS:
            raise ValueError(f"{kind} schema: {TAG} {tag!r} is not one of {', '.join(EXPRESSION_KINDS)}")
        if path in found and found[path][0] != tag:
            raise ValueError(f"{kind} schema: {path} is tagged both {found[path][0]} and {tag}")
        found[path] = (tag, value)
    return found


def compile_expressions(kind: Kind, data: Any) -> tuple[dict[JsonPath, Expr], list[Located]]:
    """Every tagged value of `data` compiled, and the (path, message) of each that does not compile."""
    compiled: dict[JsonPath, Expr] = {}
    problems: list[Located] = []
    for path, (expression_kind, value) in tagged_values(kind, data).items():
        expr, errors = compile_value(expression_kind, value, path)
        problems += errors
        if expr is not None:
            compiled[path] = expr
    return compiled, problems


def compile_value(kind: ExpressionKind, value: Any, path: JsonPath) -> tuple[Expr | None, list[Located]]:
    """`value` compiled as `kind`, or the problems of each string inside it that does not compile."""
    strings_only = kind in ("jmespath", "path")
    if not isinstance(value, str) if strings_only else kind == "mapping" and isinstance(value, (dict, list)):
        return None, []  # the schema reports the wrong type
    try:
        expr = compile_expr(kind, value)
    except (jmespath_errors.JMESPathError, jinja2.TemplateError) as exc:  # say where inside `value`, and why
        errors = [(leaf, error) for leaf, text in strings(value, path) if (error := _error(kind, text, True))]
        return None, errors or [(path, str(exc))]
    errors = [(leaf, error) for leaf, text in strings(value, path) if (error := _error(kind, text, False))]
    return (None, errors) if errors else (expr, [])


def jinja_sources(path: JsonPath, expr: Expr) -> Iterator[tuple[JsonPath, str]]:
    """(path, text) of every Jinja template inside a compiled expression."""
    if expr.kind != "jmespath":
        yield from ((where, text) for where, text in strings(expr.source, path) if is_template(text))


def lookup_calls(template: str) -> list[tuple[str, str]]:
    """`(function, flow)` of every `lookup('flow', …)` / `lookup_source('flow', …)` naming a literal flow."""
    try:
        tree = ENV.parse(template)
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


def _error(kind: ExpressionKind, text: str, compile_it: bool) -> str | None:
    """Why one string does not compile as `kind` (checked only when `compile_it`), or uses an unknown filter."""
    if compile_it:
        try:
            compile_expr(kind, text)
        except jmespath_errors.JMESPathError as exc:
            return _jmespath_message(exc)
        except jinja2.TemplateError as exc:
            return _jinja_message(exc.message or str(exc), text, getattr(exc, "lineno", None))
    if kind != "jmespath" and is_template(text):
        unknown = _unknown_name(text, PATH_ENV if kind == "path" else ENV)
        return _jinja_message(unknown, text, None) if unknown else None
    return None


def _unknown_name(template: str, env: jinja2.Environment) -> str | None:
    """A filter or test the environment lacks; Jinja itself defers those inside `{% if %}` to run time."""
    tree = env.parse(template)
    for node in tree.find_all(nodes.Filter):
        if node.name not in env.filters:
            return f"no filter named '{node.name}'"
    for test in tree.find_all(nodes.Test):
        if test.name not in env.tests:
            return f"no test named '{test.name}'"
    return None


def _jinja_message(message: str, template: str, line: int | None) -> str:
    message = message.rstrip(".")
    message = message[:1].lower() + message[1:]
    where = f" (template line {line})" if line and "\n" in template.strip() else ""
    return f"invalid Jinja template: {message}{where}"


def _jmespath_message(exc: jmespath_errors.JMESPathError) -> str:
    if isinstance(exc, jmespath_errors.IncompleteExpressionError):
        return "invalid JMESPath: incomplete expression"
    if isinstance(exc, jmespath_errors.LexerError):
        return f"invalid JMESPath: {exc.message} at column {exc.lexer_position + 1}"
    if isinstance(exc, jmespath_errors.ParseError):
        return f"invalid JMESPath: {exc.msg} at column {exc.lex_position + 1} (token {exc.token_value!r})"
    if isinstance(exc, jmespath_errors.EmptyExpressionError):
        return "invalid JMESPath: empty expression"
    return f"invalid JMESPath: {str(exc).splitlines()[0]}"


def strings(value: Any, path: JsonPath) -> Iterator[tuple[JsonPath, str]]:
    """Every string inside `value` (keys excluded) with its path."""
    if isinstance(value, str):
        yield path, value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from strings(item, (*path, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from strings(item, (*path, index))
