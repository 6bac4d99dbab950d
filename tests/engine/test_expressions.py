"""Expressions: JMESPath vs Jinja, native values, sandboxing, hashing."""

import pytest
from hypothesis import given
from hypothesis import strategies as st
from jinja2.exceptions import SecurityError

from ml_connector.transform.expressions import JinjaExpression, TemplateTree, compile_expression
from ml_connector.transform.mapping import CompiledMapping, Deferred, MappingError, content_hash
from tests.engine import configs


def test_plain_string_is_jmespath_and_template_is_jinja() -> None:
    record = {"a": {"b": [1, 2, 3]}, "name": "Acme"}
    assert compile_expression("a.b[1]").evaluate(record) == 2
    assert compile_expression("{{ a.b | sum }}").evaluate(record) == 6  # native int, not "6"
    assert compile_expression("Hello {{ name }}").evaluate(record) == "Hello Acme"
    assert compile_expression(5).evaluate(record) == 5


def test_jinja_is_sandboxed() -> None:
    with pytest.raises(SecurityError):
        JinjaExpression("{{ ''.__class__.__mro__[1].__subclasses__() }}").evaluate({})


def test_template_tree_keeps_structure() -> None:
    tree = TemplateTree({"items": "{{ records }}", "fixed": [], "n": "{{ 1 + 1 }}", "s": "x-{{ 2 }}"})
    assert tree.render({"records": [{"a": 1}]}) == {"items": [{"a": 1}], "fixed": [], "n": 2, "s": "x-2"}


json_values = st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=5),
                           lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner,
                                                                                        max_size=3), max_leaves=10)


@given(st.dictionaries(st.text(max_size=6), json_values, max_size=6))
def test_content_hash_ignores_key_order(payload: dict) -> None:
    reordered = dict(reversed(list(payload.items())))
    assert content_hash(payload) == content_hash(reordered)


@given(st.dictionaries(st.text(min_size=1, max_size=6), st.integers(), min_size=1, max_size=6), st.integers())
def test_content_hash_changes_when_a_value_changes(payload: dict, delta: int) -> None:
    key = next(iter(payload))
    changed = {**payload, key: payload[key] + (delta or 1)}
    assert content_hash(payload) != content_hash(changed)


SPEC = {
    "flow": "f",
    "from": {"connection": "a", "entity": "x"},
    "key": "code",
    "filter": "active",
    "let": {"first": "lines[0]"},
    "fields": {
        "name": "name",
        "ref": "{{ lookup('other', code) }}",
        "custom.Label With Space": "code",
        "first_qty": "first.qty",
        "lines": {"each": "lines", "fields": {"n": "{{ loop.index }}", "qty": "qty", "parent": "_parent.code"}},
    },
}


def test_mapping_nests_paths_and_child_lists() -> None:
    mapping = CompiledMapping(configs.flow(**SPEC))
    record = {"code": "C1", "active": True, "name": "Acme", "lines": [{"qty": 2}, {"qty": 5}]}
    result = mapping.map(record, lambda flow, key: f"{flow}:{key}", lambda flow, key: None)
    assert result.key == "C1"
    assert result.payload == {
        "name": "Acme", "ref": "other:C1", "custom": {"Label With Space": "C1"}, "first_qty": 2,
        "lines": [{"n": 1, "qty": 2, "parent": "C1"}, {"n": 2, "qty": 5, "parent": "C1"}]}


def test_mapping_filter_defer_and_errors() -> None:
    mapping = CompiledMapping(configs.flow(**SPEC))
    assert mapping.map({"code": "C2", "active": False}, lambda f, k: 1, lambda f, k: 1).payload is None

    def missing(flow: str, key: str) -> str:
        raise Deferred("not yet")

    with pytest.raises(Deferred):
        mapping.map({"code": "C3", "active": True, "lines": []}, missing, missing)
    with pytest.raises(MappingError, match="key expression"):
        mapping.map({"active": True}, lambda f, k: 1, lambda f, k: 1)
    broken = CompiledMapping(configs.flow(**{**SPEC, "fields": {"x": "{{ 1 / zero }}"}}))
    with pytest.raises(MappingError, match="field x"):
        broken.map({"code": "C4", "active": True, "zero": 0}, lambda f, k: 1, lambda f, k: 1)


def test_values_inserted_into_paths_are_encoded() -> None:
    from ml_connector.transform.expressions import compile_path

    path = compile_path("/api/orders/{{ id }}")
    assert path.evaluate({"id": "../customers/C1"}) == "/api/orders/..%2Fcustomers%2FC1"
    assert path.evaluate({"id": 42}) == "/api/orders/42"
    assert compile_path("/plain").evaluate({}) == "/plain"


def test_a_missing_key_is_null_everywhere_even_deep_inside_what_a_template_returns() -> None:
    record = {"address": {"city": "Zürich"}}
    assert compile_expression("{{ [address.postalCode, address.city] }}").evaluate(record) == [None, "Zürich"]
    assert compile_expression("{{ {'zip': address.postalCode, 'deep': [{'x': nothing.at.all}]} }}").evaluate(
        record) == {"zip": None, "deep": [{"x": None}]}
    assert compile_expression("{{ (address.postalCode, 1) }}").evaluate(record) == [None, 1]
    assert compile_expression("{{ address.postalCode is none and address.postalCode == none }}").evaluate(record)
    assert compile_expression("{{ address.postalCode }}").evaluate(record) is None


def test_null_never_renders_as_the_text_none() -> None:
    record = {"zip": None, "city": "Zürich", "country": None}
    assert compile_expression("{{ zip }} {{ city }}").evaluate(record) == " Zürich"
    assert compile_expression("{{ zip ~ ' ' ~ city }}").evaluate(record) == " Zürich"
    assert compile_expression("{{ city }}, {{ zip ~ country }}").evaluate(record) == "Zürich, "
    assert compile_expression("{{ [zip, city, country] | join('/') }}").evaluate(record) == "/Zürich/"
    assert compile_expression("{{ zip | string }}").evaluate(record) == ""
    assert compile_expression("{{ zip }}").evaluate(record) is None  # a single expression stays native null
    assert TemplateTree({"q": "in {{ country }}"}).render(record) == {"q": "in "}


@pytest.mark.parametrize(("fields", "record", "reason"), [
    ({"tags": "{{ tags | select }}"}, {"tags": ["a", ""]}, "field tags: a generator is not a JSON value"),
    ({"a.b": "{{ [1, x] }}"}, {"x": float("nan")}, "field a.b[1]: nan is not a JSON number"),
    # JMESPath values are JSON data, not checked one by one: the payload's strict encoding still refuses what the
    # source's JSON parser let through (Python's reads NaN and Infinity) and names the field
    ({"price": "price"}, {"price": float("nan")}, "field price: nan is not a JSON number"),
    ({"a.prices": "[price, `1`]"}, {"price": float("inf")}, "field a.prices[0]: inf is not a JSON number"),
    ({"lines": {"each": "lines", "fields": {"q": "q"}}}, {"lines": "abc"},
     "field lines: a str is not a list of objects"),
])
def test_a_value_that_is_not_json_is_a_mapping_error_naming_the_field(fields: dict, record: dict,
                                                                     reason: str) -> None:
    mapping = CompiledMapping(configs.flow(**{"flow": "f", "from": {"connection": "a", "entity": "x"},
                                              "key": "code", "fields": fields}))
    with pytest.raises(MappingError) as raised:
        mapping.map({"code": "C1", **record}, lambda f, k: 1, lambda f, k: 1)
    assert str(raised.value) == reason
