"""Issue 17 case 7 (YAML): a hostile spec file is refused fast, as a located problem, never loaded or expanded.

The limits are in `YamlLimits` (size in bytes, nodes after alias expansion, nesting depth); the clock guards below
only catch a hang: the point is that a bomb is refused by counting, not by expanding.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from click.testing import Result

from ml_connector.spec import SpecError, SpecProblem, load_specs, load_yaml, parse_yaml
from ml_connector.spec.yamlload import YamlLimits
from tests.spec.conftest import SpecCopy


@contextmanager
def fast(seconds: float = 2.0) -> Iterator[None]:
    """A guard against hangs: the block must finish within `seconds`."""
    started = time.monotonic()
    yield
    assert time.monotonic() - started < seconds


def alias_bomb(levels: int, width: int = 10) -> str:
    """Billion laughs: each level lists the previous one `width` times (width**levels leaves when expanded)."""
    lines = ["flow: bomb", "l0: &l0 [lol, lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    for level in range(1, levels + 1):
        lines.append(f"l{level}: &l{level} [{', '.join([f'*l{level - 1}'] * width)}]")
    return "\n".join(lines) + "\n"


def only_problem(text: str, limits: YamlLimits | None = None) -> SpecProblem:
    with fast(), pytest.raises(SpecError) as raised:
        parse_yaml(text, "bomb.yaml", *([limits] if limits else []))
    assert len(raised.value.problems) == 1, raised.value.problems
    return raised.value.problems[0]


@pytest.mark.parametrize("levels", [5, 9, 12])
def test_an_alias_bomb_is_refused_by_counting_not_by_expanding(levels: int) -> None:
    problem = only_problem(alias_bomb(levels))
    assert (problem.file, problem.field) == ("bomb.yaml", "(root)")
    assert problem.line == 6  # l4 is the first node to expand past 100000 nodes (111111)
    assert problem.message == (
        "the YAML expands to more than 100000 nodes (aliases repeat what their anchor holds); refused"
    )


def test_aliases_within_the_node_limit_still_load() -> None:
    data, _ = parse_yaml(alias_bomb(3), "ok.yaml")
    assert len(data["l3"]) == 10 and data["l3"][0][0][0] == data["l0"]


def test_the_node_limit_is_configurable() -> None:
    problem = only_problem(alias_bomb(2), YamlLimits(max_nodes=50))
    assert problem.message == (
        "the YAML expands to more than 50 nodes (aliases repeat what their anchor holds); refused"
    )


def test_a_recursive_alias_is_refused() -> None:
    problem = only_problem("flow: loop\na: &a\n  - x\n  - *a\n")
    assert (problem.line, problem.message) == (2, "an alias repeats a node that contains it (recursive data); refused")


def test_deep_nesting_is_a_problem_not_a_recursion_error() -> None:
    problem = only_problem("flow: deep\na: " + "[" * 5000 + "]" * 5000 + "\n")
    assert (problem.line, problem.message) == (2, "the YAML is nested deeper than 32 levels; refused")


def test_aliases_cannot_nest_past_the_depth_limit() -> None:
    deep = "[" * 20 + "x" + "]" * 20
    text = f"flow: deep\na: &a {deep}\nb: &b [*a, *a]\nc: {'[' * 12}*b{']' * 12}\n"
    problem = only_problem(text)
    assert (problem.line, problem.message) == (4, "the YAML is nested deeper than 32 levels; refused")


def test_an_oversized_text_is_refused() -> None:
    problem = only_problem("flow: big\nx: '" + "a" * 1_000_000 + "'\n")
    assert (problem.line, problem.message) == (1, "the file is larger than 1000000 bytes; refused")


def test_an_oversized_file_is_refused_before_it_is_read(tmp_path: Path) -> None:
    path = tmp_path / "big.yaml"
    with path.open("w") as out:
        out.write("flow: big\nx: [")
        for _ in range(600_000):
            out.write("1234567890, ")  # 7 MB
        out.write("0]\n")
    with fast(), pytest.raises(SpecError) as raised:
        load_yaml(path)
    assert [str(p) for p in raised.value.problems] == [
        f"{path}:1: (root): the file is larger than 1000000 bytes; refused"
    ]


def test_the_size_limit_is_configurable(tmp_path: Path) -> None:
    path = tmp_path / "small.yaml"
    path.write_text("flow: f\nsource: {connection: a, entity: b}\n")
    with pytest.raises(SpecError) as raised:
        load_yaml(path, YamlLimits(max_bytes=20))
    assert [p.message for p in raised.value.problems] == ["the file is larger than 20 bytes; refused"]


def test_validate_reports_a_bomb_among_the_shipped_specs(specs: SpecCopy, cli: Callable[..., Result]) -> None:
    specs.write("mappings/bomb.yaml", alias_bomb(12))
    with fast(5.0):
        result = cli("validate")
    assert result.exit_code == 1
    assert result.output.splitlines()[:-1] == [
        "mappings/bomb.yaml:6: (root): the YAML expands to more than 100000 nodes (aliases repeat what "
        "their anchor holds); refused"
    ]


def test_load_specs_passes_its_limits_to_every_file(specs: SpecCopy) -> None:
    _, problems = load_specs([specs.root / "connectors"], limits=YamlLimits(max_bytes=100))
    assert sorted(p.message for p in problems) == ["the file is larger than 100 bytes; refused"] * 6
