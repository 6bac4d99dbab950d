"""What a record looks like to a mapping: shapes built from declared fields, and the field names expressions read.

A `Shape` is the static type of a value: an object with declared fields, an array of some shape, a scalar, or
`ANY` (not declared: nothing inside it is checked). Readers walk a JMESPath AST (`jmespath.parser.Parser`) or
a Jinja AST (the runtime's own sandboxed environment) over the shape of the current value and report every field
name that the shape does not declare, so a misspelt name is a spec problem instead of a silent null.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import jinja2
from jinja2 import meta, nodes
from jmespath import exceptions as jmespath_errors
from jmespath.parser import Parser

from ml_connector.transform.expressions import ENV, is_template

SCALAR_TYPES = ("string", "number", "integer", "boolean", "date", "datetime")


@dataclass(frozen=True)
class Field:
    """A declared field: its type, whether mappings may write it, and the shape of its value."""

    type: str
    writable: bool
    shape: Shape


@dataclass(frozen=True)
class Shape:
    """The static type of a value; `fields` None on an object means undeclared (nothing inside is checked), and
    an `open` object knows some names but does not report others (the items of an undeclared list)."""

    kind: str  # "object" | "array" | "scalar" | "any"
    label: str = ""
    fields: Mapping[str, Field] | None = None
    item: Shape | None = None
    open: bool = False

    def with_fields(self, extra: Mapping[str, Field]) -> Shape:
        """This object with more names (names it declares win); an undeclared value stays undeclared."""
        if self.fields is None:
            return self
        return Shape("object", self.label, {**extra, **self.fields}, open=self.open)

    def declared_or_open(self, extra: Mapping[str, Field]) -> Shape:
        """This object with `extra`, or, when it is not a declared object, an open one knowing only `extra`."""
        if self.kind == "object" and self.fields is not None:
            return self.with_fields(extra)
        return Shape("object", self.label, dict(extra), open=True)


ANY = Shape("any")
SCALAR = Shape("scalar")
ANY_FIELD = Field("any", True, ANY)


def object_shape(label: str, declared: Any) -> Shape:
    """The shape of a record whose `fields` declaration is `declared` (a spec dict, read defensively)."""
    return Shape("object", label, declared_fields(label, declared))


def declared_fields(label: str, declared: Any) -> dict[str, Field]:
    found: dict[str, Field] = {}
    for name, decl in (declared if isinstance(declared, dict) else {}).items():
        decl = decl if isinstance(decl, dict) else {}
        kind = decl.get("type", "any")
        inner = decl.get("fields")
        shape: Shape
        if kind in SCALAR_TYPES:
            shape = SCALAR
        elif kind == "object" and isinstance(inner, dict):
            shape = object_shape(f"{label}.{name}", inner)
        elif kind == "array":
            item = object_shape(f"{label}.{name}[]", inner) if isinstance(inner, dict) else ANY
            shape = Shape("array", f"{label}.{name}", item=item)
        else:
            shape = ANY
        found[str(name)] = Field(str(kind), decl.get("writable", True) is not False, shape)
    return found


def unknown_field(name: str, shape: Shape, hint: str = "") -> str:
    """`'x' is not a field of <label> (did you mean 'y'?)` for a name an object does not declare."""
    names = shape.fields or {}
    close = difflib.get_close_matches(name, list(names), n=1, cutoff=0.6)
    known = sorted((key for key, found in names.items() if found.type != "helper"), key=str.lower)
    if close:
        tail = f" (did you mean '{close[0]}'?)"
    elif hint:
        tail = ""
    else:
        shown = ", ".join(known[:15]) + (", …" if len(known) > 15 else "")
        tail = f" (declared: {shown})" if known else " (it declares none)"
    return f"'{name}' is not a field of {shape.label}{tail}{hint}"


def member(shape: Shape, name: str, report: Callable[[str], None], hint: str = "") -> Shape:
    """The shape of `shape.name`, reporting a name an object with declared fields lacks."""
    if shape.kind != "object" or shape.fields is None:
        return ANY
    found = shape.fields.get(name)
    if found is None:
        if not shape.open:
            report(unknown_field(name, shape, hint))
        return ANY
    return found.shape


def element(shape: Shape) -> Shape:
    return shape.item or ANY if shape.kind == "array" else ANY


@dataclass
class _JmesReader:
    report: Callable[[str], None]
    _parser: Parser = field(default_factory=Parser)

    def read(self, expression: str, shape: Shape) -> Shape:
        try:
            tree = self._parser.parse(expression).parsed
        except (jmespath_errors.JMESPathError, RecursionError):
            return ANY  # reported where expressions are compiled
        return self.walk(tree, shape)

    def walk(self, node: Mapping[str, Any], shape: Shape, hint: str = "") -> Shape:  # noqa: PLR0911, PLR0912
        kind, children = node.get("type"), node.get("children", [])
        if kind == "field":
            return member(shape, str(node["value"]), self.report, hint)
        if kind in ("subexpression", "pipe"):
            return self.walk(children[1], self.walk(children[0], shape))
        if kind == "index_expression":
            left = self.walk(children[0], shape)
            return element(left) if children[1].get("type") == "index" else left
        if kind == "projection":
            items = element(self.walk(children[0], shape))
            return Shape("array", item=self.walk(children[1], items))
        if kind == "filter_projection":
            items = element(self.walk(children[0], shape))
            self.walk(children[2], items)
            return Shape("array", item=self.walk(children[1], items))
        if kind == "flatten":
            return self.walk(children[0], shape)
        if kind == "value_projection":
            self.walk(children[0], shape)
            self.walk(children[1], ANY)
            return Shape("array", item=ANY)
        if kind == "comparator":
            left, right = children  # two bare names compared: the unknown one was probably meant as text
            both = left.get("type") == right.get("type") == "field"
            self.walk(left, shape, _quote_hint(left) if both else "")
            self.walk(right, shape, _quote_hint(right) if both else "")
            return SCALAR
        if kind in ("and_expression", "or_expression", "not_expression", "multi_select_list"):
            for child in children:
                self.walk(child, shape)
            return ANY
        if kind == "multi_select_dict":
            for pair in children:
                self.walk(pair["children"][0], shape)
            return ANY
        if kind == "function_expression":
            first = ANY
            for index, argument in enumerate(children):
                if argument.get("type") == "expref":
                    self.walk(argument["children"][0], element(first))
                else:
                    found = self.walk(argument, shape)
                    first = found if index == 0 else first
            return ANY
        if kind in ("current", "identity"):
            return shape
        return ANY  # literal, index, slice


def _quote_hint(node: Mapping[str, Any]) -> str:
    """For `status == ACTIVE`: a bare name compared is a field, text is quoted."""
    if node.get("type") == "field":
        return f"; to compare with the text, quote it: '{node['value']}'"
    return ""


def read_jmespath(expression: str, shape: Shape, report: Callable[[str], None]) -> Shape:
    """The shape `expression` yields over a value of `shape`, reporting every field name it does not declare."""
    return _JmesReader(report).read(expression, shape)


def read_jinja(template: str, shape: Shape, report: Callable[[str], None]) -> None:
    """Report every undeclared field a template reads: free names, and `a.b` / `a['b']` chains below them.

    Names a template binds itself (`set`, loop variables) are not fields (`jinja2.meta`); a chain ending in a
    call (`name.startswith(…)`) is a method, not a field.
    """
    try:
        tree = ENV.parse(template)
        free = meta.find_undeclared_variables(tree)  # runs the code generator: an unknown filter fails here
    except jinja2.TemplateError:
        return  # reported where expressions are compiled
    methods = {id(call.node) for call in tree.find_all(nodes.Call)}
    memo: dict[int, Shape] = {}

    def resolve(node: nodes.Node) -> Shape:
        if id(node) in memo:
            return memo[id(node)]
        found = ANY
        if isinstance(node, nodes.Name):
            found = member(shape, node.name, report) if node.name in free and node.ctx == "load" else ANY
        elif isinstance(node, nodes.Getattr):
            base = resolve(node.node)
            found = ANY if id(node) in methods else member(base, node.attr, report)
        elif isinstance(node, nodes.Getitem):
            base = resolve(node.node)
            key = node.arg.value if isinstance(node.arg, nodes.Const) else None
            if isinstance(key, str):
                found = member(base, key, report)
            elif isinstance(key, int):
                found = element(base)
        memo[id(node)] = found
        return found

    for node in tree.find_all((nodes.Name, nodes.Getattr, nodes.Getitem)):
        resolve(node)


def read_value(value: Any, shape: Shape, report: Callable[[str], None]) -> Shape:
    """A mapping value read over `shape`: Jinja when templated, JMESPath when another string, else a constant."""
    if not isinstance(value, str):
        return SCALAR
    if is_template(value):
        read_jinja(value, shape, report)
        return ANY
    return read_jmespath(value, shape, report)


def globals_as_fields() -> dict[str, Field]:
    """The names every template sees besides the record: helper functions and Jinja's own globals."""
    return {name: Field("helper", False, ANY) for name in (*ENV.globals, "lookup", "lookup_source")}
