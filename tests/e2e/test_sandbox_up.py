"""`ml-connector sandbox up` serves every sandbox until interrupted; a separate `run` process syncs against it."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import httpx
import yaml

from ml_connector.sandbox.workspace import SANDBOX_ENV
from tests.e2e.conftest import REPO
from tests.spec.test_shipped import FLOWS, ZOHO_FLOWS


def test_sandbox_up_prints_urls_serves_and_stops_on_interrupt(tmp_path: Path) -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "ml_connector.cli", "sandbox", "up", "--random-ports", "--customers", "20",
         "--items", "15", "--write-workspace", str(tmp_path)],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None
        lines: list[str] = []
        while not lines or "serving" not in lines[-1]:
            line = process.stdout.readline()
            assert line, f"sandbox up ended early: {process.stderr.read() if process.stderr else ''}"
            lines.append(line.strip())
        names = {"qad", "pipedrive", "zoho", "salesforce"}
        urls = {line.split()[0]: line.split()[1] for line in lines if line.split()[0] in names}
        assert set(urls) == {"qad", "pipedrive", "zoho", "salesforce"}
        assert httpx.get(urls["qad"] + "/_admin/requests").json()["total"] == 0

        result = subprocess.run([sys.executable, "-m", "ml_connector.cli", "run", "--json", "-w",
                                 str(tmp_path / "workspace.yaml")], cwd=REPO, capture_output=True, text=True,
                                env={**os.environ, **SANDBOX_ENV}, timeout=300)
        assert result.returncode == 0, result.stdout + result.stderr
        summary = json.loads(result.stdout)
        assert summary["totals"]["created"] > 0 and summary["totals"]["failed"] == 0
        created = {f["flow"]: f["created"] for f in summary["flows"]}
        log = httpx.get(urls["pipedrive"] + "/_admin/requests").json()
        assert log["writes"] >= sum(created[flow] for flow in FLOWS)  # one write per record
        zoho = httpx.get(urls["zoho"] + "/_admin/requests").json()["counts"]
        upserts = sum(n for call, n in zoho.items() if call.endswith("/upsert"))
        assert 0 < upserts < sum(created[flow] for flow in ZOHO_FLOWS)  # up to 100 records per call
    finally:
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=15) == 0


def test_sandbox_up_json_prints_one_line_with_the_urls_and_the_workspace(tmp_path: Path) -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "ml_connector.cli", "sandbox", "up", "--random-ports", "--customers", "5",
         "--items", "5", "--write-workspace", str(tmp_path), "--json"],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None
        served = json.loads(process.stdout.readline())
        assert set(served["urls"]) == {"qad", "pipedrive", "zoho", "salesforce", "salesforce_pubsub", "adobe_commerce",
                                       "marketo"}
        assert served["workspace"] == str(tmp_path / "workspace.yaml") and served["env"] == SANDBOX_ENV
        assert httpx.get(served["urls"]["qad"] + "/_admin/requests").json()["total"] == 0
        pubsub = served["urls"]["salesforce_pubsub"]  # the Pub/Sub gRPC server listens, and the workspace names it
        host, port = pubsub.rsplit(":", 1)
        socket.create_connection((host, int(port)), timeout=5).close()
        settings = yaml.safe_load((tmp_path / "workspace.yaml").read_text())["connections"]["salesforce"]["settings"]
        assert (settings["pubsub_target"], settings["pubsub_tls"]) == (pubsub, "false")
    finally:
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=15) == 0
    assert process.stdout.read() == ""  # nothing but the one line
