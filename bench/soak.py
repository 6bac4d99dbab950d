"""Fault soak: the shipped QAD <-> Pipedrive integration in a hostile world, then a count of what arrived.

`python -m bench.soak --seed 1 --minutes 5 --faults 0.1`

1. Both sandboxes serve over HTTP; a share (``--faults``) of all their requests, drawn from a seeded generator,
   gets a fault: 429s, 5xx, timeouts (the answer stalls, then the connection closes; the write applied before,
   not at all, or seconds after the client gave up), dropped
   connections, answers lost after the request was processed, malformed bodies (an HTML page, truncated JSON, a
   body without its records) and revoked access tokens.
2. Until ``--minutes`` are over, cycles: the ERP changes a little (repriced and new items, new customers with key
   contacts), then `ml-connector run` runs in a child process, which is SIGKILLed at a random moment in a share
   (``--kills``) of the cycles and simply started again in the next.
3. Faults off: runs until a run is quiet (nothing written, nothing parked, at most ``--settle`` runs), `replay`s
   whatever is still parked, and runs once more.
4. Every target is compared with its source, per flow: expected, synced, parked (with the reason of each),
   duplicated, lost, stale (synced but not the source's current value). Exit 1 on any duplicate, loss or stale
   record.

The random moments depend on timing, so a seed reproduces the faults' sequence, not every interleaving.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ml_connector.sandbox.core import CHAOS_KINDS
from ml_connector.sandbox.pipedrive import PipedriveSandbox, create_pipedrive_sandbox
from ml_connector.sandbox.qad import QadSandbox, create_qad_sandbox
from ml_connector.sandbox.serve import SandboxServer
from ml_connector.sandbox.workspace import SANDBOX_ENV, write_workspace
from ml_connector.store import State

REPO = Path(__file__).resolve().parents[1]
Echo = Callable[[str], Any]
# flow -> (target entity, how a target record names its source key)
TARGETS: dict[str, tuple[str, str]] = {
    "items_to_products": ("products", "ERP Item Code"),
    "customers_to_organizations": ("organizations", "ERP Customer Id"),
    "contacts_to_persons": ("persons", "ERP Contact Id"),
}


@dataclass(frozen=True)
class SoakOptions:
    seed: int = 1
    minutes: float = 1.0
    cycles: int | None = None  # stop after this many faulty runs (if sooner than ``minutes``): a CI soak
    faults: float = 0.1  # share of requests that get a fault
    kinds: tuple[str, ...] | None = None  # only these of sandbox.core.CHAOS_KINDS (default: all)
    kills: float = 0.3  # share of runs SIGKILLed at a random moment
    customers: int = 40
    items: int = 30
    stall: float = 1.0  # seconds a timed-out answer hangs before its connection closes
    request_timeout: float | None = None  # set below ``stall`` in copies of the connectors: real client timeouts
    settle: int = 6  # runs without faults, at most, to become quiet
    run_timeout: float = 300.0


@dataclass
class RunOutcome:
    code: int | None  # None: killed
    seconds: float
    summary: dict[str, Any] | None
    stderr_tail: str = ""

    @property
    def crashed(self) -> bool:
        """An exit that is neither a report (0, 1, 3) nor our SIGKILL: a traceback or a refusal to start."""
        return self.code is not None and self.code not in (0, 1, 3)


@dataclass
class FlowCount:
    flow: str
    expected: int = 0
    synced: int = 0
    parked: dict[str, str] = field(default_factory=dict)  # source key -> reason
    duplicated: dict[str, int] = field(default_factory=dict)  # source key -> records in the target
    lost: list[str] = field(default_factory=list)
    stale: list[str] = field(default_factory=list)


@dataclass
class SoakReport:
    flows: list[FlowCount]
    runs: int
    killed: int
    crashes: list[str]
    injected: dict[str, int]
    injected_on_writes: dict[str, int]
    parked_under_faults: dict[tuple[str, str], str]  # (flow, source key) -> reason, when faults went off
    without_audit: list[tuple[str, str]]  # parked records whose audit rows give no reason
    seconds: float

    @property
    def parked_after_replay(self) -> int:
        return sum(len(f.parked) for f in self.flows)

    @property
    def ok(self) -> bool:
        return not any(f.lost or f.duplicated or f.stale for f in self.flows)

    def lines(self) -> list[str]:
        out = [f"{'flow':28} {'expected':>8} {'synced':>7} {'parked':>7} {'duplicated':>10} {'lost':>5} {'stale':>6}"]
        for f in self.flows:
            out.append(f"{f.flow:28} {f.expected:8d} {f.synced:7d} {len(f.parked):7d} "
                       f"{sum(n - 1 for n in f.duplicated.values()):10d} {len(f.lost):5d} {len(f.stale):6d}")
            out += [f"   parked {key}: {reason}" for key, reason in sorted(f.parked.items())]
            out += [f"   DUPLICATED {key}: {n} records" for key, n in sorted(f.duplicated.items())]
            out += [f"   LOST {key}" for key in f.lost] + [f"   STALE {key}" for key in f.stale]
        out.append(f"parked when faults went off: {len(self.parked_under_faults)}")
        out += [f"   {flow} {key}: {reason}" for (flow, key), reason in sorted(self.parked_under_faults.items())]
        out += [f"   NO AUDIT REASON for parked {flow} {key}" for flow, key in self.without_audit]
        out.append(f"runs {self.runs} (SIGKILLed {self.killed}, crashed {len(self.crashes)}), "
                   f"faults injected {sum(self.injected.values())} {dict(sorted(self.injected.items()))} "
                   f"(on writes {dict(sorted(self.injected_on_writes.items()))}), "
                   f"parked after replay {self.parked_after_replay}, {self.seconds:.0f} s")
        out += [f"   crash: {line}" for line in self.crashes]
        return out


class Soak:
    """One soak: sandboxes, a workspace, the engine as a child process, and the final comparison."""

    def __init__(self, options: SoakOptions, directory: Path, echo: Echo = print) -> None:
        self.options = options
        self.directory = directory
        self.echo = echo
        self.rng = random.Random(options.seed)
        self.erp: QadSandbox = create_qad_sandbox(customers=options.customers, items=options.items,
                                                  seed=options.seed)
        self.crm: PipedriveSandbox = create_pipedrive_sandbox()
        # faults, not the plan's daily token budget: back-to-back runs spend a day's budget in minutes (the daily
        # budget and max_wait have their own tests); burst windows stay on
        self.crm.config.update(burst_limit=100, daily_budget=None)
        self.workspace = directory / "workspace.yaml"
        self.runs = 0
        self.killed = 0
        self.crashes: list[str] = []
        self._last_seconds = 5.0
        self._added = 0

    def execute(self) -> SoakReport:
        started = time.monotonic()
        server = SandboxServer()
        try:
            urls = {"qad": server.start("qad", self.erp).url, "pipedrive": server.start("pipedrive", self.crm).url}
            logging.getLogger("uvicorn.error").setLevel(logging.CRITICAL)  # dropped connections are the point
            write_workspace(self.directory, urls, pipedrive_auth="oauth2")
            if self.options.request_timeout is not None:
                self._shorten_timeouts(self.options.request_timeout)
            self._chaos(self.options.faults)
            deadline = started + self.options.minutes * 60
            cycles = 0
            while time.monotonic() < deadline and cycles != self.options.cycles:
                cycles += 1
                self._change_source()
                kill_after = (self.rng.uniform(0.05, 0.8 * self._last_seconds)  # within the run, most likely
                              if self.rng.random() < self.options.kills else None)
                self._run(kill_after)
            self._chaos(0.0)
            time.sleep(3 * self.options.stall)  # writes applied late (after their client timed out) land
            under_faults = self._parked()
            self.echo(f"faults off; {len(under_faults)} parked")
            for _ in range(self.options.settle):
                outcome = self._run(None)
                if outcome.code == 0 and outcome.summary and _quiet(outcome.summary):
                    break
            self._replay()
            self._run(None)
            return self._compare(under_faults, time.monotonic() - started)
        finally:
            server.stop()

    def _shorten_timeouts(self, seconds: float) -> None:
        """Point the workspace at copies of the shipped connectors whose `limits.request_timeout` is ``seconds``."""
        folder = self.directory / "connectors"
        folder.mkdir(exist_ok=True)
        for spec in sorted((REPO / "connectors").glob("*.yaml")):
            document = yaml.safe_load(spec.read_text())
            document["limits"] = {**document.get("limits", {}), "request_timeout": seconds}
            (folder / spec.name).write_text(yaml.safe_dump(document, sort_keys=False))
        workspace = yaml.safe_load(self.workspace.read_text())
        workspace["connectors"] = [str(folder)]
        self.workspace.write_text(yaml.safe_dump(workspace, sort_keys=False))

    def _chaos(self, rate: float) -> None:
        for offset, sandbox in enumerate((self.erp, self.crm)):
            sandbox.chaos.configure(rate, seed=self.options.seed * 10 + offset, stall=self.options.stall,
                                    kinds=list(self.options.kinds or ()) or None)

    def _change_source(self) -> None:
        """Between runs (the sandbox is idle then), the ERP changes as users change it."""
        items = [i for i in self.erp.store.all("items") if i["itemStatus"] == "ACTIVE"]
        for item in self.rng.sample(items, min(3, len(items))):
            price = round((item.get("listPrice") or 1.0) + self.rng.choice((0.25, 1.5, -0.1)), 2)
            self.erp.store.patch("items", item["itemCode"], {"listPrice": max(price, 0.01)})
        if self.rng.random() < 0.5:
            self._added += 1
            template = items[0]
            self.erp.store.insert("items", {**_plain(template), "itemCode": f"SOAK-{self._added:04d}",
                                            "description": f"Soak item {self._added}"})
        if self.rng.random() < 0.5:
            self._added += 1
            template = next(c for c in self.erp.store.all("customerV2s") if c["isActive"] and c["contacts"])
            contact = {**template["contacts"][0], "contactId": f"SOAK-CT-{self._added:04d}", "isKeyContact": True}
            self.erp.store.insert("customerV2s", {**_plain(template), "customerCode": f"S{self._added:05d}",
                                                  "name": f"Soak Customer {self._added}", "contacts": [contact]})

    def _cli(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "ml_connector.cli", *args, "-w", str(self.workspace)]

    def _run(self, kill_after: float | None) -> RunOutcome:
        self.runs += 1
        began = time.monotonic()
        process = subprocess.Popen(self._cli("run", "--json"), cwd=REPO, env={**os.environ, **SANDBOX_ENV},
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            stdout, stderr = process.communicate(timeout=kill_after or self.options.run_timeout)
        except subprocess.TimeoutExpired:
            process.send_signal(signal.SIGKILL)
            process.communicate()
            if kill_after is None:
                raise RuntimeError(f"run {self.runs} took more than {self.options.run_timeout} s") from None
            self.killed += 1
            self.echo(f"run {self.runs}: SIGKILLed after {kill_after:.2f} s")
            return RunOutcome(None, time.monotonic() - began, None)
        seconds = time.monotonic() - began
        summary = _json(stdout)
        outcome = RunOutcome(process.returncode, seconds, summary, stderr.strip()[-400:])
        if outcome.crashed or summary is None:
            self.crashes.append(f"run {self.runs} exit {process.returncode}: {outcome.stderr_tail[-200:]}")
        else:
            self._last_seconds = max(seconds, 0.5)
        self.echo(f"run {self.runs}: exit {process.returncode} in {seconds:.1f} s {_brief(summary)}")
        return outcome

    def _replay(self) -> None:
        result = subprocess.run(self._cli("replay", "--json"), cwd=REPO, env={**os.environ, **SANDBOX_ENV},
                                capture_output=True, text=True, timeout=self.options.run_timeout, check=False)
        self.runs += 1
        self.echo(f"replay: exit {result.returncode} {_brief(_json(result.stdout)) or result.stdout.strip()[:80]}")
        if result.returncode not in (0, 1, 3):
            self.crashes.append(f"replay exit {result.returncode}: {result.stderr.strip()[-200:]}")

    def _parked(self) -> dict[tuple[str, str], tuple[str, bool]]:
        """Parked records: (flow, source key) -> (reason, whether the latest audit row for it names an error)."""
        state = State(self.directory / "state" / "ml-connector.duckdb")
        try:
            return {(p.flow, p.source_key): (p.reason or "", any(
                row["error"] for row in state.audit.query(flow=p.flow, source_key=p.source_key, limit=1)))
                for p in state.pending.list()}
        finally:
            state.close()

    def _compare(self, under_faults: dict[tuple[str, str], tuple[str, bool]], seconds: float) -> SoakReport:
        parked = self._parked()
        pending = {key: reason for key, (reason, _audited) in parked.items()}
        without_audit = sorted(key for key, (_reason, audited) in {**under_faults, **parked}.items() if not audited)
        counts = []
        for flow, expected in self._expected().items():
            entity, label = TARGETS[flow]
            field_key = self.crm.store.field_key(entity, label)
            targets = [r for r in self.crm.store.all(entity) if not r.get("is_deleted")]
            found = Counter(r["custom_fields"].get(field_key) for r in targets)
            count = FlowCount(flow, expected=len(expected))
            count.duplicated = {key: n for key, n in found.items() if n > 1}
            by_key = {r["custom_fields"].get(field_key): r for r in targets}
            for key, source in sorted(expected.items()):
                reason = pending.get((flow, key))
                if reason is not None:
                    count.parked[key] = reason
                elif key not in by_key:
                    count.lost.append(key)
                elif not _current(flow, source, by_key[key]):
                    count.stale.append(key)
                else:
                    count.synced += 1
            counts.append(count)
        injected = self.erp.chaos.injected + self.crm.chaos.injected
        on_writes = self.erp.chaos.injected_on_writes + self.crm.chaos.injected_on_writes
        return SoakReport(counts, self.runs, self.killed, self.crashes, dict(injected), dict(on_writes),
                          {key: reason for key, (reason, _audited) in under_faults.items()}, without_audit, seconds)

    def _expected(self) -> dict[str, dict[str, dict[str, Any]]]:
        """Per flow, the source records that must be in the target, by source key."""
        customers = [c for c in self.erp.store.all("customerV2s") if c["isActive"]]
        return {
            "items_to_products": {i["itemCode"]: i for i in self.erp.store.all("items")
                                  if i["itemStatus"] == "ACTIVE"},
            "customers_to_organizations": {c["customerCode"]: c for c in customers},
            "contacts_to_persons": {p["contactId"]: p for c in customers for p in c["contacts"]
                                    if p["isKeyContact"]},
        }


def _current(flow: str, source: dict[str, Any], target: dict[str, Any]) -> bool:
    """The target holds the source's current values (the ones the soak changes)."""
    if flow == "items_to_products":
        prices = [p.get("price") for p in target.get("prices") or []]
        return prices == ([source["listPrice"]] if source.get("listPrice") is not None else [])
    if flow == "customers_to_organizations":
        return bool(target.get("name") == source.get("name"))
    return True


