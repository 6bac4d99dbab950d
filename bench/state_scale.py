"""State cost at scale (issue 24, targets 5 and 6): `python -m bench.state_scale [--audit-rows 10000000]`.

Prints, as value / target / ratio:
  - the id-map lookup of one page of 1,000 keys at 10k, 100k and 1M links, the map written as a flow writes it (page
    by page, in the source's order): the query for a page's changed records (`get_many`, bounded by the page's key
    range), and the diff of an unchanged page (`IdMaps.diff`, fingerprints loaded once per flow run: their load time
    is printed too); target: 1M within 1.5x of 10k, as the median of paired ratios of the sizes measured in turn;
    keys from all over the map are printed for information;
  - `status` and `audit` (the default listing, and by flow, run, key and outcome) at 10M audit rows; target < 1 s.
Rows are generated with DuckDB SQL directly, in a temporary folder.
"""

from __future__ import annotations

import argparse
import random
import statistics
import tempfile
import time
from collections.abc import Callable, Iterable
from functools import partial
from pathlib import Path
from typing import Any

from bench.stats import median_paired_ratio
from ml_connector.store import State
from ml_connector.store.fingerprints import Fingerprints

PAGE = 1_000
ROUNDS = 61  # per size and measure, after one warm-up round
SIZES = (10_000, 100_000, 1_000_000)
FLOW = "items_to_products"


def timed(work: Callable[[], Any], rounds: int) -> float:
    """Median seconds of ``rounds`` calls (after one warm-up call)."""
    work()
    samples = []
    for _ in range(rounds):
        started = time.perf_counter()
        work()
        samples.append(time.perf_counter() - started)
    return statistics.median(samples)


def line(name: str, value: float, target: float | None, unit: str = "ms") -> str:
    if target is None:
        return f"  {name:<58} {value:10.2f} {unit}"
    verdict = "met" if value <= target else "NOT MET"
    return f"  {name:<58} {value:10.2f} {unit}  target <= {target:.2f}  ratio {value / target:5.2f}  {verdict}"


