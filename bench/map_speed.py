"""The engine's per-record mapping cost, without HTTP or state: `python -m bench.map_speed [--records 100000]`.

Does for each record what a flow run does between reading a page and diffing it (engine/sync/flow.py `_process`):
explode, source key, map (filter, lets, fields) and content hash, with the shipped `items_to_products` spec and
its declared source entity, over seeded QAD items. Prints records per second (best of `--rounds`); `--profile`
prints the top functions of one round instead. A measurement, not a test.
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import time
from pathlib import Path
from typing import Any

from ml_connector.config import ConnectorConfig, MappingConfig
from ml_connector.sandbox.qad.data import item, stream_base
from ml_connector.spec import load_specs
from ml_connector.transform.mapping import CompiledMapping, Deferred, MappingError, content_hash

REPO = Path(__file__).resolve().parents[1]


def compiled(flow: str) -> CompiledMapping:
    """The shipped mapping of `flow`, compiled as the runner compiles it (with its source's declarations)."""
    project, problems = load_specs([REPO / "connectors", REPO / "mappings"])
    if problems:
        raise SystemExit(f"specs do not load: {problems[:3]}")
    config = project.flows[flow].config
    assert isinstance(config, MappingConfig)
    connector = project.connectors[project.flow_connector(flow, "from")].config
    assert isinstance(connector, ConnectorConfig)
    return CompiledMapping(config, connector.entities[config.source.entity])


def _no_lookup(flow: str, value: Any, default: Any = None) -> Any:
    raise Deferred(f"{flow} {value}")


def map_all(mapping: CompiledMapping, records: list[dict[str, Any]]) -> int:
    """Map every record as a flow run does; the number of payloads hashed."""
    hashed = 0
    for record in records:
        for unit in mapping.explode(record):
            try:
                key = mapping.source_key(unit)
                result = mapping.map(unit, _no_lookup, _no_lookup, key=key)
            except (Deferred, MappingError):
                continue
            if result.payload is not None:
                content_hash(result.payload)
                hashed += 1
    return hashed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--profile", action="store_true")
    args = parser.parse_args()
    mapping = compiled("items_to_products")
    base = stream_base(7, 3)
    records = [item(base, i) for i in range(args.records)]
    if args.profile:
        profiler = cProfile.Profile()
        profiler.runcall(map_all, mapping, records)
        pstats.Stats(profiler).sort_stats("tottime").print_stats(15)
        return
    best = float("inf")
    hashed = 0
    for _ in range(args.rounds):
        started = time.perf_counter()
        hashed = map_all(mapping, records)
        best = min(best, time.perf_counter() - started)
    print(f"map {args.records:,} records ({hashed:,} payloads): {best:.2f} s, {args.records / best:,.0f} records/s "
          f"(best of {args.rounds})")


if __name__ == "__main__":
    main()
