"""The state's share of a first sync's memory (issue 24, target 2): `python -m bench.state_memory [--links N ...]`.

A first sync's state work alone, without HTTP or mapping: page after page of 1,000 records, in no key order (as QAD
lists items), each page's deleted records looked up and filtered, the page diffed, then one transaction saves its
links, remembers its filtered records and adds its audit rows with their payloads, exactly the calls `sync/flow.py`
and `sync/deletes.py` make. Each size runs in a child process of its own; printed: its peak RSS, and the peak of the
largest size over the smallest's (for information: the benchmark's target 2 is measured on the real first sync).

It takes about 2 minutes at a million links where the real first sync takes 12 to 15, so a change to the state
(settings, schema, indexes) can be judged quickly. Its keys and payloads are made up; the same calls replayed with a
real first sync's keys and payloads (2026-12-06, DuckDB 2.0.1, log folded at 16 MiB) grew from 146 MiB at 100k
links to 196 MiB at 1M, as much as the whole first sync grew, with or without the audit table, with 122,880-row
groups, without the id map's by-target index, at 32 MB, with one thread. This script itself was run at 10k and 30k
links only so far (114 and 129 MiB).
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
from pathlib import Path
from typing import Any

from bench.measure import run_child
from ml_connector.store import AuditRow, State

PAGE = 1_000
FLOW = "items_to_products"
DELETED = "deleted at the source; never linked"


def records(links: int, seed: int = 7) -> list[tuple[str, str]]:
    """(key, kind) in the source's order: kind is "create", "filter" (12 %) or "delete" (4 %)."""
    rng = random.Random(seed)
    keys = [f"{10 + i // 10_000}-{1000 + i % 10_000}" for i in range(links)]
    rng.shuffle(keys)
    kinds = rng.choices(["create", "filter", "delete"], weights=[84, 12, 4], k=links)
    return list(zip(keys, kinds, strict=True))


def payload(key: str) -> dict[str, Any]:
    """About the size of a product the QAD items flow sends."""
    return {"name": f"Item {key} stainless steel fitting, 25 mm", "code": key, "prices": [
        {"price": 12.5, "currency": "USD", "cost": 7.25}], "unit": "EA", "description": "x" * 120, "active": True}


def first_sync(path: Path, links: int) -> None:
    """The state calls of a first sync of ``links`` records, a page at a time."""
    state = State(path)
    state.id_maps.load_fingerprints(FLOW)
    rows = records(links)
    for start in range(0, links, PAGE):
        page = rows[start:start + PAGE]
        deleted = [key for key, kind in page if kind == "delete"]
        if deleted:
            state.id_maps.get_many(FLOW, deleted)
            state.filtered.recall(FLOW, deleted, (), reason=DELETED)
            notes = [AuditRow("r1", FLOW, key, None, "filter", "filtered", note=DELETED) for key in deleted]

            def gone(deleted: list[str] = deleted, notes: list[AuditRow] = notes) -> None:
                state.pending.clear(FLOW, deleted)
                state.filtered.remember(FLOW, deleted, reason=DELETED)
                state.audit.add(notes)
            state.db.atomically(gone)
        created = [key for key, kind in page if kind == "create"]
        filtered = [key for key, kind in page if kind == "filter"]
        state.id_maps.diff(FLOW, {key: "new" for key in created + filtered})
        again, done = state.filtered.recall(FLOW, filtered, created)
        audit = [AuditRow("r1", FLOW, key, str(start + i), "create", "ok", 1, None, f"{i:064x}",
                          payload=payload(key)) for i, key in enumerate(created)]
        audit += [AuditRow("r1", FLOW, key, None, "filter", "filtered") for key in filtered]

        def write(created: list[str] = created, filtered: list[str] = filtered, again: set[str] = again,
                  done: list[str] = done, audit: list[AuditRow] = audit, start: int = start) -> None:
            state.id_maps.save(FLOW, [(key, str(start + i), f"{i:064x}") for i, key in enumerate(created)])
            state.filtered.remember(FLOW, [key for key in filtered if key not in again])
            state.filtered.forget(FLOW, done)
            state.audit.add(audit)
        state.db.atomically(write)
    state.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--links", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        with tempfile.TemporaryDirectory(prefix="ml-state-memory-") as folder:
            first_sync(Path(folder) / "state.duckdb", args.links[0])
        return 0
    peaks: list[float] = []
    print("first sync's state work alone (no HTTP), one child process per size")
    for links in args.links:
        run = run_child([sys.executable, "-m", "bench.state_memory", "--child", "--links", str(links)])
        if run.code:
            print(f"  {links:>10,} links: exit {run.code}: {run.stderr.strip()[-300:]}")
            return 1
        peaks.append(run.peak_mib)
        print(f"  {links:>10,} links: peak {run.peak_mib:6.1f} MiB in {run.wall:6.1f} s")
    if len(peaks) > 1:
        print(f"  (info) peak {args.links[-1]:,} / {args.links[0]:,}: {peaks[-1] / peaks[0]:.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
