"""The expressions of a spec: found by the schemas' `x-expression` tags, compiled as the runtime compiles them.

One list of expression fields (the tags) serves validator and runtime: every tagged value is compiled once by
`engine.config.compile_expr` (the runtime's JMESPath, sandboxed Jinja environment and path templates), and what
does not compile is a problem at its own field. See `engine.config.expr` for the four kinds.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Iterator
from typing import Any

import jinja2
from jinja2 import meta, nodes
from jmespath import exceptions as jmespath_errors

from ml_connector.config import EXPRESSION_KINDS, Expr, ExpressionKind, compile_expr
from ml_connector.spec.checkutil import did_you_mean
from ml_connector.spec.problems import JsonPath
from ml_connector.spec.schemas import Kind
from ml_connector.spec.schemawalk import schema_walk
from ml_connector.transform.expressions import ENV, PATH_ENV, is_template

LOOKUP_FUNCTIONS = ("lookup", "lookup_source")
#: What a template may call: the environment's functions, and in mappings the id-map lookups the runtime passes.
CONNECTOR_FUNCTIONS = frozenset(ENV.globals)
MAPPING_FUNCTIONS = CONNECTOR_FUNCTIONS | frozenset(LOOKUP_FUNCTIONS)
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
    functions = MAPPING_FUNCTIONS if kind == "mapping" else CONNECTOR_FUNCTIONS
    for path, (expression_kind, value) in tagged_values(kind, data).items():
        expr, errors = compile_value(expression_kind, value, path, functions)
        problems += errors
        if expr is not None:
            compiled[path] = expr
    return compiled, problems


def compile_value(
    kind: ExpressionKind, value: Any, path: JsonPath, functions: frozenset[str] | None = None
) -> tuple[Expr | None, list[Located]]:
    """`value` compiled as `kind`, or the problems of each string inside it that does not compile.

    `functions` are the names a template may call (default: those of a mapping, lookups included).
    """
    functions = MAPPING_FUNCTIONS if functions is None else functions
    if not _compilable(kind, value):
        return None, []  # the schema reports the wrong type
    try:
        expr = compile_expr(kind, value)
    except (jmespath_errors.JMESPathError, jinja2.TemplateError) as exc:  # say where inside `value`, and why
        errors = [(leaf, error) for leaf, text in strings(value, path)
                  if (error := _error(kind, text, True, functions))]
        return None, errors or [(path, str(exc))]
    errors = [(leaf, error) for leaf, text in strings(value, path)
              if (error := _error(kind, text, False, functions))]
    return (None, errors) if errors else (expr, [])


def _compilable(kind: ExpressionKind, value: Any) -> bool:
    """Whether `value` has a type `kind` compiles (else the schema reports it)."""
    if kind in ("jmespath", "path"):
        return isinstance(value, str)
    return not (kind == "mapping" and isinstance(value, (dict, list)))


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


def _error(kind: ExpressionKind, text: str, compile_it: bool, functions: frozenset[str]) -> str | None:
    """Why one string does not compile as `kind` (checked only when `compile_it`), or uses an unknown filter,
    test or function."""
    if compile_it:
        try:
            compile_expr(kind, text)
        except jmespath_errors.JMESPathError as exc:
            return _jmespath_message(exc)
        except jinja2.TemplateError as exc:  # an unknown filter or test is said with a close name, if there is one
            unknown = _parsed_unknown_name(text, PATH_ENV if kind == "path" else ENV, functions)
            return _jinja_message(unknown or exc.message or str(exc), text, getattr(exc, "lineno", None))
    if kind != "jmespath" and is_template(text):
        unknown = _unknown_name(text, PATH_ENV if kind == "path" else ENV, functions)
        return _jinja_message(unknown, text, None) if unknown else None
    return None


def _unknown_name(template: str, env: jinja2.Environment, functions: frozenset[str]) -> str | None:
    """A filter, test or function the template cannot have: Jinja defers unknown filters inside `{% if %}` to run
    time, and a call to an unknown name fails only when a record reaches it."""
    tree = env.parse(template)
    for node in tree.find_all(nodes.Filter):
        if node.name not in env.filters:
            return f"no filter named '{node.name}'" + _close(node.name, env.filters)
    for test in tree.find_all(nodes.Test):
        if test.name not in env.tests:
            return f"no test named '{test.name}'" + _close(test.name, env.tests)
    free = meta.find_undeclared_variables(tree)  # names the template does not define itself ({% set %}, macros)
    for call in tree.find_all(nodes.Call):
        name = call.node.name if isinstance(call.node, nodes.Name) else None
        if name is not None and name in free and name not in functions:
            return f"no function named '{name}'" + did_you_mean(name, sorted(functions))
    return None


def _parsed_unknown_name(template: str, env: jinja2.Environment, functions: frozenset[str]) -> str | None:
    try:
        return _unknown_name(template, env, functions)
    except jinja2.TemplateSyntaxError:
        return None


def _close(name: str, known: Iterable[str]) -> str:
    """` (did you mean 'x'?)` for a close name; nothing else (the lists of filters and tests are long)."""
    close = difflib.get_close_matches(name, list(known), n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else ""


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
