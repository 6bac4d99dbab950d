"""Dependency order and cycles of flows."""

from __future__ import annotations

import pytest

from ml_connector.spec.graph import find_cycles, topological_order


def test_order_respects_dependencies_and_keeps_listed_order_for_ties() -> None:
    names = ["d", "c", "b", "a"]
    deps = {"d": ["a"], "c": [], "b": ["c", "unknown"], "a": []}
    assert topological_order(names, deps) == ["c", "b", "a", "d"]


def test_cycles_start_at_the_first_listed_member() -> None:
    names = ["x", "a", "b", "c", "s"]
    deps = {"a": ["b"], "b": ["c"], "c": ["a"], "s": ["s"], "x": ["a"]}
    assert find_cycles(names, deps) == [["a", "b", "c", "a"], ["s", "s"]]
    with pytest.raises(ValueError, match="a -> b -> c -> a"):
        topological_order(names, deps)


def test_no_cycles() -> None:
    assert find_cycles(["a", "b"], {"a": ["b"]}) == []
