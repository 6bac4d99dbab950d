"""Mapping a record does no compile work: expressions are compiled at load, JMESPath runs on one shared
interpreter, a plain field path is a dict walk with JMESPath's own semantics, and the key is evaluated once."""

from __future__ import annotations

import json
from datetime import datetime
from decimal import Decimal
from typing import Any

import jmespath
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from jmespath import visitor

from ml_connector.store import State
from ml_connector.transform import expressions
from ml_connector.transform.expressions import compile_expression, compile_jmespath
from ml_connector.transform.mapping import CompiledMapping, MapResult, content_hash
from tests.engine import configs
from tests.engine.fakeapi import FakeAPI
from tests.engine.flowkit import flow_spec, run_flow

SPEC: dict[str, Any] = {
    "filter": "active",
    "let": {"label": "{{ name ~ '/' ~ code }}", "city": "address.city"},
    "fields": {
        "name": "name",
        "label": "label",
        "city": "city",
        "zip": "address.zip",
        "upper": "{{ name | upper }}",
        "ref": "{{ lookup('other', code) }}",
        "first_qty": "lines[0].qty",
        "lines": {"each": "lines", "fields": {"n": "{{ loop.index }}", "qty": "qty", "parent": "_parent.code"}},
    },
}


def _record(i: int) -> dict[str, Any]:
    return {"id": f"C{i}", "code": f"C{i}", "active": True, "name": f"n{i}", "address": {"city": "Bern"},
            "lines": [{"qty": i}, {"qty": i + 1}]}


class _Counter:
    def __init__(self) -> None:
        self.calls = 0

    def wrap(self, function: Any) -> Any:
        def counted(*args: Any, **kwargs: Any) -> Any:
            self.calls += 1
            return function(*args, **kwargs)
        return counted


def test_mapping_1000_records_compiles_nothing_and_builds_no_jmespath_interpreter(
        monkeypatch: pytest.MonkeyPatch) -> None:
    mapping = CompiledMapping(configs.flow(**SPEC))
    compiles, interpreters, templates = _Counter(), _Counter(), _Counter()
    monkeypatch.setattr(jmespath, "compile", compiles.wrap(jmespath.compile))
    monkeypatch.setattr(visitor.TreeInterpreter, "__init__", interpreters.wrap(visitor.TreeInterpreter.__init__))
    monkeypatch.setattr(expressions.ENV, "from_string", templates.wrap(expressions.ENV.from_string))
    monkeypatch.setattr(expressions.ENV, "compile_expression", templates.wrap(expressions.ENV.compile_expression))

    results = [mapping.map(_record(i), lambda flow, key: f"{flow}:{key}", lambda flow, key: None)
               for i in range(1000)]

    assert (compiles.calls, interpreters.calls, templates.calls) == (0, 0, 0)
    assert results[7] == MapResult("C7", {
        "name": "n7", "label": "n7/C7", "city": "Bern", "zip": None, "upper": "N7", "ref": "other:C7",
        "first_qty": 7, "lines": [{"n": 1, "qty": 7, "parent": "C7"}, {"n": 2, "qty": 8, "parent": "C7"}]})


def test_a_compiled_query_is_searched_again_and_again_with_the_same_results() -> None:
    query = compile_jmespath("lines[?qty > `1`].qty | sum(@)")
    assert [query.search({"lines": [{"qty": q} for q in range(n)]}) for n in range(5)] == [0, 0, 0, 2, 5]
    assert compile_jmespath("a.b").search({"a": {"b": [1]}}) == [1]


_KEYS = st.sampled_from(["a", "b", "c d", "e"])
_SCALARS = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=3)
_VALUES = st.recursive(_SCALARS, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_KEYS, inner, max_size=4),
                       max_leaves=12)
_RECORDS = st.dictionaries(_KEYS, _VALUES, max_size=4)


def _path(keys: list[str]) -> str:
    return ".".join(key if key.isidentifier() else json.dumps(key) for key in keys)


@settings(max_examples=300, deadline=None)
@given(record=_RECORDS, keys=st.lists(_KEYS, min_size=1, max_size=4))
def test_a_plain_field_path_is_a_dict_walk_with_the_results_of_jmespath(record: dict[str, Any],
                                                                        keys: list[str]) -> None:
    source = _path(keys)
    query = compile_jmespath(source)
    assert query.simple  # the walk is what ran, not the interpreter
    assert compile_expression(source).evaluate(record) == jmespath.search(source, record)
    assert query.search(record) == jmespath.search(source, record)


@pytest.mark.parametrize("source", ["a[0]", "a || b", "@", "a.*", "`1`", "a.b[]", "keys(@)", "a.\"b\".c[0]"])
def test_anything_but_a_plain_field_path_runs_on_the_interpreter(source: str) -> None:
    assert not compile_jmespath(source).simple
    record = {"a": {"b": {"c": [5]}}, "b": 2}
    assert compile_jmespath(source).search(record) == jmespath.search(source, record)


def test_a_plain_path_through_a_non_object_is_null_as_in_jmespath() -> None:
    record = {"a": [{"b": 1}], "s": "text", "n": 3, "z": None}
    for source in ("a.b", "s.x", "n.x", "z.x", "missing.x.y"):
        assert compile_jmespath(source).search(record) is None
        assert jmespath.search(source, record) is None


def test_the_key_is_evaluated_once_per_record_in_a_flow_run(monkeypatch: pytest.MonkeyPatch) -> None:
    keys = _Counter()
    monkeypatch.setattr(CompiledMapping, "source_key", keys.wrap(CompiledMapping.source_key))
    source = FakeAPI().on("GET", "/v2/things", 200, {"data": [
        {"code": f"C{i}", "name": f"n{i}", "updated": "2026-03-01T10:00:00Z"} for i in range(3)]})
    target = FakeAPI().on("POST", "/v2/items", 200, {"data": {"id": 7}})

    summary = run_flow(State(":memory:"), flow_spec({"name": "name"}), source, target)

    assert (summary.status, summary.created) == ("ok", 3)
    assert keys.calls == 3


def test_a_key_given_to_map_is_the_result_key_and_the_record_is_left_as_it_was() -> None:
    mapping = CompiledMapping(configs.flow(**SPEC))
    record = _record(1)
    before = json.dumps(record, sort_keys=True)
    result = mapping.map(record, lambda flow, key: "t", lambda flow, key: None, key="C1")
    assert result.key == "C1" and result.payload is not None and result.payload["label"] == "n1/C1"
    assert json.dumps(record, sort_keys=True) == before  # lets and lookups never land in the source record


def test_the_content_hash_keeps_its_values_so_stored_hashes_stay_comparable() -> None:
    payload = {"b": [1, {"y": None, "x": "é"}], "a": 1.5, "c": True,
               "d": {"when": datetime(2026, 3, 1, 12, 0), "n": Decimal("1.10")}}  # not JSON: as text
    assert content_hash(payload) == "913136e5256eb92db22877b616c23e89451c40e7870445d5b18e221852f20aab"
    assert content_hash(dict(reversed(payload.items()))) == content_hash(payload)
    assert content_hash({}) == "44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"
