"""First-sync write cost: client CPU per write and peak RSS. `python -m bench.write_speed --items 5000`.

QAD items -> Pipedrive products, sandbox rate limits off, so the engine's own cost is what is measured. The engine
runs as an `ml-connector run` child process; a raw writer (a plain httpx client in a child process) then POSTs the
very products the engine created to a fresh sandbox, one call each, as the baseline. CPU is the child's user +
system time (the sandboxes run in this process, so their cost is not counted).
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

import httpx
import yaml

from ml_connector.sandbox.pipedrive import create_pipedrive_sandbox
from ml_connector.sandbox.qad import create_qad_sandbox
from ml_connector.sandbox.serve import SandboxServer
from ml_connector.sandbox.workspace import SANDBOX_ENV, write_workspace

REPO = Path(__file__).resolve().parents[1]
TOKEN = SANDBOX_ENV["ML_SANDBOX_PIPEDRIVE_TOKEN"]
SENT_FIELDS = ("name", "code", "description", "unit", "prices", "custom_fields")  # what the mapping writes


def _child(argv: list[str]) -> tuple[str, float, float, float]:
    """Run a child process: its stdout, wall seconds, CPU seconds (user + system) and peak RSS (MiB)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    result = subprocess.run(argv, capture_output=True, text=True, cwd=REPO, env={**os.environ, **SANDBOX_ENV},
                            check=False)
    seconds = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    if result.returncode != 0:
        raise SystemExit(f"{argv} failed:\n{result.stdout}\n{result.stderr}")
    return result.stdout, seconds, cpu, after.ru_maxrss / 1024  # the largest child so far (engine runs first)


def raw_writer(url: str, bodies_file: str) -> None:
    """The baseline: POST each product body as it is, one call each, checking each answer carries an id."""
    bodies = json.loads(Path(bodies_file).read_text())
    with httpx.Client(base_url=url, params={"api_token": TOKEN}) as client:
        for body in bodies:
            response = client.post("/api/v2/products", json=body)
            if response.status_code >= 300:
                raise SystemExit(f"HTTP {response.status_code}: {response.text[:300]} for {body}")
            assert response.json()["data"]["id"]
    print(len(bodies))


def products(url: str) -> list[dict[str, Any]]:
    """Every product in the sandbox, as the bodies that created it."""
    found: list[dict[str, Any]] = []
    cursor: str | None = None
    with httpx.Client(base_url=url, params={"api_token": TOKEN}) as client:
        while True:
            params: dict[str, str | int] = {"limit": 500, **({"cursor": cursor} if cursor else {})}
            page = client.get("/api/v2/products", params=params).json()
            for product in page["data"]:
                body = {k: product[k] for k in SENT_FIELDS if k in product}
                body["prices"] = [{"currency": p["currency"], "price": p["price"]} for p in body.get("prices", [])]
                found.append(body)
            cursor = (page.get("additional_data") or {}).get("next_cursor")
            if not cursor:
                return found


def unlimited(workspace: Path) -> None:
    """The target's default pool raised far beyond what a run uses: the sandbox sends no rate-limit header with
    its limits off, and the connector's assumed minimum would pace the writes instead of the engine's cost."""
    document = yaml.safe_load(workspace.read_text())
    document["connections"]["pipedrive"]["quotas"] = {"default": {"window": 1, "calls": 1_000_000}}
    workspace.write_text(yaml.safe_dump(document, sort_keys=False))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--items", type=int, default=5000)
    parser.add_argument("--profile", metavar="FILE", help="write a cProfile of the engine run to FILE")
    parser.add_argument("--no-raw", action="store_true", help="measure the engine only")
    parser.add_argument("--raw", nargs=2, metavar=("URL", "BODIES"), help=argparse.SUPPRESS)  # the child
    args = parser.parse_args()
    if args.raw:
        raw_writer(*args.raw)
        return
    server = SandboxServer()
    erp = create_qad_sandbox(customers=10, items=args.items)
    crm = create_pipedrive_sandbox()
    crm.config.update(burst_limit=None, search_burst_limit=None, daily_budget=None)
    erp.config.update(rate_per_second=0)
    fresh = create_pipedrive_sandbox()
    fresh.config.update(burst_limit=None, search_burst_limit=None, daily_budget=None)
    try:
        urls = {"qad": server.start("qad", erp).url, "pipedrive": server.start("pipedrive", crm).url}
        workspace = write_workspace(Path(tempfile.mkdtemp(prefix="ml-bench-")), urls)
        unlimited(workspace)
        profile = ["-m", "cProfile", "-o", args.profile] if args.profile else []
        out, seconds, cpu, peak = _child([sys.executable, *profile, "-m", "ml_connector.cli", "run", "--json", "--flow",
                                          "items_to_products", "-w", str(workspace)])
        flow = json.loads(out)["flows"][0]
        writes = flow["api_calls"]["writes"]
        # the same command again, nothing changed: start-up, spec loading and one incremental read, no write
        _, _, idle_cpu, _ = _child([sys.executable, "-m", "ml_connector.cli", "run", "--json", "--flow",
                                    "items_to_products", "-w", str(workspace)])
        if args.no_raw:
            raw_seconds = raw_cpu = raw_writes = 0.0
        else:
            raw_seconds, raw_cpu, raw_writes = _raw(server, fresh, products(urls["pipedrive"]), workspace.parent)
    finally:
        server.stop()
    engine_ms = cpu / writes * 1000
    print(f"items in QAD: {args.items}; created: {flow['created']}; engine writes: {writes}; "
          f"reads: {flow['api_calls']['reads']}")
    print(f"engine: {seconds:.2f} s wall, {cpu:.2f} s CPU, {engine_ms:.3f} ms CPU per write, peak RSS {peak:.0f} MiB")
    print(f"engine start-up (a run with nothing to write): {idle_cpu:.2f} s CPU; CPU per write beyond it: "
          f"{(cpu - idle_cpu) / writes * 1000:.3f} ms")
    if raw_writes:
        raw_ms = raw_cpu / raw_writes * 1000
        print(f"raw writer: {raw_seconds:.2f} s wall, {raw_cpu:.2f} s CPU, {raw_ms:.3f} ms CPU per write")
        print(f"CPU per write, engine / raw: {engine_ms / raw_ms:.2f} (target 1.30)")


def _raw(server: SandboxServer, fresh: Any, bodies: list[dict[str, Any]], folder: Path) -> tuple[float, float, int]:
    """The raw writer's wall seconds, CPU seconds and writes, against a fresh sandbox."""
    bodies_file = folder / "bodies.json"
    bodies_file.write_text(json.dumps(bodies))
    fresh_url = server.start("fresh", fresh).url
    out, seconds, cpu, _ = _child([sys.executable, "-m", "bench.write_speed", "--raw", fresh_url, str(bodies_file)])
    return seconds, cpu, int(out.strip())


if __name__ == "__main__":
    main()
