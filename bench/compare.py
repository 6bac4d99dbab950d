"""Issue 24's side-by-side benchmark: `make bench` (100k items, 3 rounds), `--quick` (10k, 1 round), `--million`.

Contenders run as child processes, alternated within each round (the order flips every round), and each target is
the median of the ratios paired per round (engine / baseline of the same round). Results go to the console and to
bench/RESULTS.md with the machine and the commit.

1. Reading QAD items over HTTP (page size 1,000), sandbox limits OFF (the engine is what is measured):
   raw httpx reader (hashes each record) = 1.00; `plan --full` and `run --full` with nothing changed (after a first
   sync; both re-read everything);
   dlt's rest_api source into DuckDB (jsonl loader; its default loader at a smaller size), from bench/.venv-dlt.
2. Peak RSS of `run --full` and of the first sync; flat means 1M <= 1.2x 100k and <= 250 MiB (`--million`).
3. First sync of items into Pipedrive products: the engine vs a raw writer POSTing the same products one per call
   with the same concurrency; Pipedrive limits OFF and the workspace's quota raised (`quotas: {default: {calls:
   10000}}`), else the connector's assumed minimum (20 calls / 2 s) is what would be measured.
4. Rate-limit use: Pipedrive limits ON with headers (burst R per 2 s, no quota override: the engine learns R from
   x-ratelimit-limit), a long first sync; calls per window / R and 429s after the first back-off, from the
   sandbox's request log.
5-6. `bench/state_scale.py` when present: id-map lookup at 10k vs 1M rows (every run); status/audit at 10M audit
   rows (`--million` only).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from bench.measure import REPO, ChildRun, commit, compile_bytecode, machine, run_child
from bench.stats import Target, median_paired_ratio, parse_state_scale, rate_use, target_table
from ml_connector.sandbox.pipedrive import create_pipedrive_sandbox
from ml_connector.sandbox.qad import create_qad_sandbox
from ml_connector.sandbox.serve import SandboxServer
from ml_connector.sandbox.workspace import SANDBOX_ENV, write_workspace

FLOW = "items_to_products"
ENV = {**os.environ, **SANDBOX_ENV}
DLT_VENV = REPO / "bench" / ".venv-dlt"
WRITE_CONCURRENCY = 8  # the engine's quota pool default (schema `quota.concurrency`), given to the raw writer too
RATE_R, RATE_WINDOW = 80, 2.0
RESULTS = REPO / "bench" / "RESULTS.md"


@dataclass
class Report:
    """Everything the run prints: free-form sections and the targets."""

    lines: list[str] = field(default_factory=list)
    targets: list[Target] = field(default_factory=list)

    def say(self, line: str = "") -> None:
        print(line, flush=True)
        self.lines.append(line)


def cli(workspace: Path, *args: str) -> ChildRun:
    run = run_child([sys.executable, "-m", "ml_connector.cli", *args, "--json", "--flow", FLOW, "-w", str(workspace)],
                    ENV)
    if run.code not in (0, 1):
        raise SystemExit(f"ml-connector {' '.join(args)} failed ({run.code}):\n{run.stdout[-3000:]}\n"
                         f"{run.stderr[-3000:]}")
    return run


def qad(items: int, server: SandboxServer, name: str) -> str:
    erp = create_qad_sandbox(customers=1, items=items)
    erp.config.update(rate_per_second=0)  # limits off: the readers are measured, not the sandbox's limiter
    return server.start(name, erp).url


def pipedrive(server: SandboxServer, name: str, limits: bool) -> tuple[str, Any]:
    crm = create_pipedrive_sandbox()
    if limits:
        crm.config.update(burst_limit=RATE_R, daily_budget=None)
    else:
        crm.config.update(burst_limit=None, search_burst_limit=None, daily_budget=None)
    return server.start(name, crm).url, crm


def workspace(urls: dict[str, str], quota: int | None) -> Path:
    """The sandboxes' workspace; ``quota``: calls per window of both connections' default pools, instead of what
    the connectors declare for a real account (QAD 20 calls a second, which alone makes 100 pages last 5 s; Pipedrive
    the assumed minimum): the engine's own cost is what targets 1-3 measure, not the vendors' limits."""
    path = write_workspace(Path(tempfile.mkdtemp(prefix="ml-bench-")), urls)
    if quota:
        document = yaml.safe_load(path.read_text())
        for connection in ("qad", "pipedrive"):
            document["connections"][connection]["quotas"] = {"default": {"calls": quota}}
        path.write_text(yaml.safe_dump(document, sort_keys=False))
    return path


def state_mib(ws: Path) -> float:
    return sum(p.stat().st_size for p in (ws.parent / "state").glob("*")) / 2**20


def flow_summary(run: ChildRun) -> dict[str, Any]:
    return dict(run.json()["flows"][0])


# -- 1 and 2: reading ----------------------------------------------------------------------------------------------

def dlt_python(report: Report) -> Path | None:
    """bench/.venv-dlt's python with dlt[duckdb] installed there (never in the project's venv), or None."""
    python = DLT_VENV / "bin" / "python"
    if not python.exists():
        report.say(f"creating {DLT_VENV} and installing dlt[duckdb] (once)")
        made = subprocess.run([sys.executable, "-m", "venv", str(DLT_VENV)], capture_output=True, text=True)
        if made.returncode:
            report.say(f"dlt skipped: venv not created: {made.stderr.strip()[-300:]}")
            return None
    check = subprocess.run([str(python), "-c", "import dlt, duckdb, requests"], capture_output=True, text=True)
    if check.returncode:
        pip = subprocess.run([str(python), "-m", "pip", "install", "--quiet", "dlt[duckdb]"], capture_output=True,
                             text=True)
        if pip.returncode:
            report.say(f"dlt skipped: `pip install dlt[duckdb]` failed: {pip.stderr.strip()[-300:]}")
            return None
    return python


def reading(report: Report, items: int, rounds: int, small: int, server: SandboxServer) -> dict[str, float]:
    """Target 1 at ``items``: reader, plan, run --full, dlt (jsonl), dlt default at ``small``. Returns peaks."""
    url = qad(items, server, f"qad-{items}")
    crm_url, _crm = pipedrive(server, f"pd-read-{items}", limits=False)
    ws = workspace({"qad": url, "pipedrive": crm_url}, quota=10000)
    report.say(f"\n## Reading {items:,} QAD items (limits off, page size 1,000)")
    first = cli(ws, "run")
    f = flow_summary(first)
    report.say(f"first sync (setup): read {f['read']:,}, created {f['created']:,} in {first.wall:.1f} s, "
               f"CPU {first.cpu:.1f} s, peak {first.peak_mib:.0f} MiB")
    small_url = qad(small, server, f"qad-small-{small}")
    dlt = dlt_python(report)
    pipelines = Path(tempfile.mkdtemp(prefix="ml-bench-dlt-"))
    contenders: dict[str, Callable[[], ChildRun]] = {
        "reader": lambda: run_child([sys.executable, "bench/raw_reader.py", url]),
        "plan --full": lambda: cli(ws, "plan", "--full"),
        "run --full": lambda: cli(ws, "run", "--full"),
    }
    if dlt:
        contenders["dlt jsonl"] = lambda: run_child([str(dlt), "bench/dlt_reader.py", url, str(pipelines), "jsonl"])
        contenders["reader small"] = lambda: run_child([sys.executable, "bench/raw_reader.py", small_url])
        contenders["dlt default small"] = lambda: run_child([str(dlt), "bench/dlt_reader.py", small_url,
                                                             str(pipelines), "default"])
    results: dict[str, list[ChildRun]] = {name: [] for name in contenders}
    growth: list[float] = []
    for r in range(rounds):
        order = list(contenders) if r % 2 == 0 else list(reversed(contenders))
        for name in order:
            before = state_mib(ws)
            run = contenders[name]()
            expected = small if name.endswith("small") else items
            if name not in ("plan --full", "run --full") and (run.code or run.json().get("records") != expected):
                raise SystemExit(f"{name} did not read {expected:,} records (exit {run.code}):\n"
                                 f"{run.stdout[-2000:]}\n{run.stderr[-2000:]}")
            if name == "run --full":
                growth.append(state_mib(ws) - before)
            results[name].append(run)
    report.say(f"{'contender':18} {'wall s (median)':>15} {'CPU s':>7} {'peak MiB':>9} "
               f"{'x reader (paired median)':>25}")
    walls = {name: [run.wall for run in runs] for name, runs in results.items()}
    ratios: dict[str, float] = {}
    for name, runs in results.items():
        base = "reader small" if name.endswith("small") else "reader"
        ratios[name] = median_paired_ratio(walls[name], walls[base])
        mid = sorted(runs, key=lambda run: run.wall)[len(runs) // 2]
        report.say(f"{name:18} {mid.wall:15.2f} {mid.cpu:7.2f} {max(r.peak_mib for r in runs):9.0f} "
                   f"{ratios[name]:25.2f}")
    full = flow_summary(results["run --full"][-1])
    report.say(f"run --full: read {full['read']:,}, unchanged {full.get('unchanged', '?')}, written "
               f"{full['created'] + full['updated']}, API reads {full['api_calls']['reads']}; state growth per "
               f"unchanged full run {sum(growth) / len(growth):.2f} MiB ({sum(growth) / len(growth) / items * 1e5:.2f}"
               f" MiB per 100k records)")
    if dlt:
        report.say(f"dlt default loader measured at {small:,} items against the reader at the same size")
    size = f"{items // 1000}k" if items < 1_000_000 else f"{items // 1_000_000}M"
    report.targets.append(Target(f"1 run --full / reader @{size}", ratios["run --full"], 1.5, "x"))
    report.targets.append(Target(f"1 plan --full / reader @{size}", ratios["plan --full"], 1.3, "x"))
    if dlt:
        report.say(f"(info) dlt jsonl / reader: {ratios['dlt jsonl']:.2f}x; dlt default / reader @{small:,}: "
                   f"{ratios['dlt default small']:.2f}x")
    shutil.rmtree(pipelines, ignore_errors=True)
    return {"full": max(r.peak_mib for r in results["run --full"]), "first": first.peak_mib}


# -- 3: first sync against a raw writer ------------------------------------------------------------------------------

def products_payload(crm: Any) -> list[dict[str, Any]]:
    """What the engine created, as POST bodies: the raw writer sends exactly the same products."""
    keep = ("name", "code", "description", "unit", "custom_fields")
    out = []
    for product in crm.store.all("products"):
        body = {k: product[k] for k in keep if product.get(k) is not None}
        body["prices"] = [{"currency": p["currency"], "price": p["price"]} for p in product.get("prices") or []]
        out.append(body)
    return out


@dataclass
class WriteRound:
    """One round's fresh sandboxes: QAD with the items, one Pipedrive for the engine, one for the raw writer."""

    items: int
    qad: Any
    workspace: Path
    crm: Any
    raw_url: str


