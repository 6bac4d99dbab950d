"""JMESPath compiled to closures: the same result (or the same error) as jmespath's interpreter, for any record."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import jmespath
import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st
from jmespath.parser import ParsedResult

from ml_connector.transform import expressions
from ml_connector.transform.expressions import CompiledQuery, compile_jmespath, is_template
from ml_connector.transform.jmespath_closures import compile_closure

REPO = Path(__file__).resolve().parents[2]
FLOW_FILTER = "itemStatus == 'ACTIVE'"
FLOW_PRICES = "listPrice != `null` && [{currency: currencyCode, price: listPrice}] || `[]`"

_LITERALS = ["`0`", "`1`", "`-1`", "`2.5`", "`1.0`", "`0.0`", "`true`", "`false`", "`null`", "''", "'x'",
             "`[]`", "`{}`", "`[1]`", "`[true]`", "`{\"a\": 1}`"]
_OPERATORS = ["==", "!=", "<", "<=", ">", ">="]
HAND_WRITTEN = [
    "a", "a.b", "a.b.c", "\"a b\"", "@", "a[0]", "a[-1]", "a[1]", "a[0][1]", "a[0].b", "a[1:3]", "a[::-1]",
    "a[-2:]", "a[::2]", "a[*]", "a[*].b", "a[*].b[*].c", "a[].b", "a[]", "a[][]", "a.*", "*.b", "a.*.b", "*",
    "a[?b]", "a[?b == `1`].c", "a[?b > `0`] | [0]", "a[?!b]", "a[?b != c]", "{x: a, y: b.c}", "[a, b]",
    "a.{x: b, y: c}", "a.[b, c]", "a[*].[b, c]", "a[*].{x: b}", "a | b", "a | [0]", "a[*] | [0]", "!a", "!!a",
    "!a.b", "a && b", "a || b", "a && b || c", "!(a || b)", "a && `0`", "`0` || a", "a || `[]`",
    "a.b[?c == 'x'].a", "a[*].b | [?@ == `true`]", "[?a]", "[*].a", "[].a", "@.a", "@[0]", "a[?@ > `1`]",
    "length(a)", "length(@)", "not_null(a, b, c)", "to_string(a)", "to_number(a)", "type(a)", "keys(a)",
    "values(a)", "contains(a, 'x')", "contains(a, `1`)", "join(',', a)", "starts_with(a, 'x')", "abs(a)",
    "sort_by(a, &b)", "max_by(a, &b)", "min_by(a, &b)", "map(&b, a)", "map(&@, a)", "sort(a)", "max(a)",
    "sum(a)", "reverse(a)", "merge(a, b)", "to_array(a)", "floor(a)", "no_such_function(a)", "length(a, b)",
    "a[?length(@) > `1`]", "sort_by(a[*], &to_string(b))", "a.{x: b}", "a.{x: b, y: c, z: a}", "a.[b]",
    "a[*].{x: b, y: c, z: a}", "[b, c, a]", "{x: a, x: b}",
] + [f"a {op} {lit}" for op in _OPERATORS for lit in _LITERALS] + [f"{lit} {op} a" for op in _OPERATORS
                                                                   for lit in ["`0`", "`1`", "`true`", "'x'"]] \
  + [f"a {op} b" for op in _OPERATORS] + [f"a.b {op} c[0]" for op in _OPERATORS]


def _spec_strings(value: Any) -> list[str]:
    if isinstance(value, dict):
        return [text for key, item in value.items() for text in _spec_strings(key) + _spec_strings(item)]
    if isinstance(value, list):
        return [text for item in value for text in _spec_strings(item)]
    return [value] if isinstance(value, str) else []


def _shipped_expressions() -> list[str]:
    """Every string of the shipped specs that parses as JMESPath and is more than a plain field path."""
    found: set[str] = set()
    for path in sorted([*REPO.glob("mappings/**/*.yaml"), *REPO.glob("connectors/*.yaml")]):
        for text in _spec_strings(yaml.safe_load(path.read_text())):
            if is_template(text):
                continue
            try:
                query = compile_jmespath(text)
            except jmespath.exceptions.JMESPathError:
                continue
            if not query.simple:
                found.add(text)
    return sorted(found)


SHIPPED = _shipped_expressions()


def _names(node: Any) -> set[str]:
    """The field names and string literals an AST mentions: the keys and values worth putting in records."""
    found: set[str] = set()
    if isinstance(node, dict):
        if node.get("type") in {"field", "key_val_pair"} or isinstance(node.get("value"), str):
            found.add(node["value"])
        for child in node.get("children", []):
            found |= _names(child)
    return found


@functools.cache
def _records(words: tuple[str, ...]) -> st.SearchStrategy[Any]:
    keys = st.sampled_from(words)
    # the values where JMESPath's truthiness and equality differ from Python's
    tricky: st.SearchStrategy[Any] = st.sampled_from([None, True, False, 0, 1, 0.0, 1.0, "", [], {}])
    scalars = (tricky | st.integers(-3, 3) | st.floats(allow_nan=False, allow_infinity=False, width=32)
               | st.sampled_from(words) | st.text(max_size=3))
    values = st.recursive(tricky | scalars,
                          lambda inner: st.lists(inner, max_size=4) | st.dictionaries(keys, inner, max_size=4),
                          max_leaves=12)
    return st.dictionaries(keys, values, max_size=5) | values


def _outcome(function: Any, value: Any) -> tuple[str, str]:
    """A result as its exact repr (1, 1.0 and True differ), or the type of the error raised."""
    try:
        return "value", repr(function(value))
    except Exception as error:  # noqa: BLE001 - the error type is what is compared
        return "error", type(error).__name__


def _assert_same(text: str, data: st.DataObject) -> None:
    parsed = jmespath.compile(text).parsed
    closure = compile_closure(parsed, expressions._INTERPRETER)
    assert closure is not None, f"{text!r} did not compile"
    record = data.draw(_records(tuple(sorted(_names(parsed) | {"a", "b", "c"}))))
    expected = _outcome(lambda value: expressions._INTERPRETER.visit(parsed, value), record)
    assert _outcome(closure, record) == expected, (text, record)


@pytest.mark.parametrize("text", HAND_WRITTEN)
@settings(max_examples=40, deadline=None)
@given(data=st.data())
def test_hand_written_expressions_match_the_interpreter(text: str, data: st.DataObject) -> None:
    _assert_same(text, data)


EDGE_CASES = [
    ("`1` == a", {"a": True}), ("a == b", {"a": 1, "b": True}), ("a == b", {"a": 0.0, "b": False}),
    ("a != b", {"a": False, "b": 0}), ("a == `[1]`", {"a": [True]}), ("a == 'x'", {"a": True}),
    ("a.{x: b}", {}), ("a.{x: b, y: c, z: a}", {"a": None}), ("a.[b]", {"a": None}), ("!a", {"a": 0.0}),
    ("!a", {"a": []}), ("a || b", {"a": 0, "b": 1}), ("a && b", {"a": {}, "b": 1}), ("a < b", {"a": "x", "b": 1}),
    ("a < b", {"a": True, "b": 1}), ("a < b", {"a": "a", "b": "b"}), ("a[*].b", {"a": [{"b": None}, {"b": 0}]}),
    ("a.*", {"a": [1]}), ("a[-1]", {"a": []}), ("a[0]", {"a": "text"}), ("a.b", {"a": "text"}),
    ("length(a)", {"a": 5}), ("sort_by(a, &b)", {"a": [{"b": 2}, {"b": 1}]}), ("a[::0]", {"a": [1]}),
]


@pytest.mark.parametrize(("text", "record"), EDGE_CASES)
def test_edge_cases_match_the_interpreter(text: str, record: Any) -> None:
    parsed = jmespath.compile(text).parsed
    closure = compile_closure(parsed, expressions._INTERPRETER)
    assert closure is not None
    interpreted = _outcome(lambda value: expressions._INTERPRETER.visit(parsed, value), record)
    assert _outcome(closure, record) == interpreted


def test_the_shipped_specs_have_expressions_to_check() -> None:
    assert FLOW_FILTER in SHIPPED and FLOW_PRICES in SHIPPED


@pytest.mark.parametrize("text", SHIPPED)
@settings(max_examples=40, deadline=None)
@given(data=st.data())
def test_shipped_expressions_match_the_interpreter(text: str, data: st.DataObject) -> None:
    _assert_same(text, data)


@pytest.fixture
def interpreter_visits(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The node types the shared interpreter visits from now on."""
    visits: list[str] = []
    visit = expressions._INTERPRETER.visit

    def counting(node: dict[str, Any], *args: Any) -> Any:
        visits.append(node["type"])
        return visit(node, *args)

    monkeypatch.setattr(expressions._INTERPRETER, "visit", counting)
    return visits


