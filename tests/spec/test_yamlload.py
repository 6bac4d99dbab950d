"""YAML loading with a line for every node: SourceMap, merge keys, syntax errors, duplicate keys."""

from __future__ import annotations

from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from ml_connector.spec import SourceMap, SpecError, SpecProblem, field_name, parse_yaml

KEYS = st.from_regex(r"[a-z][a-z0-9_]{0,7}", fullmatch=True).filter(
    lambda k: k not in {"y", "n", "yes", "no", "on", "off", "true", "false", "null"}
)
SCALARS = st.one_of(st.integers(), st.booleans(), st.none(), st.text(max_size=30))
DOCUMENTS = st.recursive(
    SCALARS,
    lambda children: st.one_of(st.lists(children, max_size=4), st.dictionaries(KEYS, children, max_size=5)),
    max_leaves=25,
)


def key_paths(value: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every path to a mapping key or sequence item, in document order."""
    out: list[tuple[Any, ...]] = []
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else []
    for key, item in items:
        out.append((*path, key))
        out += key_paths(item, (*path, key))
    return out


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(KEYS, DOCUMENTS, min_size=1, max_size=6))
def test_every_key_path_maps_to_the_line_where_the_key_is_written(document: dict[str, Any]) -> None:
    text = yaml.safe_dump(document, sort_keys=False, default_flow_style=False, width=1000)
    data, source = parse_yaml(text, "doc.yaml")
    assert data == document
    lines = text.splitlines()
    previous = 0
    for path in key_paths(document):
        line = source.line_of(path)
        assert line >= previous, "lines follow document order"
        previous = line
        written = lines[line - 1].lstrip(" -")
        last = path[-1]
        if isinstance(last, str):
            assert written.startswith((f"{last}:", f"'{last}':")), (path, line, text)


def test_line_of_falls_back_to_the_nearest_parent() -> None:
    _, source = parse_yaml("# a comment\na:\n  b:\n    c: 1\nd: [x, y]\n", "f.yaml")
    assert source.line_of(("a", "b", "c")) == 4
    assert source.line_of(("a", "b", "zzz", 3)) == 3
    assert source.line_of(("d", 1)) == 5
    assert source.line_of(("nope",)) == 2
    assert source.line_of(()) == 2
    assert SourceMap().line_of(("x",)) == 1


def test_merge_keys_map_to_where_the_merged_key_is_written() -> None:
    text = "create: &op\n  method: POST\n  path: /x\nupdate:\n  <<: *op\n  method: PATCH\n"
    data, source = parse_yaml(text, "f.yaml")
    assert data["update"] == {"method": "PATCH", "path": "/x"}
    assert source.line_of(("update", "path")) == 3
    assert source.line_of(("update", "method")) == 6
    assert source.problems == []


def test_syntax_error_has_the_parser_line_and_no_document_text() -> None:
    with pytest.raises(SpecError) as raised:
        parse_yaml("a: 1\nb: [1, 2\nc: secret-value\n", "f.yaml")
    (problem,) = raised.value.problems
    assert (problem.file, problem.line, problem.field) == ("f.yaml", 2, "(root)")  # where the unclosed [ opens
    assert problem.message.startswith("YAML syntax error: ")
    assert "secret-value" not in problem.message


def test_duplicate_and_non_text_keys_are_problems() -> None:
    data, source = parse_yaml("a: 1\nb:\n  on: 2\n  c: 3\n  c: 4\na: 5\n", "f.yaml")
    assert data == {"a": 5, "b": {True: 2, "c": 4}}
    assert [str(p) for p in source.problems] == [
        "f.yaml:5: b.c: duplicate key 'c' (first written at line 4)",
        "f.yaml:6: a: duplicate key 'a' (first written at line 1)",
        "f.yaml:3: b.on: key 'on' is read as bool, not text; quote it",
    ]


def test_dates_stay_text() -> None:
    data, _ = parse_yaml("day: 2026-11-20\nat: 2026-11-20T10:00:00Z\nn: 3\nok: true\n", "f.yaml")
    assert data == {"day": "2026-11-20", "at": "2026-11-20T10:00:00Z", "n": 3, "ok": True}


def test_empty_document() -> None:
    assert parse_yaml("# nothing\n", "f.yaml")[0] is None


def test_problem_and_error_formatting() -> None:
    problem = SpecProblem("a.yaml", 3, "entities.deal.read.paginator", "unknown paginator 'x'")
    assert str(problem) == "a.yaml:3: entities.deal.read.paginator: unknown paginator 'x'"
    assert str(SpecError([problem])) == f"1 spec problem:\n  {problem}"
    assert field_name(()) == "(root)"
    assert field_name(("responses", 0, "when", "status")) == "responses[0].when.status"