def _plain(record: dict[str, Any]) -> dict[str, Any]:
    """A record without the fields the ERP stamps itself."""
    return {k: v for k, v in record.items()
            if k not in {"uri", "lastModifiedDate", "concurrencyHash", "dataOperation"}}


def _json(stdout: str) -> dict[str, Any] | None:
    try:
        data = json.loads(stdout)
    except json.JSONDecodeError:
        return None
    return data if isinstance(data, dict) else None


def _quiet(summary: dict[str, Any]) -> bool:
    return all(f.get("created", 0) + f.get("updated", 0) + f.get("failed", 0) + f.get("deferred", 0) == 0
               for f in summary.get("flows", []))


def _brief(summary: dict[str, Any] | None) -> str:
    if not summary:
        return ""
    parts = []
    for f in summary.get("flows", []):
        counts = {k: f.get(k, 0) for k in ("created", "updated", "failed", "deferred") if f.get(k)}
        if counts or f.get("status") not in (None, "ok"):
            parts.append(f"{f['flow']}:{f.get('status')}:{counts}")
    errors = sorted({str(f["error"])[:160] for f in summary.get("flows", []) if f.get("error")})
    return f"[{summary.get('status')}] " + " ".join(parts) + "".join(f"\n   error: {e}" for e in errors)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--minutes", type=float, default=5.0)
    parser.add_argument("--faults", type=float, default=0.1, help="share of requests that get a fault")
    parser.add_argument("--kinds", nargs="+", choices=CHAOS_KINDS, help="only these faults (default: all)")
    parser.add_argument("--kills", type=float, default=0.3, help="share of runs SIGKILLed at a random moment")
    parser.add_argument("--customers", type=int, default=300)
    parser.add_argument("--items", type=int, default=200)
    parser.add_argument("--stall", type=float, default=1.0,
                        help="seconds a timed-out answer hangs (above the connector's request time: a real timeout)")
    parser.add_argument("--request-timeout", type=float, default=None,
                        help="run against copies of the connectors with this `limits.request_timeout` (below "
                             "--stall, a timed-out answer is a real client timeout)")
    parser.add_argument("--dir", type=Path, default=None, help="workspace directory (default: a new temporary one)")
    args = parser.parse_args(argv)
    options = SoakOptions(seed=args.seed, minutes=args.minutes, faults=args.faults, kills=args.kills,
                          kinds=tuple(args.kinds) if args.kinds else None,
                          customers=args.customers, items=args.items, stall=args.stall,
                          request_timeout=args.request_timeout)
    directory = args.dir or Path(tempfile.mkdtemp(prefix="ml-soak-"))
    print(f"soak: seed {args.seed}, {args.minutes} min, faults {args.faults}, kills {args.kills}, in {directory}")
    report = Soak(options, directory).execute()
    print("\n".join(report.lines()))
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
