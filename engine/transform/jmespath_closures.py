"""JMESPath ASTs compiled once into nested Python closures, with jmespath's exact semantics.

jmespath's TreeInterpreter dispatches every node of every search through ``visit`` (a dict lookup, a method call
and a ``node['children']`` index per node); per record that was the largest cost of a mapping. A closure per node
does the same work with the dispatch done once, at compile time. Each closure mirrors the interpreter's
``visit_<type>`` method (jmespath/visitor.py), quirks included: ``0`` is true, a boolean never equals a number,
ordering compares numbers and strings only (else null), projections drop nulls. A node type not handled here
makes `compile_closure` return None, and the caller keeps the interpreter: correctness over coverage.
"""

from __future__ import annotations

import operator
from collections.abc import Callable
from typing import Any

from jmespath.visitor import TreeInterpreter, _equals, _Expression, _is_actual_number, _is_comparable

Closure = Callable[[Any], Any]

_ORDERING: dict[str, Callable[[Any, Any], Any]] = {
    "lt": operator.lt, "lte": operator.le, "gt": operator.gt, "gte": operator.ge}


class _Unsupported(Exception):
    """A node this module does not compile: the whole expression stays with the interpreter."""


def compile_closure(parsed_ast: dict[str, Any], interpreter: TreeInterpreter | None = None) -> Closure | None:
    """A function of the searched value equal to ``interpreter.visit(parsed_ast, value)``, or None.

    Functions (and the ``&expr`` references they take) are called through `interpreter`'s own function table,
    custom functions included; without an interpreter an expression calling a function is not compiled.
    """
    try:
        return _Compiler(interpreter).compile(parsed_ast)
    except (_Unsupported, RecursionError):
        return None


def is_false(value: Any) -> bool:
    """jmespath's falsiness (``TreeInterpreter._is_false``): '', [], {}, null and false; 0 is true."""
    kind = type(value)
    if kind is str or kind is list or kind is dict:
        return not value
    if value is None or value is False:
        return True
    if kind is int or kind is float or kind is bool:
        return False
    return bool(value == "" or value == [] or value == {})


class _ClosureVisits:
    """Stands in for the interpreter inside an ``&expr`` argument: "visiting" it runs the compiled closure."""

    def __init__(self, closure: Closure) -> None:
        self._closure = closure

    def visit(self, node: dict[str, Any], value: Any) -> Any:
        return self._closure(value)


