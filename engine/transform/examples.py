"""Mapping examples as tests: each example's input is mapped and compared with its expected output."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from engine.transform.mapping import CompiledMapping, Deferred, MappingError


@dataclass(frozen=True)
class ExampleResult:
    flow: str
    index: int
    ok: bool
    message: str


def _lookup_table(example: Mapping[str, Any]) -> tuple[Any, Any]:
    table: Mapping[str, Mapping[str, Any]] = example.get("lookups") or {}

    def lookup(flow: str, key: Any) -> Any:
        found = (table.get(flow) or {}).get(str(key))
        if found is None:
            raise Deferred(f"{flow} has not synced source key {key!r} yet")
        return found

    def lookup_source(flow: str, target: Any) -> Any:
        for source_key, target_id in (table.get(flow) or {}).items():
            if str(target_id) == str(target):
                return source_key
        raise Deferred(f"{flow} has no source record for target id {target!r}")

    return lookup, lookup_source


def run_examples(spec: Mapping[str, Any]) -> list[ExampleResult]:
    """Check every example of one mapping spec."""
    mapping = CompiledMapping(spec)
    results = []
    for index, example in enumerate(spec.get("examples") or []):
        lookup, lookup_source = _lookup_table(example)
        expected_deferred = bool(example.get("deferred"))
        try:
            units = mapping.explode(example["in"])
            outputs = [mapping.map(unit, lookup, lookup_source).payload for unit in units]
            actual: Any = outputs[0] if mapping.each is None else outputs
        except Deferred as exc:
            ok = expected_deferred
            results.append(ExampleResult(spec["flow"], index, ok, "deferred as expected" if ok else
                                         f"deferred unexpectedly: {exc}"))
            continue
        except MappingError as exc:
            results.append(ExampleResult(spec["flow"], index, False, f"mapping error: {exc}"))
            continue
        if expected_deferred:
            results.append(ExampleResult(spec["flow"], index, False, f"expected deferral, got {actual!r}"))
        elif actual == example.get("out"):
            results.append(ExampleResult(spec["flow"], index, True, "ok"))
        else:
            results.append(ExampleResult(spec["flow"], index, False,
                                         f"expected {example.get('out')!r}, got {actual!r}"))
    return results
