"""Throughput and memory of a sync, against sandboxes served over HTTP. `python -m bench.run --items 5000`.

Measures, for QAD items -> Pipedrive products (vendor rate limits switched off so the engine is what is measured):
  1. first run: every record created (one search-free create per record, thanks to the prefetch index)
  2. full re-read with nothing changed: read + map + diff only, zero writes
  3. incremental run with nothing changed
Each run is a separate `ml-connector run` process; its peak RSS is reported.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from ml_connector.sandbox.pipedrive import create_pipedrive_sandbox
from ml_connector.sandbox.qad import create_qad_sandbox
from ml_connector.sandbox.serve import SandboxServer
from ml_connector.sandbox.workspace import SANDBOX_ENV, write_workspace
from ml_connector.store import State

REPO = Path(__file__).resolve().parents[1]


def run_cli(workspace: Path, flow: str) -> tuple[dict[str, Any], float, float]:
    """One `ml-connector run` in a child process: its summary, wall seconds and peak RSS (MiB)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    started = time.perf_counter()
    result = subprocess.run([sys.executable, "-m", "ml_connector.cli", "run", "--json", "--flow", flow, "-w",
                             str(workspace)],
                            capture_output=True, text=True, cwd=REPO, env={**os.environ, **SANDBOX_ENV}, check=False)
    seconds = time.perf_counter() - started
    peak = max(before, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss) / 1024
    if not result.stdout.strip().startswith("{"):
        raise SystemExit(f"run failed:\n{result.stdout}\n{result.stderr}")
    return json.loads(result.stdout), seconds, peak


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--items", type=int, default=5000)
    args = parser.parse_args()
    server = SandboxServer()
    erp = create_qad_sandbox(customers=10, items=args.items)
    crm = create_pipedrive_sandbox()
    crm.config.update(burst_limit=None, search_burst_limit=None, daily_budget=None)
    erp.config.update(rate_per_second=0)
    try:
        urls = {"qad": server.start("qad", erp).url, "pipedrive": server.start("pipedrive", crm).url}
        workspace = write_workspace(Path(tempfile.mkdtemp(prefix="ml-bench-")), urls)
        flow = "items_to_products"
        rows = []
        first, seconds, peak = run_cli(workspace, flow)
        f = first["flows"][0]
        rows.append(("first run (creates)", f["read"], f["created"] + f["updated"], f["api_calls"], seconds, peak))
        state = State(workspace.parent / "state" / "ml-connector.duckdb")
        state.watermarks.reset(flow)
        state.close()
        second, seconds, peak = run_cli(workspace, flow)
        f = second["flows"][0]
        rows.append(("full re-read, unchanged", f["read"], f["created"] + f["updated"], f["api_calls"], seconds, peak))
        third, seconds, peak = run_cli(workspace, flow)
        f = third["flows"][0]
        rows.append(("incremental, unchanged", f["read"], f["created"] + f["updated"], f["api_calls"], seconds, peak))
    finally:
        server.stop()
    print(f"items in QAD: {args.items}")
    print(f"{'run':26} {'read':>7} {'written':>8} {'api reads':>9} {'api writes':>10} {'seconds':>8} "
          f"{'records/s':>10} {'peak MiB':>9}")
    for name, read, written, calls, seconds, peak in rows:
        rate = read / seconds if seconds else 0.0
        print(f"{name:26} {read:7d} {written:8d} {calls['reads']:9d} {calls['writes']:10d} {seconds:8.2f} "
              f"{rate:10.0f} {peak:9.0f}")


if __name__ == "__main__":
    main()
