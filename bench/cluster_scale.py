"""Scale-out (issue 25): `python -m bench.cluster_scale [--workers 1 2 4] [--seconds 180 | --quick]`.

50 simulated tenants, each running the QAD <-> Pipedrive flows against sandboxes of its own (20 customers, 20 items),
with 1, 2 and 4 `ml-connector worker` processes (``--threads``, default one each) and one `ml-connector scheduler`
over a Redis broker; every tenant has its own workspace and its own schema of one PostgreSQL server. Every flow's
schedule is `every 1m` (``--every``). Each worker count is a fresh round (new sandboxes, schemas and broker
namespace) run for ``--seconds``; then the tenants' states are read:

- flow runs completed per minute: ``flow_runs`` rows that finished inside the round's window, by minute;
- the longest wait of a due flow, from the state alone: a flow is due at the window's start (never run), and after
  each completed run at its end plus the schedule's period (an interrupted run: at once); its wait is the next
  run's ``started_at`` minus that due time, or, when no run started by the end of the window, the window's end
  minus it. This spans the scheduler's tick (``--interval``), the queue, and waiting for a `depends_on` flow;
- the 429 answers the sandboxes gave (their request logs).

The sandboxes share two uvicorn servers (QAD, Pipedrive): tenant i is served on loopback address 127.0.1.i, and a
small dispatcher hands each request to that tenant's sandbox, so one process does not run 100 idle event loops.
The table goes between ``<!-- cluster_scale: <every> -->`` markers in bench/RESULTS.md, one section per schedule;
the rest of the file is left alone.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import yaml

from ml_connector.resources import shipped_specs
from ml_connector.sandbox.core import Sandbox
from ml_connector.sandbox.pipedrive import create_pipedrive_sandbox
from ml_connector.sandbox.qad import create_qad_sandbox
from ml_connector.sandbox.serve import SandboxServer
from ml_connector.sandbox.workspace import SANDBOX_ENV, write_workspace
from ml_connector.sync.schedule import parse_schedule
from tests.pg import Server, server_binaries
from tests.redis_server import RedisServer

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "RESULTS.md"


def markers(every: str) -> tuple[str, str]:
    """The markers of the section for one schedule: a cadence the machine keeps up with and one it cannot each keep
    their table."""
    return f"<!-- cluster_scale: {every} -->", f"<!-- /cluster_scale: {every} -->"

INTEGRATION = "qad-pipedrive"
UNFINISHED = ("running", "interrupted")


class TenantDispatcher:
    """One ASGI app for many tenants' sandboxes: the local address a request came in on picks the sandbox."""

    def __init__(self, by_host: dict[str, Sandbox]) -> None:
        self.by_host = by_host
        self.hosts = tuple(by_host)  # SandboxServer binds every one of them, on one port

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        host = (scope.get("server") or ("", 0))[0]
        sandbox = self.by_host.get(host)
        if sandbox is None:
            await send({"type": "http.response.start", "status": 404, "headers": []})
            await send({"type": "http.response.body", "body": b"no tenant on this address"})
            return
        await sandbox(scope, receive, send)


class Postgres(Server):
    """tests/pg.py's throwaway server, at this process's priority (the final run is not niced)."""

    def _run(self, *args: str) -> subprocess.CompletedProcess[str]:
        command = [str(self.binaries / args[0]), *args[1:]]
        if self.as_root:
            command = ["runuser", "-u", "postgres", "--", *command]
        return subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)