def engine_write(report: Report, w: WriteRound, label: str) -> float:
    """The engine's first sync; its client CPU per write, and its calls against the theoretical minimum."""
    w.crm.log.reset()
    w.qad.log.reset()
    run = cli(w.workspace, "run")
    f = flow_summary(run)
    writes = f["created"] + f["updated"]
    target = w.crm.log.summary()
    source_pages = sum(1 for e in w.qad.log.entries() if e.method == "GET" and e.path.endswith("/items"))
    minimum_pages = max(1, math.ceil(w.items / 1000))
    report.say(f"{label} engine: {writes:,} products in {run.wall:.1f} s, CPU {run.cpu:.2f} s "
               f"({run.cpu / writes * 1000:.3f} ms/write), peak {run.peak_mib:.0f} MiB")
    report.say(f"{label} calls / minimum: {FLOW}: source pages {source_pages} / {minimum_pages} = "
               f"{source_pages / minimum_pages:.2f}; target writes {target['writes']} / {writes} (one per call) = "
               f"{target['writes'] / writes:.2f}; target reads {target['reads']} (catalog, match index)")
    return run.cpu / writes


def raw_write(report: Report, w: WriteRound, products: list[dict[str, Any]], label: str) -> float:
    """The raw writer POSTing ``products`` (what the engine created), one per call, into its own sandbox."""
    handle, name = tempfile.mkstemp(prefix="ml-bench-products-", suffix=".jsonl")
    os.close(handle)
    path = Path(name)
    path.write_text("".join(json.dumps(p) + "\n" for p in products))
    run = run_child([sys.executable, "bench/raw_writer.py", w.raw_url, SANDBOX_ENV["ML_SANDBOX_PIPEDRIVE_TOKEN"],
                     str(path), str(WRITE_CONCURRENCY)])
    path.unlink()
    counts = run.json()
    report.say(f"{label} raw writer: {counts['written']:,} products in {run.wall:.1f} s, CPU {run.cpu:.2f} s "
               f"({run.cpu / max(1, counts['written']) * 1000:.3f} ms/write), refused {counts['failed']}")
    if counts["failed"] or not counts["written"]:
        raise SystemExit("the raw writer's products were refused: see bench/compare.py products_payload")
    return run.cpu / counts["written"]


