"""Two worker processes on one Pipedrive token stay under its burst window together (issue 25).

Two `ml-connector run` processes, each with its own state file (sharing one state is another part of issue 25),
write organizations through the same API token of one Pipedrive sandbox whose burst window is small. With the
workspace's `quotas_shared` pointing at one Redis, the sandbox's request log holds no 429 and never more than the
limit in any window; without it (the control), each process spends the whole window and the two trip it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import yaml

from ml_connector.sandbox.core import LoggedRequest
from ml_connector.sandbox.workspace import SANDBOX_ENV, write_workspace
from tests.e2e.conftest import REPO, Env
from tests.redis_server import fresh_prefix, redis_url

__all__ = ["redis_url"]  # the session fixture, used by name

LIMIT, WINDOW = 10, 1.0  # the sandbox token's burst window: 10 requests per rolling second
MARGIN = 0.1  # the plan's window as the workspace states it: a request reaches the API a little after it left
FLOW = "customers_to_organizations"  # 40 customers: one list read (prefetch), then a write each; no search calls


def workspace(folder: Path, env: Env, shared: str | None, tenant: str) -> Path:
    """A workspace of its own (its own state file) on the shared sandboxes, the plan's window stated as the user
    would, and the shared store when given."""
    path = write_workspace(folder, env.urls)
    document = yaml.safe_load(path.read_text())
    document["connections"]["pipedrive"]["quotas"] = {"default": {"window": WINDOW + MARGIN, "calls": LIMIT}}
    if shared is not None:
        document["quotas_shared"] = {"redis": shared, "tenant": tenant}
    path.write_text(yaml.safe_dump(document))
    return path


def two_workers(env: Env, tmp_path: Path, shared: str | None) -> list[LoggedRequest]:
    """Both processes' runs at once; the sandbox's log of what reached the token."""
    env.crm.config.update(burst_limit=LIMIT, burst_window_seconds=WINDOW, abuse_block_after=None)
    tenant = fresh_prefix()  # one tenant, one token: the two processes share its pools
    paths = [workspace(tmp_path / name, env, shared, tenant) for name in ("one", "two")]
    env.crm.log.reset()
    children = [subprocess.Popen([sys.executable, "-m", "ml_connector.cli", "run", "--json", "--flow", FLOW,
                                  "-w", str(path)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                 cwd=REPO, env={**os.environ, **SANDBOX_ENV}) for path in paths]
    for child in children:
        out, err = child.communicate(timeout=300)
        summary = json.loads(out) if out.strip().startswith("{") else None
        assert summary is not None, f"run printed no JSON:\n{out}\n{err}"
        assert child.returncode in (0, 1), (child.returncode, err)  # 1: the other's duplicate names parked
        assert "Traceback" not in err and "Unclosed" not in err and "Exception ignored" not in err, err
    return [entry for entry in env.crm.log.entries() if not entry.path.startswith("/_")]


def busiest_window(entries: list[LoggedRequest]) -> int:
    """The most requests that reached the sandbox within any rolling window (whatever their answer)."""
    times = sorted(entry.at for entry in entries)
    start, most = 0, 0
    for end, moment in enumerate(times):
        while times[start] <= moment - WINDOW:
            start += 1
        most = max(most, end - start + 1)
    return most


def test_two_processes_sharing_the_quota_stay_under_the_window_together(env: Env, tmp_path: Path,
                                                                          redis_url: str) -> None:
    entries = two_workers(env, tmp_path, redis_url)
    writes = [e for e in entries if e.method != "GET"]
    assert len(writes) >= 2 * 30, len(writes)  # both wrote each active customer (a create, or an update of the
    # organization the other had just created: each process has its own state)
    statuses = {e.status for e in entries}
    assert 429 not in statuses and 403 not in statuses, env.crm.log.summary()["statuses"]
    assert busiest_window(entries) <= LIMIT


def test_without_the_shared_store_the_two_processes_trip_the_window(env: Env, tmp_path: Path) -> None:
    """The control: each process alone respects the window, two together do not."""
    entries = two_workers(env, tmp_path, None)
    assert sum(1 for e in entries if e.status == 429) >= 1, env.crm.log.summary()["statuses"]
    assert busiest_window(entries) > LIMIT