def test_the_flow_filter_and_prices_run_as_closures(interpreter_visits: list[str]) -> None:
    keep, prices = compile_jmespath(FLOW_FILTER), compile_jmespath(FLOW_PRICES)
    assert compile_closure(keep.parsed) is not None and compile_closure(prices.parsed) is not None
    assert [keep.search({"itemStatus": "ACTIVE"}), keep.search({"itemStatus": "OBSOLETE"}), keep.search({})] \
        == [True, False, False]
    assert prices.search({"listPrice": 0, "currencyCode": "USD"}) == [{"currency": "USD", "price": 0}]
    assert prices.search({"listPrice": None, "currencyCode": "USD"}) == []
    assert prices.search({"currencyCode": "USD"}) == []
    assert interpreter_visits == []


def test_a_function_without_a_function_table_is_left_to_the_interpreter(interpreter_visits: list[str]) -> None:
    assert compile_closure(jmespath.compile("length(a)").parsed) is None
    query = compile_jmespath("length(a) > `1`")
    assert query.search({"a": [1, 2]}) is True and query.search({"a": "x"}) is False
    assert interpreter_visits == []  # the query itself compiled with the shared interpreter's functions


def test_an_unknown_node_is_left_to_the_interpreter(interpreter_visits: list[str],
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    shout = {"type": "shout", "children": []}
    parsed = {"type": "subexpression", "children": [{"type": "field", "children": [], "value": "a"}, shout]}
    assert compile_closure(shout) is None and compile_closure(parsed) is None
    monkeypatch.setitem(expressions._INTERPRETER._method_cache, "shout", lambda node, value: value.upper())
    query = CompiledQuery(ParsedResult("a.shout()", parsed))
    assert query.search({"a": "quiet"}) == "QUIET"
    assert interpreter_visits == ["subexpression", "field", "shout"]
