"""Expressions compiled once per spec: JMESPath queries and sandboxed Jinja templates.

A string containing ``{{`` or ``{%`` is a Jinja template; a template that is exactly one ``{{ … }}`` yields the
native value. Any other string is JMESPath (in mappings) or a literal (in connector templates).
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Protocol
from urllib.parse import quote

import jmespath
from jinja2 import ChainableUndefined, Undefined, nodes
from jinja2.compiler import Frame
from jinja2.filters import make_attrgetter
from jinja2.runtime import Context
from jinja2.utils import missing
from jmespath import exceptions as jmespath_errors
from jmespath.visitor import Options, TreeInterpreter

from ml_connector.transform.jmespath_closures import compile_closure
from ml_connector.transform.template_bounds import BoundedCodeGenerator, BoundedSandbox

_SINGLE_EXPRESSION = re.compile(r"^\s*\{\{(?P<expr>.*?)\}\}\s*$", re.DOTALL)


class Missing(ChainableUndefined):
    """A missing key or attribute. It behaves as null: renders empty, is ``none``, equals ``none``, chains."""

    __slots__ = ()

    def __eq__(self, other: object) -> bool:
        return other is None or isinstance(other, Undefined)

    def __ne__(self, other: object) -> bool:
        return not self.__eq__(other)

    def __hash__(self) -> int:
        return hash(None)


DECLARED_ONLY = "__declared_only__"  # a context holding it true: a name it lacks is not a field of the source


class UndeclaredName(NameError):
    """A template read a name the source record does not declare: a spec error, not a null."""


class _Context(Context):
    """Resolves template names; with `DECLARED_ONLY` set, a name absent from the context is an error.

    The mapping puts every declared field into the context (null when a record lacks it), so only a name the
    source does not declare is absent; without declarations an absent name stays null (`Missing`).
    """

    def resolve_or_missing(self, key: str) -> Any:
        found = super().resolve_or_missing(key)
        if found is missing and self.parent.get(DECLARED_ONLY):
            raise UndeclaredName(f"'{key}' is not a declared field of the source record")
        return found


def _text(value: Any) -> str:
    """A value as template text: null (and missing) is the empty string, never "None"."""
    return "" if value is None or isinstance(value, Undefined) else str(value)


def plain(value: Any) -> Any:
    """A value a template returned, as data: missing is null and tuples are lists, however deep."""
    if isinstance(value, Undefined):
        return None
    if isinstance(value, dict):
        return {key: plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(item) for item in value]
    return value


class _CodeGenerator(BoundedCodeGenerator):
    """Compiles ``a ~ b`` to join null as empty text, the way ``{{ a }}`` renders it (not Python's "None")."""

    def visit_Concat(self, node: nodes.Concat, frame: Frame) -> None:
        self.write("environment.concat_text((")
        for arg in node.nodes:
            self.visit(arg, frame)
            self.write(", ")
        self.write("))")


class _Environment(BoundedSandbox):
    code_generator_class = _CodeGenerator
    context_class = _Context

    def concat_text(self, values: Iterable[Any]) -> str:
        return self.bounded_text((_text(value) for value in values), "`~` would make a text")


def _coalesce(*values: Any) -> Any:
    """The first value that is neither None nor undefined nor an empty string."""
    for value in values:
        if value is not None and not isinstance(value, Undefined) and value != "":
            return value
    return None


def _sha256(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def _join(env: _Environment, value: Iterable[Any], separator: str = "", attribute: str | int | None = None) -> str:
    if attribute is not None:
        value = map(make_attrgetter(env, attribute), value)
    return env.bounded_join(str(separator), [_text(item) for item in value])


_BACKSLASHED = {"\\": "\\\\", "'": "\\'", '"': '\\"', "\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _sql_string(value: Any, style: str = "standard") -> str:
    """``value`` as a string literal of a query language, so data cannot end the literal and add query text.

    ``standard``: a quote is doubled (SQL); ``backslash``: quotes, backslashes and line breaks are escaped with a
    backslash. Null (use ``{% if %}``) and NUL characters have no literal: refused, never rendered as text.
    """
    if value is None or isinstance(value, Undefined):
        raise ValueError("sql_string: no value to quote (null); guard the condition with {% if %}")
    text = value if isinstance(value, str) else json.dumps(value) if isinstance(value, bool) else str(value)
    if "\x00" in text:
        raise ValueError("sql_string: a NUL character cannot be put in a query literal")
    if style == "standard":
        return "'" + text.replace("'", "''") + "'"
    if style == "backslash":
        return "'" + "".join(_BACKSLASHED.get(char, char) for char in text) + "'"
    raise ValueError(f"sql_string: unknown style {style!r} (standard or backslash)")


def _environment() -> _Environment:
    env = _Environment(undefined=Missing, autoescape=False, finalize=lambda value: "" if value is None else value)
    env.globals.update(coalesce=_coalesce)
    env.tests["none"] = lambda value: value is None or isinstance(value, Undefined)
    env.filters["sql_string"] = _sql_string
    env.filters.update(sha256=_sha256, tojson_compact=lambda v: json.dumps(v, separators=(",", ":")),
                       string=_text, join=lambda value, d="", attribute=None: _join(env, value, d, attribute))
    return env


class UnsafePath(ValueError):
    """A request path a record's data made unsafe (an empty value would address the collection instead)."""


class _EmptyPathValue(Exception):
    pass


def _path_segment(value: Any) -> str:
    """A value as (part of) one path segment: percent-encoded, so it can never add ``/`` or be a dot segment."""
    if value is None or isinstance(value, Undefined) or value == "":
        raise _EmptyPathValue
    text = quote(str(value), safe="")
    return text.replace(".", "%2E") if text in {".", ".."} else text


ENV = _environment()
PATH_ENV = _environment()
PATH_ENV.finalize = _path_segment


def is_template(text: str) -> bool:
    """True when a string is a Jinja template rather than a JMESPath expression or literal."""
    return "{{" in text or "{%" in text


class Expression(Protocol):
    """A compiled expression: evaluate it against a context mapping."""

    source: str

    def evaluate(self, context: Mapping[str, Any]) -> Any: ...


class Constant:
    """A literal value (numbers, booleans, null, or strings in literal positions)."""

    def __init__(self, value: Any) -> None:
        self.value = value
        self.source = repr(value)

    def evaluate(self, context: Mapping[str, Any]) -> Any:
        return self.value


class JMESPathExpression:
    """A JMESPath query over the context."""

    def __init__(self, source: str) -> None:
        self.source = source
        self._compiled = compile_jmespath(source)
        self.evaluate: Callable[[Mapping[str, Any]], Any] = self._compiled.search  # one call less per evaluation


#: One interpreter for every search: jmespath's own `search` builds a new one (and its function table) per call,
#: which was most of a mapping's cost. It keeps no state between searches beyond a cache of its visit methods.
_INTERPRETER = TreeInterpreter(Options())


def _field_names(node: dict[str, Any]) -> tuple[str, ...] | None:
    """The names of a plain field path (`name`, `addr.city`, `"a b".c`), None for any other expression."""
    if node["type"] == "field":
        return (node["value"],)
    if node["type"] == "subexpression":
        names: list[str] = []
        for child in node["children"]:
            found = _field_names(child)
            if found is None:
                return None
            names += found
        return tuple(names)
    return None


class CompiledQuery:
    """A parsed JMESPath expression: a plain field path is a dict walk, any other expression runs as closures
    compiled once (jmespath_closures), and only an expression those do not cover is searched on the interpreter.

    The walk keeps JMESPath's semantics exactly: a missing key, or a step into anything without ``get`` (a list,
    text, a number, null), is null.
    """

    def __init__(self, parsed: Any) -> None:
        self.expression: str = parsed.expression
        self.parsed: dict[str, Any] = parsed.parsed
        names = _field_names(self.parsed)
        self.simple = names is not None
        self.names: tuple[str, ...] = names or ()
        closure = compile_closure(self.parsed, _INTERPRETER) if names is None else None
        self.search: Callable[[Any], Any] = (closure or self._interpret if names is None
                                             else self._one_field if len(names) == 1 else self._walk)

    def _interpret(self, value: Any) -> Any:
        return _INTERPRETER.visit(self.parsed, value)

    def _one_field(self, value: Any) -> Any:
        try:
            return value.get(self.names[0])
        except AttributeError:
            return None

    def _walk(self, value: Any) -> Any:
        for name in self.names:
            try:
                value = value.get(name)
            except AttributeError:
                return None
            if value is None:
                return None
        return value


def compile_jmespath(source: str) -> CompiledQuery:
    """`jmespath.compile`; an expression nested past Python's stack is a parse error, not a RecursionError."""
    try:
        return CompiledQuery(jmespath.compile(source))
    except RecursionError:
        raise jmespath_errors.ParseError(0, source[:1], "", "the expression is nested too deeply") from None


class JinjaExpression:
    """A sandboxed Jinja template; a single ``{{ expr }}`` returns the expression's native value."""

    def __init__(self, source: str) -> None:
        self.source = source
        single = _SINGLE_EXPRESSION.match(source)
        self._native: Any = None
        self._template: Any = None
        if single and "{{" not in single.group("expr") and "}}" not in single.group("expr"):
            self._native = ENV.compile_expression(single.group("expr").strip(), undefined_to_none=True)
        else:
            self._template = ENV.from_string(source)

    def evaluate(self, context: Mapping[str, Any]) -> Any:
        if self._native is not None:
            return plain(self._native(context))  # a mapping, not **kwargs: one copy less
        assert self._template is not None
        return self._template.render(context)


def compile_expression(value: Any) -> Expression:
    """Compile a mapping value: Jinja if templated, JMESPath if another string, else a constant."""
    if isinstance(value, str):
        return JinjaExpression(value) if is_template(value) else JMESPathExpression(value)
    return Constant(value)


def compile_template(value: Any) -> Expression:
    """Compile a connector value: Jinja if templated, else a literal."""
    if isinstance(value, str) and is_template(value):
        return JinjaExpression(value)
    return Constant(value)


class PathTemplate:
    """A URL path template: every inserted value is percent-encoded, so data cannot add ``/`` or ``..``."""

    def __init__(self, source: str) -> None:
        self.source = source
        self._template = PATH_ENV.from_string(source)

    def evaluate(self, context: Mapping[str, Any]) -> Any:
        try:
            return self._template.render(**context)
        except _EmptyPathValue:
            raise UnsafePath(f"request path {self.source!r}: a value put into it is empty (null or missing)") from None


def compile_path(source: str) -> Expression:
    """Compile a request path: a template whose inserted values are encoded, or a literal path."""
    return PathTemplate(source) if is_template(source) else Constant(source)


class TemplateTree:
    """A nested structure (dicts, lists, scalars) whose strings are templates, compiled once."""

    def __init__(self, value: Any) -> None:
        self._tree = self._compile(value)

    @classmethod
    def _compile(cls, value: Any) -> Any:
        if isinstance(value, dict):
            return {k: cls._compile(v) for k, v in value.items()}
        if isinstance(value, list):
            return [cls._compile(v) for v in value]
        return compile_template(value)

    def render(self, context: Mapping[str, Any]) -> Any:
        return self._render(self._tree, context)

    def parts(self) -> dict[str, TemplateTree]:
        """The compiled values of an object by key (so that a failure can name the part that failed)."""
        found: dict[str, TemplateTree] = {}
        for key, node in self._tree.items():
            part = TemplateTree.__new__(TemplateTree)
            part._tree = node
            found[key] = part
        return found

    @classmethod
    def _render(cls, node: Any, context: Mapping[str, Any]) -> Any:
        if isinstance(node, dict):
            return {k: cls._render(v, context) for k, v in node.items()}
        if isinstance(node, list):
            return [cls._render(v, context) for v in node]
        return node.evaluate(context)