def first_sync(report: Report, items: int, rounds: int, server: SandboxServer) -> None:
    report.say(f"\n## First sync: {items:,} items -> Pipedrive products (limits off, quota override 10000/2 s, "
               f"concurrency {WRITE_CONCURRENCY})")
    engine_cpu: list[float] = []
    raw_cpu: list[float] = []
    products: list[dict[str, Any]] = []
    for r in range(rounds):
        erp = create_qad_sandbox(customers=1, items=items)
        erp.config.update(rate_per_second=0)
        url = server.start(f"qad-w{r}", erp).url
        crm_url, crm = pipedrive(server, f"pd-w{r}", limits=False)
        raw_url, _raw = pipedrive(server, f"pd-raw{r}", limits=False)
        w = WriteRound(items, erp, workspace({"qad": url, "pipedrive": crm_url}, quota=10000), crm, raw_url)
        label = f"round {r + 1}"
        # the raw writer sends the engine's products: the first round needs the engine first, later rounds flip
        if r % 2 == 0:
            engine_cpu.append(engine_write(report, w, label))
            products = products or products_payload(crm)
            raw_cpu.append(raw_write(report, w, products, label))
        else:
            raw_cpu.append(raw_write(report, w, products, label))
            engine_cpu.append(engine_write(report, w, label))
    report.targets.append(Target("3 first sync CPU/write / raw writer", median_paired_ratio(engine_cpu, raw_cpu),
                                 1.3, "x"))