class _Compiler:
    def __init__(self, interpreter: TreeInterpreter | None) -> None:
        self._interpreter = interpreter
        dict_cls = getattr(interpreter, "_dict_cls", dict)
        self._dict_cls: type = dict if dict_cls is None else dict_cls

    def compile(self, node: dict[str, Any]) -> Closure:
        method = getattr(self, f"_{node.get('type')}", None)
        if method is None:
            raise _Unsupported(node.get("type"))
        closure: Closure = method(node)
        return closure

    def _children(self, node: dict[str, Any]) -> list[Closure]:
        return [self.compile(child) for child in node["children"]]

    # paths ----------------------------------------------------------------------------------------------------

    def _field(self, node: dict[str, Any]) -> Closure:
        name = node["value"]

        def field(value: Any) -> Any:
            try:
                return value.get(name)
            except AttributeError:
                return None
        return field

    def _subexpression(self, node: dict[str, Any]) -> Closure:
        if all(child["type"] == "field" for child in node["children"]):
            return self._walk(tuple(child["value"] for child in node["children"]))
        return self._chain(self._children(node))

    _index_expression = _subexpression
    _pipe = _subexpression

    @staticmethod
    def _walk(names: tuple[str, ...]) -> Closure:
        """Fields one after the other: a null on the way stays null (a field of null is null)."""
        def walk(value: Any) -> Any:
            for name in names:
                try:
                    value = value.get(name)
                except AttributeError:
                    return None
                if value is None:
                    return None
            return value
        return walk

    @staticmethod
    def _chain(steps: list[Closure]) -> Closure:
        if len(steps) == 2:
            first, second = steps
            return lambda value: second(first(value))

        def chain(value: Any) -> Any:
            for step in steps:
                value = step(value)
            return value
        return chain

    def _current(self, node: dict[str, Any]) -> Closure:
        return _identity

    _identity = _current

    def _literal(self, node: dict[str, Any]) -> Closure:
        literal = node["value"]  # the same object every time, as the interpreter returns it
        return lambda value: literal

    def _index(self, node: dict[str, Any]) -> Closure:
        position = node["value"]

        def index(value: Any) -> Any:
            if not isinstance(value, list):
                return None
            try:
                return value[position]
            except IndexError:
                return None
        return index

    def _slice(self, node: dict[str, Any]) -> Closure:
        bounds = slice(*node["children"])

        def sliced(value: Any) -> Any:
            if not isinstance(value, list):
                return None
            return value[bounds]
        return sliced

    # comparisons and logic ------------------------------------------------------------------------------------

    def _comparator(self, node: dict[str, Any]) -> Closure:
        left, right = self._children(node)
        kind = node["value"]
        if kind in ("eq", "ne"):
            return self._equality(node, left, right, kind == "eq")
        compare = _ORDERING[kind]

        def ordering(value: Any) -> Any:
            first, second = left(value), right(value)
            if not (_is_comparable(first) and _is_comparable(second)):
                return None
            return compare(first, second)
        return ordering

    def _equality(self, node: dict[str, Any], left: Closure, right: Closure, equal: bool) -> Closure:
        first_node, second_node = node["children"]
        if second_node["type"] == "literal" and _plain_equality(second_node["value"]):
            literal = second_node["value"]  # neither a number nor a boolean: `_equals` is plain ``==``
            if first_node["type"] == "field":
                return _field_equals_literal(first_node["value"], literal, equal)
            if equal:
                return lambda value: left(value) == literal
            return lambda value: not left(value) == literal  # noqa: SIM201 - as `not _equals`
        if first_node["type"] == "literal" and _plain_equality(first_node["value"]):
            literal = first_node["value"]
            if equal:
                return lambda value: literal == right(value)
            return lambda value: not literal == right(value)  # noqa: SIM201
        if equal:
            return lambda value: _equals(left(value), right(value))
        return lambda value: not _equals(left(value), right(value))

    def _and_expression(self, node: dict[str, Any]) -> Closure:
        left, right = self._children(node)

        def both(value: Any) -> Any:
            matched = left(value)
            if is_false(matched):
                return matched
            return right(value)
        return both

    def _or_expression(self, node: dict[str, Any]) -> Closure:
        left, right = self._children(node)

        def either(value: Any) -> Any:
            matched = left(value)
            if is_false(matched):
                return right(value)
            return matched
        return either

    def _not_expression(self, node: dict[str, Any]) -> Closure:
        (child,) = self._children(node)

        def negated(value: Any) -> Any:
            found = child(value)
            if _is_actual_number(found) and found == 0:
                return False  # !0 is false: 0 is true in JMESPath
            return not found
        return negated

    # building values ------------------------------------------------------------------------------------------

    def _multi_select_dict(self, node: dict[str, Any]) -> Closure:
        pairs = []
        for pair in node["children"]:
            if pair["type"] != "key_val_pair":
                raise _Unsupported(pair["type"])
            pairs.append((pair["value"], self.compile(pair["children"][0])))
        dict_cls = self._dict_cls
        if dict_cls is dict and len(pairs) == 2:
            (key1, value1), (key2, value2) = pairs

            def two_keys(value: Any) -> Any:
                if value is None:
                    return None
                return {key1: value1(value), key2: value2(value)}
            return two_keys

        def selected(value: Any) -> Any:
            if value is None:
                return None
            collected = dict_cls()
            for key, child in pairs:
                collected[key] = child(value)
            return collected
        return selected

    def _multi_select_list(self, node: dict[str, Any]) -> Closure:
        children = self._children(node)
        if len(children) == 1:
            (only,) = children
            return lambda value: None if value is None else [only(value)]
        return lambda value: None if value is None else [child(value) for child in children]

    # projections ----------------------------------------------------------------------------------------------

    def _projection(self, node: dict[str, Any]) -> Closure:
        left, right = self._children(node)

        def projected(value: Any) -> Any:
            base = left(value)
            if not isinstance(base, list):
                return None
            collected = []
            for element in base:
                current = right(element)
                if current is not None:
                    collected.append(current)
            return collected
        return projected

    def _value_projection(self, node: dict[str, Any]) -> Closure:
        left, right = self._children(node)

        def projected(value: Any) -> Any:
            base = left(value)
            try:
                elements = base.values()
            except AttributeError:
                return None
            collected = []
            for element in elements:
                current = right(element)
                if current is not None:
                    collected.append(current)
            return collected
        return projected

    def _filter_projection(self, node: dict[str, Any]) -> Closure:
        left, right, condition = self._children(node)

        def filtered(value: Any) -> Any:
            base = left(value)
            if not isinstance(base, list):
                return None
            collected = []
            for element in base:
                if not is_false(condition(element)):
                    current = right(element)
                    if current is not None:
                        collected.append(current)
            return collected
        return filtered

    def _flatten(self, node: dict[str, Any]) -> Closure:
        (child,) = self._children(node)

        def flattened(value: Any) -> Any:
            base = child(value)
            if not isinstance(base, list):
                return None
            merged: list[Any] = []
            for element in base:
                if isinstance(element, list):
                    merged.extend(element)
                else:
                    merged.append(element)
            return merged
        return flattened

    # functions ------------------------------------------------------------------------------------------------

    def _function_expression(self, node: dict[str, Any]) -> Closure:
        if self._interpreter is None:
            raise _Unsupported("function_expression")
        call = self._interpreter._functions.call_function
        name = node["value"]
        arguments = self._children(node)
        return lambda value: call(name, [argument(value) for argument in arguments])

    def _expref(self, node: dict[str, Any]) -> Closure:
        if self._interpreter is None:
            raise _Unsupported("expref")
        (body,) = node["children"]
        reference = _Expression(body, _ClosureVisits(self.compile(body)))
        return lambda value: reference


def _identity(value: Any) -> Any:
    return value


def _plain_equality(literal: Any) -> bool:
    """True when `_equals` against this literal is plain ``==``: its number/boolean special case cannot apply."""
    return not isinstance(literal, bool) and not _is_actual_number(literal)


def _field_equals_literal(name: str, literal: Any, equal: bool) -> Closure:
    """``field == literal`` (or ``!=``) in one call: the flow filters' common shape."""
    def compared(value: Any) -> Any:
        try:
            found = value.get(name)
        except AttributeError:
            found = None
        return found == literal if equal else not found == literal  # noqa: SIM201
    return compared