class Redis(RedisServer):
    """tests/redis_server.py's throwaway server, at this process's priority."""

    def start(self) -> None:
        log = self.folder / "redis.log"
        self.process = subprocess.Popen(
            [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--dir", str(self.folder), "--logfile", str(log)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        import redis

        client = redis.Redis.from_url(self.url)
        deadline = time.monotonic() + 20
        while True:
            try:
                client.ping()
                return
            except redis.RedisError:
                if time.monotonic() > deadline or self.process.poll() is not None:
                    raise RuntimeError("redis-server did not start") from None
                time.sleep(0.05)


@dataclass
class Round:
    workers: int
    seconds: float
    runs: int = 0
    not_ok: int = 0
    longest_wait: float = 0.0
    longest_at: str = ""
    longest_started: float = 0.0  # the longest wait of a cycle whose run did start
    waiting: int = 0  # due cycles not started by the end of the window
    statuses: dict[str, int] = field(default_factory=dict)
    too_many: dict[str, int] = field(default_factory=dict)  # 429s by sandbox

    @property
    def per_minute(self) -> float:
        return self.runs / (self.seconds / 60)


def mappings_copy(folder: Path, every: str) -> Path:
    """The shipped integration with every flow's schedule set to ``every`` (shared by all tenants)."""
    target = folder / INTEGRATION
    shutil.copytree(shipped_specs() / "mappings" / INTEGRATION, target)
    for path in target.glob("*.yaml"):
        text = path.read_text()
        path.write_text(re.sub(r"(?m)^schedule: .*$", f"schedule: {every}", text))
    return target


def db_now(url: str) -> datetime:
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute("SELECT now() AT TIME ZONE 'UTC'").fetchone()
    assert row is not None
    moment: datetime = row[0]
    return moment


def flow_runs(url: str, schema: str) -> list[tuple[str, datetime, datetime | None, str]]:
    with psycopg.connect(url, autocommit=True) as conn:
        rows = conn.execute(f'SELECT f.flow, f.started_at, f.finished_at, f.status FROM "{schema}".flow_runs f '
                            f'JOIN "{schema}".runs r USING (run_id) WHERE r.mode = %s ORDER BY f.started_at',
                            ["run"]).fetchall()
    return [(row[0], row[1], row[2], row[3]) for row in rows]


@dataclass(frozen=True)
class Wait:
    """How long one due cycle of a flow waited: until its run started, or (``started`` False) until the end."""

    seconds: float
    flow: str
    started: bool


def waits(runs: list[tuple[str, datetime, datetime | None, str]], flows: list[str], period: timedelta,
          start: datetime, end: datetime) -> list[Wait]:
    """Every due cycle's wait (module docstring), flow by flow."""
    found: list[Wait] = []
    for flow in flows:
        due: datetime | None = start
        for name, started, finished, status in runs:
            if name != flow:
                continue
            if due is not None and started >= due:
                found.append(Wait((started - due).total_seconds(), flow, True))
            # running at the end of the window: not waiting; interrupted: due again at once
            due = None if finished is None else finished if status in UNFINISHED else finished + period
        if due is not None and due < end:
            found.append(Wait((end - due).total_seconds(), flow, False))
    return found


def longest_wait(runs: list[tuple[str, datetime, datetime | None, str]], flows: list[str], period: timedelta,
                 start: datetime, end: datetime) -> tuple[float, str]:
    """The longest wait of a due flow (module docstring) and which flow had it."""
    worst = max(waits(runs, flows, period, start, end), key=lambda wait: wait.seconds, default=None)
    if worst is None:
        return 0.0, ""
    return worst.seconds, worst.flow + ("" if worst.started else " (never started)")


def start_process(args: list[str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        return subprocess.Popen([sys.executable, "-m", "ml_connector.cli", *args], cwd=REPO, stdout=out,
                                stderr=subprocess.STDOUT, env={**os.environ, **SANDBOX_ENV})


def stop_processes(processes: list[subprocess.Popen[bytes]]) -> None:
    for process in processes:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
    for process in processes:
        try:
            process.wait(timeout=90)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def run_round(workers: int, args: argparse.Namespace, pg_url: str, redis_url: str, folder: Path) -> Round:
    folder.mkdir(parents=True)
    mappings = mappings_copy(folder, args.every)
    flows = [path.stem for path in mappings.glob("*.yaml") if path.stem != "integration"]
    qads = {f"127.0.1.{i}": create_qad_sandbox(customers=args.customers, items=args.items)
            for i in range(1, args.tenants + 1)}
    crms = {f"127.0.1.{i}": create_pipedrive_sandbox() for i in range(1, args.tenants + 1)}
    server = SandboxServer()
    processes: list[subprocess.Popen[bytes]] = []
    schemas: list[str] = []
    try:
        qad_port = server.start("qad", TenantDispatcher(qads)).port  # type: ignore[arg-type]
        crm_port = server.start("pipedrive", TenantDispatcher(crms)).port  # type: ignore[arg-type]
        tenants: list[str] = []
        with psycopg.connect(pg_url, autocommit=True) as conn:
            for i in range(1, args.tenants + 1):
                schema = f"w{workers}_t{i:02d}"
                conn.execute(f'CREATE SCHEMA "{schema}"')
                schemas.append(schema)
                directory = folder / f"tenant-{i:02d}"
                path = write_workspace(directory, {"qad": f"http://127.0.1.{i}:{qad_port}",
                                                   "pipedrive": f"http://127.0.1.{i}:{crm_port}"})
                document = yaml.safe_load(path.read_text())
                document["integrations"] = [str(mappings)]
                document["state"] = {"postgresql": pg_url, "schema": schema}
                path.write_text(yaml.safe_dump(document, sort_keys=False))
                tenants += ["-w", f"t{i:02d}={path}"]
        broker = ["--broker", redis_url, "--namespace", f"bench-{workers}"]
        start = db_now(pg_url)
        processes.append(start_process(["scheduler", *tenants, *broker, "--interval", str(args.interval)],
                                       folder / "scheduler.log"))
        for n in range(workers):
            processes.append(start_process(["worker", *tenants, *broker, "--threads", str(args.threads)],
                                           folder / f"worker-{n}.log"))
        time.sleep(args.seconds)
        end = db_now(pg_url)
        stop_processes(processes)
        result = Round(workers, (end - start).total_seconds())
        period = parse_schedule(args.every)
        for schema in schemas:
            runs = flow_runs(pg_url, schema)
            for _flow, _started, finished, status in runs:
                if finished is not None and start <= finished <= end:
                    result.runs += 1
                    result.statuses[status] = result.statuses.get(status, 0) + 1
                    result.not_ok += status != "ok"
            cycles = waits(runs, flows, period, start, end)
            result.waiting += sum(not cycle.started for cycle in cycles)
            result.longest_started = max([result.longest_started,
                                          *(cycle.seconds for cycle in cycles if cycle.started)])
            wait, where = longest_wait(runs, flows, period, start, end)
            if wait > result.longest_wait:
                result.longest_wait, result.longest_at = wait, f"{schema.split('_')[1]}/{where}"
        for name, sandboxes in (("qad", qads), ("pipedrive", crms)):
            result.too_many[name] = sum(s.log.summary()["statuses"].get("429", 0) for s in sandboxes.values())
        return result
    finally:
        stop_processes(processes)
        server.stop()


def table(rounds: list[Round], args: argparse.Namespace) -> list[str]:
    lines = [
        "| workers | flow runs | runs/min | longest wait of a due flow (s) | longest wait of a started run (s) | "
        "due, not started at the end | runs not ok | 429s QAD | 429s Pipedrive |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rounds:
        lines.append(f"| {r.workers} | {r.runs} | {r.per_minute:.1f} | {r.longest_wait:.1f} ({r.longest_at}) | "
                     f"{r.longest_started:.1f} | {r.waiting} | {r.not_ok} | {r.too_many.get('qad', 0)} | "
                     f"{r.too_many.get('pipedrive', 0)} |")
    return lines


def write_results(rounds: list[Round], args: argparse.Namespace) -> None:
    begin, end = markers(args.every)
    section = [
        f"## Scale-out: {args.tenants} tenants, `{args.every}`",
        "",
        f"`python -m bench.cluster_scale` ({time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {os.cpu_count()} "
        f"cores): {args.tenants} tenants x the {INTEGRATION} flows (6 flows, all `{args.every}`; sandboxes of "
        f"{args.customers} customers and {args.items} items each; one PostgreSQL schema and one workspace per "
        f"tenant), one scheduler (`--interval {args.interval:g}`), N workers (`--threads {args.threads}`), each "
        f"count run {args.seconds:g} s from fresh. Runs: flow runs finished in the window. Wait: a due flow's due "
        "time (window start, or the end of its last completed run plus the period) to its next run's start (or to "
        "the window's end when none started); see the module docstring. A worker count that cannot keep up with "
        "the schedules leaves due flows unstarted at the end: the longest wait is then the window itself, and the "
        "longest wait of a run that did start and the count still waiting say how far behind it fell.",
        "",
        *table(rounds, args),
    ]
    RESULTS.write_text(with_section(RESULTS.read_text() if RESULTS.exists() else "", begin, end, "\n".join(section)))


def with_section(text: str, begin: str, end: str, section: str) -> str:
    """``text`` with the part between ``begin`` and ``end`` replaced by ``section`` (appended when there is none):
    the rest of RESULTS.md belongs to bench/compare.py and to the rounds of other schedules."""
    block = f"{begin}\n{section}\n{end}"
    if begin in text and end in text:
        before, _, rest = text.partition(begin)
        _, _, after = rest.partition(end)
        return before + block + after
    return text.rstrip("\n") + "\n\n" + block + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2, 4], help="worker counts, one round each")
    parser.add_argument("--seconds", type=float, default=180.0, help="length of each round")
    parser.add_argument("--quick", action="store_true", help="60 s rounds")
    parser.add_argument("--tenants", type=int, default=50)
    parser.add_argument("--customers", type=int, default=20)
    parser.add_argument("--items", type=int, default=20)
    parser.add_argument("--every", default="every 1m", help="every flow's schedule")
    parser.add_argument("--threads", type=int, default=1, help="each worker's --threads")
    parser.add_argument("--interval", type=float, default=5.0, help="the scheduler's --interval")
    parser.add_argument("--no-results", action="store_true", help="do not write bench/RESULTS.md")
    parser.add_argument("--keep", action="store_true", help="keep the work folder (logs, workspaces)")
    args = parser.parse_args()
    if args.quick:
        args.seconds = 60.0
    binaries = server_binaries()
    redis_binary = shutil.which("redis-server")
    if binaries is None or redis_binary is None:
        sys.exit("needs PostgreSQL server binaries (initdb, pg_ctl) and redis-server")
    folder = Path(tempfile.mkdtemp(prefix="ml-connector-cluster-scale-"))
    postgres, redis_server = Postgres(binaries), Redis(redis_binary)
    rounds: list[Round] = []
    try:
        postgres.start()
        redis_server.start()
        for workers in args.workers:
            print(f"{workers} worker(s): {args.seconds:g} s ...", flush=True)
            rounds.append(run_round(workers, args, postgres.url, redis_server.url, folder / f"workers-{workers}"))
            print("\n".join(table(rounds[-1:], args)[2:]), flush=True)
    finally:
        redis_server.stop()
        postgres.stop()
        if args.keep:
            print(f"work folder kept: {folder}")
        else:
            shutil.rmtree(folder, ignore_errors=True)
    print("\n".join(table(rounds, args)))
    if not args.no_results:
        write_results(rounds, args)
        print(f"\nwrote the '{markers(args.every)[0]}' section of {RESULTS.relative_to(REPO)}")


if __name__ == "__main__":
    main()