# -- 4: rate-limit use -----------------------------------------------------------------------------------------------

def rate_limit_use(report: Report, items: int, server: SandboxServer) -> None:
    report.say(f"\n## Rate-limit use: {items:,} items -> products, Pipedrive limits ON (burst {RATE_R} / "
               f"{RATE_WINDOW:.0f} s, with headers), no quota override")
    url = qad(items, server, "qad-rate")
    crm_url, crm = pipedrive(server, "pd-rate", limits=True)
    ws = workspace({"qad": url, "pipedrive": crm_url}, quota=None)
    crm.log.reset()
    run = cli(ws, "run")
    f = flow_summary(run)
    entries = crm.log.entries()
    times, statuses = [e.at for e in entries], [e.status for e in entries]
    use, after = rate_use(times, statuses, RATE_R, RATE_WINDOW)
    span = max(times) - min(times) if times else 0.0
    report.say(f"{f['created']:,} products, {len(entries):,} calls in {span:.1f} s ({run.wall:.1f} s wall): "
               f"{use * RATE_R:.1f} admitted calls per window of R={RATE_R}; 429s: {statuses.count(429)} in all, "
               f"{after} after the first back-off")
    report.targets.append(Target("4 calls per window / R", use, 0.95, "", at_least=True))
    report.targets.append(Target("4 429s after first back-off", float(after), 0.0, ""))


# -- main ------------------------------------------------------------------------------------------------------------

def state_scale(report: Report, audit: bool) -> None:
    """Targets 5 and 6 from bench/state_scale.py (P2's script), when present: its own `target N` lines; the 10M
    audit rows of target 6 only when ``audit`` (--million)."""
    script = REPO / "bench" / "state_scale.py"
    if not script.exists():
        report.targets.append(Target("5 id-map page 1M / 10k", None, 1.5, "x", note="bench/state_scale.py absent"))
        return
    run = run_child([sys.executable, "-m", "bench.state_scale", *([] if audit else ["--skip-audit"])], ENV)
    report.say("\n## bench/state_scale.py\n" + run.stdout.strip())
    found = parse_state_scale(run.stdout)
    report.targets.extend(found)
    if run.code or not found:
        report.targets.append(Target("5 id-map page 1M / 10k", None, 1.5, "x",
                                     note=f"bench/state_scale.py exit {run.code}: {run.stderr.strip()[-200:]}"))


