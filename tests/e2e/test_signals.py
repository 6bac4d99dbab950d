"""Issue 17 case 11, as a user meets it: Ctrl-C (SIGINT) or SIGTERM in the middle of `ml-connector run`."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from ml_connector.sandbox.core import Fault
from ml_connector.sandbox.workspace import SANDBOX_ENV
from ml_connector.store import State
from tests.e2e.conftest import REPO, Env
from tests.e2e.test_first_integration import assert_no_duplicates, expected_counts

FLOW_OF = {"products": "items_to_products", "organizations": "customers_to_organizations",
           "persons": "contacts_to_persons"}


def interrupt_mid_run(env: Env, signum: int) -> subprocess.CompletedProcess[str]:
    """Start a run, send ``signum`` once the CRM holds some organizations, and wait for the run to stop."""
    env.crm.faults.add(Fault(method="POST", path="/api/v2/", status=0, delay=0.05, times=10_000))
    process = subprocess.Popen([sys.executable, "-m", "ml_connector.cli", "run", "-w", str(env.workspace)], cwd=REPO,
                               env={**os.environ, **SANDBOX_ENV}, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True)
    deadline = time.monotonic() + 60
    while len(env.crm.store.all("organizations")) < 10 and time.monotonic() < deadline:
        time.sleep(0.02)
    process.send_signal(signum)
    stdout, stderr = process.communicate(timeout=30)
    time.sleep(0.2)  # a write in flight when the signal came may still land in the sandbox
    env.crm.faults.clear()
    return subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)


def held_by_the_crm(env: Env) -> dict[str, set[str]]:
    return {entity: {str(r["id"]) for r in env.crm.store.all(entity)} for entity in FLOW_OF}


def state_of(env: Env) -> State:
    return State(env.workspace.parent / "state" / "ml-connector.duckdb")


@pytest.mark.parametrize(("signum", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_signal_mid_run_prints_what_was_done_marks_the_run_interrupted_and_the_next_run_continues(
        env: Env, signum: int, code: int) -> None:
    stopped = interrupt_mid_run(env, signum)

    assert stopped.returncode == code, stopped.stderr
    assert "Traceback" not in stopped.stderr
    assert f"ml-connector: interrupted by {signal.Signals(signum).name}" in stopped.stderr
    assert ": interrupted" in stopped.stdout  # the summary of what was done
    assert 10 <= len(held_by_the_crm(env)["organizations"]) < expected_counts(env)["customers_to_organizations"]
    state = state_of(env)
    try:
        [run] = state.runs.recent()
        assert run["status"] == "interrupted" and run["finished_at"] is not None
        flow_status = {f["flow"]: f["last_status"] for f in state.runs.flow_status()}
        assert flow_status["customers_to_organizations"] == "interrupted"
        assert flow_status["items_to_products"] == "ok"
    finally:
        state.close()

    again, summary = env.run_json()
    assert again == 0, summary
    expected = expected_counts(env)
    assert {e: len(env.crm.store.all(e)) for e in FLOW_OF} == {e: expected[f] for e, f in FLOW_OF.items()}
    assert_no_duplicates(env)


def test_after_a_sigint_the_id_map_and_audit_hold_every_record_the_crm_holds(env: Env) -> None:
    stopped = interrupt_mid_run(env, signal.SIGINT)
    assert stopped.returncode == 130, stopped.stderr
    held = held_by_the_crm(env)
    state = state_of(env)
    try:
        for entity, flow in FLOW_OF.items():
            mapped = {str(t) for (t,) in state.db.fetchall("SELECT target_id FROM id_map WHERE flow = ?", [flow])}
            audited = {str(t) for (t,) in state.db.fetchall(
                "SELECT target_id FROM audit WHERE flow = ? AND outcome = 'ok'", [flow])}
            assert held[entity] - mapped == set(), \
                f"{entity}: {len(held[entity] - mapped)} of {len(held[entity])} not in the id map"
            assert held[entity] - audited == set(), f"{entity} in the CRM without an audit row"
    finally:
        state.close()
