"""Two `ml-connector worker` processes and a `scheduler` over a real Redis run one integration (QAD -> Pipedrive
sandboxes over HTTP); one worker is SIGKILLed mid-flow: its task is delivered again, the other worker takes the flow
once the lease runs out, and the CRM ends with every record once (0 lost, 0 duplicated).

Both state backends: with the embedded DuckDB file a worker opens it only while it runs a task, and a task that
finds it open elsewhere comes back later (as one whose flow is leased), so two processes take turns on it; with a
PostgreSQL state (`state: {postgresql: ...}`, a fresh schema of the session's test server) they run flows side by
side.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest
import yaml

from ml_connector.sandbox.core import Fault
from ml_connector.sandbox.workspace import SANDBOX_ENV
from tests.e2e.conftest import REPO, Env, Lines, wait_for
from tests.e2e.test_first_integration import assert_no_duplicates, expected_counts
from tests.pg import fresh_schema, postgres_url  # noqa: F401  (the session fixture)
from tests.redis_server import fresh_prefix, redis_url  # noqa: F401  (the session fixture)

FAST = ["--lease", "4", "--heartbeat-timeout", "4", "--maintenance-chance", "1000000", "--retry-delay", "0.5"]


class Processes:
    def __init__(self) -> None:
        self.started: list[tuple[subprocess.Popen[str], Lines]] = []

    def start(self, *args: str) -> tuple[subprocess.Popen[str], Lines]:
        process = subprocess.Popen(["nice", "-n", "19", sys.executable, "-m", "ml_connector.cli", "-v", *args],
                                   cwd=REPO, env={**os.environ, **SANDBOX_ENV}, text=True,
                                   stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        assert process.stderr is not None
        entry = (process, Lines(process.stderr))
        self.started.append(entry)
        return entry

    def stop(self) -> None:
        for process, _lines in self.started:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process, _lines in self.started:
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


@pytest.fixture
def processes() -> Iterator[Processes]:
    started = Processes()
    try:
        yield started
    finally:
        started.stop()


# the DuckDB variant checks the DuckDB file it leaves; the suite on PostgreSQL runs the other
@pytest.mark.parametrize("backend", [pytest.param("duckdb", marks=pytest.mark.duckdb_only), "postgresql"])
def test_two_workers_one_killed_mid_flow_end_with_nothing_lost_or_duplicated(
        env: Env, redis_url: str, processes: Processes, backend: str,  # noqa: F811
        request: pytest.FixtureRequest) -> None:
    if backend == "postgresql":
        url = request.getfixturevalue("postgres_url")
        document = yaml.safe_load(env.workspace.read_text())
        document["state"] = {"postgresql": url, "schema": fresh_schema(url)}
        env.workspace.write_text(yaml.safe_dump(document, sort_keys=False))
    broker = ["--broker", redis_url, "--namespace", fresh_prefix()]
    workspace = ["-w", f"acme={env.workspace}"]
    env.crm.faults.add(Fault(method="POST", path="/api/v2/products", status=0, delay=0.1, times=100_000))
    first = processes.start("worker", *workspace, *broker, *FAST)
    second = processes.start("worker", *workspace, *broker, *FAST)
    processes.start("scheduler", *workspace, *broker, "--interval", "0.5")
    expected = expected_counts(env)

    def items_started() -> tuple[subprocess.Popen[str], Lines] | None:
        for process, lines in (first, second):
            if any("acme/items_to_products: started by" in line for line in lines.lines):
                return process, lines
        return None

    wait_for(lambda: items_started() and len(env.crm.store.all("products")) >= 5, 180,
             "no worker started items_to_products and wrote products")
    found = items_started()
    assert found is not None
    victim, _ = found
    survivor = second if victim is first[0] else first
    victim.send_signal(signal.SIGKILL)  # mid-flow: products are being written one by one
    victim.wait(timeout=10)
    before_kill = len(survivor[1].lines)
    held = len(env.crm.store.all("products"))
    assert 5 <= held < expected["items_to_products"], "the kill did not land mid-flow"
    env.crm.faults.clear()

    def done() -> bool:
        return (len(env.crm.store.all("products")) >= expected["items_to_products"]
                and len(env.crm.store.all("organizations")) >= expected["customers_to_organizations"]
                and len(env.crm.store.all("persons")) >= expected["contacts_to_persons"])

    wait_for(done, 240, "the integration did not complete after the kill:\n" + "".join(survivor[1].lines[-30:]))
    time.sleep(1)  # anything still in flight would show as a duplicate below
    assert len(env.crm.store.all("products")) == expected["items_to_products"]
    assert len(env.crm.store.all("organizations")) == expected["customers_to_organizations"]
    assert len(env.crm.store.all("persons")) == expected["contacts_to_persons"]
    assert_no_duplicates(env)
    assert any("acme/items_to_products: started by" in line for line in survivor[1].lines[before_kill:]), \
        "the survivor never took the killed worker's flow"
    assert any("acme/items_to_products: ok" in line for line in survivor[1].lines[before_kill:])
    duckdb_file = env.workspace.parent / "state" / "ml-connector.duckdb"
    assert duckdb_file.exists() == (backend == "duckdb")  # the PostgreSQL variant never touched a DuckDB file