def write_results(report: Report, args: argparse.Namespace, seconds: float, started_at: str) -> None:
    info = machine()
    ended_at = commit()
    measured = ended_at if ended_at == started_at else (
        f"{started_at} at the start, {ended_at} at the end: the code changed while it ran (each contender runs the "
        "code of the moment it starts); measure again on one commit")
    head = [
        "# Benchmark results (generated by `make bench`; do not edit)", "",
        f"- command: `python -m bench.compare {' '.join(sys.argv[1:])}`".rstrip(),
        f"- commit: {measured}",
        f"- machine: {info['cpu']}, {info['cores']} cores, {info['ram']} RAM, Python {info['python']}, {info['os']}",
        f"- measured {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {seconds / 60:.1f} min, "
        f"{args.rounds} round(s), contenders alternated (order flipped every round), medians of paired ratios",
        "- settings: both sandboxes' limits off and both connections' `quotas: {default: {calls: 10000}}` (instead "
        "of QAD's declared 20 calls/s and Pipedrive's assumed minimum) for targets 1-3; Pipedrive limits on (burst "
        f"{RATE_R} / 2 s, headers, no quota override) for target 4; the engine's bytecode compiled before "
        "measuring (bench/measure.py `compile_bytecode`)", "",
        "## Targets", "", *target_table(report.targets, markdown=True), "", "## Details", "", "```",
        *report.lines, "```", ""]
    RESULTS.write_text("\n".join(head) + kept_sections(RESULTS.read_text() if RESULTS.exists() else ""))


def kept_sections(text: str) -> str:
    """The sections other benchmarks write into bench/RESULTS.md between their markers: bench/cluster_scale.py's,
    one per schedule (``<!-- cluster_scale: every 1m -->`` ... ``<!-- /cluster_scale: every 1m -->``)."""
    sections = re.finditer(r"<!-- (cluster_scale: [^>]*?) -->.*?<!-- /\1 -->", text, re.DOTALL)
    return "".join(f"\n{section.group(0)}\n" for section in sections)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--items", type=int, help="items read (default 100,000; --quick 10,000)")
    parser.add_argument("--rounds", type=int, help="rounds (default 3; --quick 1)")
    parser.add_argument("--write-items", type=int, help="items of the first-sync comparison (default 10,000)")
    parser.add_argument("--rate-items", type=int, help="items of the rate-limit sync (default 3,000)")
    parser.add_argument("--million", action="store_true", help="also read 1,000,000 items (targets 1, 2, 5)")
    parser.add_argument("--quick", action="store_true", help="a smoke run: 10k items, 1 round, small syncs")
    parser.add_argument("--no-results", action="store_true", help="do not write bench/RESULTS.md")
    args = parser.parse_args()
    args.items = args.items or (10_000 if args.quick else 100_000)
    args.rounds = args.rounds or (1 if args.quick else 3)
    args.write_items = args.write_items or (2_000 if args.quick else 10_000)
    args.rate_items = args.rate_items or (600 if args.quick else 3_000)
    small = min(args.items, 10_000)
    report = Report()
    modules = compile_bytecode(REPO / folder for folder in ("engine", "protos"))
    report.say(f"bytecode of the engine's {modules} modules compiled before measuring (as an install does)")
    started = time.perf_counter()
    started_at = commit()  # a contender runs the code of the moment it starts: a change mid-run is said
    server = SandboxServer()
    try:
        peaks = reading(report, args.items, args.rounds, small, server)
        first_sync(report, args.write_items, args.rounds, server)
        rate_limit_use(report, args.rate_items, server)
        if args.million:
            server.stop()
            big = reading(report, 1_000_000, args.rounds, small, server)
            for kind in ("full", "first"):
                report.targets.append(Target(f"2 peak RSS {kind} 1M / {args.items // 1000}k",
                                             big[kind] / peaks[kind], 1.2, "x"))
                report.targets.append(Target(f"2 peak RSS {kind} 1M", big[kind], 250.0, " MiB"))
            state_scale(report, audit=True)
        else:
            for kind in ("full", "first"):  # flatness needs the 1M run: the 100k peak alone proves nothing
                report.targets.append(Target(f"2 peak RSS {kind} 1M", None, 250.0, " MiB",
                                             note=f"{peaks[kind]:.0f} MiB at {args.items:,}; 1M only with --million"))
            state_scale(report, audit=False)
        if not any(t.name.startswith("6") for t in report.targets):
            report.targets.append(Target("6 status/audit at 10M audit rows", None, 1000.0, " ms",
                                         note="bench/state_scale.py, with --million; state growth printed above"))
    finally:
        server.stop()
    report.targets.sort(key=lambda t: t.name.split()[0])
    report.say("\n## Targets")
    for line in target_table(report.targets):
        report.say(line)
    if not args.no_results:
        write_results(report, args, time.perf_counter() - started, started_at)
        print(f"\nwrote {RESULTS.relative_to(REPO)}")


if __name__ == "__main__":
    main()