def id_map_state(folder: Path, links: int) -> State:
    """A state whose id map holds ``links`` links of the flow and a tenth as many of another, written as a flow
    writes them: page after page in the order the source lists its records (by key here, as QAD lists items)."""
    state = State(folder / f"idmap-{links}.duckdb")
    for flow, count in ((FLOW, links), ("other_flow", links // 10)):
        with state.db.roomy():  # a million rows in one statement: the set-up, not what a run does (a page at a time)
            state.db.execute(
                "INSERT INTO id_map (flow, source_key, target_id, payload_hash) SELECT ?, 'ITEM-' || lpad(i::VARCHAR, "
                "8, '0'), (100000 + i)::VARCHAR, sha256(i::VARCHAR) FROM range(?) t(i) ORDER BY i", [flow, count])
    state.db.execute("CHECKPOINT")
    return state


def lookups(folder: Path) -> None:
    """The sizes' states are open side by side and measured in turn, round after round (the issue's method: contenders
    alternated, medians of paired ratios), so that a slow moment of the machine falls on every size alike: measured
    one size after the other, 15 calls each, the 1M / 10k query ratio ranged 1.29-1.99x between runs of one commit."""
    print(f"id-map lookup of one page of {PAGE:,} keys (the sizes in turn, {ROUNDS} rounds; medians)")
    states = {links: id_map_state(folder, links) for links in SIZES}
    work: dict[str, dict[int, Callable[[], Any]]] = {"query": {}, "scattered": {}, "diff": {}}
    load: dict[int, float] = {}
    for links, state in states.items():
        start = random.Random(links).randrange(links - PAGE)
        rows = state.db.fetchall("SELECT source_key, payload_hash FROM id_map WHERE flow = ? AND source_key IN "
                                 "(SELECT unnest(?::VARCHAR[]))",
                                 [FLOW, [f"ITEM-{i:08d}" for i in range(start, start + PAGE)]])
        page = dict(rows)  # one source page: its keys were written together
        anywhere = [f"ITEM-{i:08d}" for i in random.Random(links).sample(range(links), PAGE)]
        state.id_maps.FINGERPRINT_MIN = 0  # the fingerprints at every size, to compare
        started = time.perf_counter()
        loaded = Fingerprints.load(state.db, FLOW)
        load[links] = time.perf_counter() - started
        assert loaded is not None
        state.db.fingerprints.flows[FLOW] = loaded
        same, entries = state.id_maps.diff(FLOW, page)
        assert same == set(page) and entries == {}, "an unchanged page must be found unchanged"
        work["diff"][links] = partial(state.id_maps.diff, FLOW, page)
        # the queries are measured without the fingerprints (every key asked of the database), the diff with them
        work["query"][links] = partial(without_fingerprints, state, loaded, page)
        work["scattered"][links] = partial(without_fingerprints, state, loaded, anywhere)
    samples = {kind: alternated(calls) for kind, calls in work.items()}
    for links in SIZES:
        medians = {kind: statistics.median(by_size[links]) for kind, by_size in samples.items()}
        print(line(f"{links:>9,} links: query of a source page's keys (get_many)", medians["query"], None))
        print(line(f"{links:>9,} links: query of keys from all over the map (info)", medians["scattered"], None))
        print(line(f"{links:>9,} links: diff of an unchanged page (fingerprints)", medians["diff"], None))
        print(line(f"{links:>9,} links: fingerprints load, once per flow run", load[links] * 1000, None))
    for state in states.values():
        state.close()
    small, large = SIZES[0], SIZES[-1]
    for kind in ("query", "diff"):
        ratio = median_paired_ratio(samples[kind][large], samples[kind][small])
        print(line(f"target 5, {kind}: {large:,} vs {small:,} links (x)", ratio, 1.5, "x"))


def without_fingerprints(state: State, loaded: Fingerprints, keys: Iterable[str]) -> Any:
    """``get_many`` as it runs before a flow's fingerprints are loaded: the database asked for every key."""
    flows = state.db.fingerprints.flows
    flows.pop(FLOW, None)
    try:
        return state.id_maps.get_many(FLOW, keys)
    finally:
        flows[FLOW] = loaded


def alternated(calls: dict[int, Callable[[], Any]]) -> dict[int, list[float]]:
    """Milliseconds of each size's call, ``ROUNDS`` rounds of every size in turn (the first round a warm-up, not
    kept; the order rotates each round so that no size always follows the same one)."""
    samples: dict[int, list[float]] = {links: [] for links in calls}
    order = list(calls)
    for round_ in range(ROUNDS + 1):
        for links in order[round_ % len(order):] + order[:round_ % len(order)]:
            started = time.perf_counter()
            calls[links]()
            if round_:
                samples[links].append((time.perf_counter() - started) * 1000)
    return samples


def audit_state(folder: Path, rows: int) -> State:
    """A state with ``rows`` audit rows over 100 runs of two flows, time-ordered as a real state writes them."""
    state = State(folder / "audit.duckdb")
    per_run = rows // 100
    with state.db.roomy():
        state.db.execute(
            "INSERT INTO audit (run_id, flow, source_key, target_id, action, outcome, attempts, error, payload_hash, "
            "logged_at) SELECT '20260101T' || lpad((i // ?)::VARCHAR, 6, '0') || '-bench', "
            "CASE WHEN i % 2 = 0 THEN ? ELSE 'other_flow' END, 'ITEM-' || (i % ?), (100000 + i % ?)::VARCHAR, "
            "CASE WHEN i % 50 = 0 THEN 'update' ELSE 'create' END, CASE WHEN i % 97 = 0 THEN 'failed' ELSE 'ok' END, "
            "1, CASE WHEN i % 97 = 0 THEN 'HTTP 422: bad field' END, sha256(i::VARCHAR), "
            "TIMESTAMP '2026-01-01' + to_milliseconds(i) FROM range(?) t(i)", [per_run, FLOW, per_run, per_run, rows])
    for n in range(100):
        run_id = f"20260101T{n:06d}-bench"
        state.db.execute("INSERT INTO runs VALUES (?, TIMESTAMP '2026-01-01' + to_hours(?), "
                         "TIMESTAMP '2026-01-01' + to_hours(?), 'ok', 'run', '{}')", [run_id, n, n + 1])
        for flow in (FLOW, "other_flow"):
            state.db.execute("INSERT INTO flow_runs VALUES (?, ?, TIMESTAMP '2026-01-01' + to_hours(?), "
                             "TIMESTAMP '2026-01-01' + to_hours(?), 'ok', '{}')", [run_id, flow, n, n + 1])
    state.db.execute("INSERT INTO id_map (flow, source_key, target_id, payload_hash) SELECT ?, 'ITEM-' || i, "
                     "(100000 + i)::VARCHAR, 'h' FROM range(?) t(i)", [FLOW, per_run])
    state.db.execute("CHECKPOINT")
    return state


def status_and_audit(folder: Path, rows: int) -> None:
    print(f"status and audit at {rows:,} audit rows (median of 5)")
    state = audit_state(folder, rows)

    def status() -> None:  # what `ml-connector status` asks (engine/cli.py)
        state.runs.flow_status()
        state.pending.counts()
        for flow in (FLOW, "other_flow"):
            state.watermarks.get(flow)
            state.id_maps.count(flow)
        state.runs.recent(5)

    checks: list[tuple[str, Callable[[], Any]]] = [
        ("status", status),
        ("audit (newest 50)", lambda: state.audit.query()),
        ("audit --flow", lambda: state.audit.query(flow=FLOW)),
        ("audit --run (an old run)", lambda: state.audit.query(run_id="20260101T000003-bench")),
        ("audit --key", lambda: state.audit.query(source_key="ITEM-4242")),
        ("audit --outcome failed", lambda: state.audit.query(outcome="failed")),
        ("audit --outcome unchanged (none)", lambda: state.audit.query(outcome="unchanged")),
    ]
    for name, work in checks:
        print(line(f"target 6: {name}", timed(work, rounds=5) * 1000, 1000.0))
    state.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--audit-rows", type=int, default=10_000_000)
    parser.add_argument("--skip-audit", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="state-scale-") as folder:
        lookups(Path(folder))
        if not args.skip_audit:
            status_and_audit(Path(folder), args.audit_rows)


if __name__ == "__main__":
    main()
