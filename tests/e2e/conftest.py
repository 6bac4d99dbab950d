"""Sandboxes served over real HTTP, a workspace pointing at them, and a way to run the CLI as a user would."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import pytest

from ml_connector.sandbox.pipedrive import PipedriveSandbox, create_pipedrive_sandbox
from ml_connector.sandbox.qad import QadSandbox, create_qad_sandbox
from ml_connector.sandbox.serve import SandboxServer
from ml_connector.sandbox.workspace import SANDBOX_ENV, write_workspace

REPO = Path(__file__).resolve().parents[2]


def cli(workspace: Path, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """Run `ml-connector <args> -w <workspace>` in a child process, with the sandboxes' credentials."""
    return subprocess.run([sys.executable, "-m", "ml_connector.cli", *args, "-w", str(workspace)],
                          capture_output=True, text=True, timeout=timeout, cwd=REPO, env={**os.environ, **SANDBOX_ENV})


def run_flows(workspace: Path, *args: str) -> tuple[int, dict[str, dict[str, Any]]]:
    """`run --json`: the exit code and each flow's summary by name."""
    result = cli(workspace, "run", "--json", *args)
    try:
        summary = json.loads(result.stdout)
    except json.JSONDecodeError as exc:
        raise AssertionError(f"run printed no JSON:\n{result.stdout}\n{result.stderr}") from exc
    return result.returncode, {f["flow"]: f for f in summary["flows"]}


def counts(flow: dict[str, Any]) -> dict[str, int]:
    """A flow summary's non-zero counts (without the clock-dependent ones)."""
    return {k: v for k, v in flow.items() if isinstance(v, int) and not isinstance(v, bool) and v
            and k not in ("future_stamped", "duration_ms")}


@dataclass
class Env:
    qad: QadSandbox
    crm: PipedriveSandbox
    workspace: Path
    urls: dict[str, str]

    def cli(self, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        """Run `ml-connector <args> -w <workspace>` in a child process."""
        return cli(self.workspace, *args, timeout=timeout)

    def run_json(self, *args: str) -> tuple[int, dict[str, Any]]:
        result = self.cli("run", "--json", *args)
        try:
            return result.returncode, json.loads(result.stdout)
        except json.JSONDecodeError as exc:
            raise AssertionError(f"run printed no JSON:\n{result.stdout}\n{result.stderr}") from exc

    def crm_writes(self) -> dict[str, int]:
        summary = self.crm.log.summary()
        return {k: v for k, v in summary["counts"].items() if not k.startswith("GET ")}


def flows(summary: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {f["flow"]: f for f in summary["flows"]}


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Env]:
    for key, value in SANDBOX_ENV.items():
        monkeypatch.setenv(key, value)
    server = SandboxServer()
    qad = create_qad_sandbox(customers=40, items=30)
    crm = create_pipedrive_sandbox()
    crm.config.update(burst_limit=100)
    try:
        urls = {"qad": server.start("qad", qad).url, "pipedrive": server.start("pipedrive", crm).url}
        yield Env(qad, crm, write_workspace(tmp_path, urls), urls)
    finally:
        server.stop()


class Lines:
    """A child's stream read in a thread, so the test can wait for a line without blocking forever."""

    def __init__(self, stream: IO[str]) -> None:
        self.lines: list[str] = []
        self._thread = threading.Thread(target=self._read, args=(stream,), daemon=True)
        self._thread.start()

    def _read(self, stream: IO[str]) -> None:
        for line in stream:
            self.lines.append(line)

    def text(self) -> str:
        self._thread.join(timeout=10)
        return "".join(self.lines)


def wait_for(what: Callable[[], Any], seconds: float, message: str) -> Any:
    """``what()`` once it is truthy, polled for up to ``seconds``; else the test fails with ``message``."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        found = what()
        if found:
            return found
        time.sleep(0.05)
    raise AssertionError(message)
