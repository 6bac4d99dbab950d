"""`plan --full`: what `run --full` would do, read-only (a whole source re-read, not only what changed)."""

from __future__ import annotations

import functools
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner

import ml_connector.cli
from ml_connector.cli import main
from ml_connector.sync.runner import Runner
from tests.engine.fakeapi import FakeAPI
from tests.engine.tiny_workspace import write_workspace

THINGS = {"data": [{"id": 1, "name": "a", "updated": "2026-03-01T10:00:00Z"},
                   {"id": 2, "name": "b", "updated": "2026-03-01T11:00:00Z"}]}


def test_plan_full_reads_the_whole_source_and_plan_reads_from_the_watermark(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAKE_KEY", "k-123456")
    api = FakeAPI().on("GET", "/v2/things", 200, THINGS)
    monkeypatch.setattr(ml_connector.cli, "Runner",
                        functools.partial(Runner, transport=httpx.ASGITransport(app=api.app)))
    workspace = str(write_workspace(tmp_path))
    assert CliRunner().invoke(main, ["run", "-w", workspace]).exit_code == 0  # the watermark: 11:00

    full = CliRunner().invoke(main, ["plan", "--full", "-w", workspace, "--json"])
    since = CliRunner().invoke(main, ["plan", "-w", workspace, "--json"])

    assert full.exit_code == 0 and since.exit_code == 0, full.output + since.output
    assert [call["params"].get("since") for call in api.calls("GET")] == [None, None, "2026-03-01T11:00:00Z"]
