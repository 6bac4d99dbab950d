"""Mapping examples as tests: each example's input is mapped and compared with its expected output."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ml_connector.config import MappingConfig
from ml_connector.config.mapping import ExampleConfig
from ml_connector.transform.mapping import CompiledMapping, Deferred, MappingError, require_reference


@dataclass(frozen=True)
class ExampleResult:
    flow: str
    index: int
    ok: bool
    message: str


_DEFER = object()  # no default given: a miss defers the example's record, as a run would


def _lookup_table(example: ExampleConfig) -> tuple[Any, Any]:
    table: Mapping[str, Mapping[str, Any]] = example.lookups

    def lookup(flow: str, key: Any, default: Any = _DEFER) -> Any:
        found = (table.get(flow) or {}).get(require_reference(flow, key))
        if found is None:
            if default is not _DEFER:
                return default
            raise Deferred(f"{flow} has not synced source key {key!r} yet")
        return found

    def lookup_source(flow: str, target: Any, default: Any = _DEFER) -> Any:
        require_reference(flow, target)
        for source_key, target_id in (table.get(flow) or {}).items():
            if str(target_id) == str(target):
                return source_key
        if default is not _DEFER:
            return default
        raise Deferred(f"{flow} has no source record for target id {target!r}")

    return lookup, lookup_source


def run_examples(config: MappingConfig) -> list[ExampleResult]:
    """Check every example of one mapping spec."""
    mapping = CompiledMapping(config)
    flow = config.flow
    results = []
    for index, example in enumerate(config.examples):
        lookup, lookup_source = _lookup_table(example)
        expected_deferred = bool(example.deferred)
        expected_error = example.error
        try:
            units = mapping.explode(dict(example.input))
            outputs = [mapping.map(unit, lookup, lookup_source).payload for unit in units]
            actual: Any = outputs[0] if mapping.each is None else outputs
        except Deferred as exc:
            ok = expected_deferred
            results.append(ExampleResult(flow, index, ok, "deferred as expected" if ok else
                                         f"deferred unexpectedly: {exc}"))
            continue
        except MappingError as exc:
            ok = expected_error is not None and expected_error in str(exc)
            results.append(ExampleResult(flow, index, ok, "parked as expected" if ok else
                                         f"mapping error: {exc}"))
            continue
        if expected_error:
            results.append(ExampleResult(flow, index, False,
                                         f"expected a mapping error containing {expected_error!r}, got {actual!r}"))
        elif expected_deferred:
            results.append(ExampleResult(flow, index, False, f"expected deferral, got {actual!r}"))
        elif actual == example.out:
            results.append(ExampleResult(flow, index, True, "ok"))
        else:
            results.append(ExampleResult(flow, index, False, f"expected {example.out!r}, got {actual!r}"))
    return results
