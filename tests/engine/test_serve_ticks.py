"""`serve` says when it starts and what is scheduled; idle ticks write no run rows and are shown only with -v."""

from __future__ import annotations

import asyncio
import functools
import re
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner, Result

import ml_connector.cli
from ml_connector.cli import main
from ml_connector.events.service import until_woken
from ml_connector.store import State
from ml_connector.sync.runner import Runner
from tests.engine.fakeapi import FakeAPI
from tests.engine.tiny_workspace import FLOW, INTEGRATION, write_workspace


@pytest.fixture
def workspace(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("FAKE_KEY", "k-123456")
    monkeypatch.delenv("ML_CONNECTOR_KEY", raising=False)
    path = write_workspace(tmp_path, flow=FLOW + "schedule: every 15m\n")
    # a second flow without a schedule: it runs only on demand
    (tmp_path / "mappings" / "pair" / "others.yaml").write_text(FLOW.replace("flow: things", "flow: others"))
    (tmp_path / "mappings" / "pair" / "integration.yaml").write_text(
        INTEGRATION.replace("[things.yaml]", "[things.yaml, others.yaml]"))
    api = FakeAPI().on("GET", "/v2/things", 200, {"data": [{"id": 1, "name": "x", "updated": "2026-01-01"}]})
    monkeypatch.setattr(ml_connector.cli, "Runner",
                        functools.partial(Runner, transport=httpx.ASGITransport(app=api.app)))
    return path


def serve(workspace: Path, *before: str) -> Result:
    result = CliRunner().invoke(main, [*before, "serve", "--once", "-w", str(workspace)])
    assert result.exit_code == 0, result.output
    return result


def run_rows(workspace: Path) -> list[str]:
    state = State(workspace.parent / "state" / "state.duckdb")
    try:
        return [row["run_id"] for row in state.runs.recent(100)]
    finally:
        state.close()


def test_serve_says_when_it_starts_and_what_is_scheduled(workspace: Path) -> None:
    first = serve(workspace)
    lines = first.stderr.splitlines()
    assert lines[0].startswith("ml-connector serve: started ")
    assert lines[0].endswith(" UTC, checking schedules every 30s")
    assert lines[1:] == ["  things: every 15m", "  on demand only (no schedule): others"]
    assert "run " in first.stdout  # things was due: it ran
    second = serve(workspace)
    assert second.stdout == ""  # stdout carries what ran, and nothing did


def test_a_tick_with_nothing_due_writes_no_run_row(workspace: Path) -> None:
    serve(workspace)
    assert len(run_rows(workspace)) == 1
    for _ in range(3):
        serve(workspace)
    assert len(run_rows(workspace)) == 1
    result = CliRunner().invoke(main, ["run", "--due", "-w", str(workspace)])
    assert result.exit_code == 0, result.output
    assert len(run_rows(workspace)) == 1


def test_idle_ticks_are_shown_only_with_v(workspace: Path) -> None:
    serve(workspace)
    quiet = serve(workspace)
    assert "nothing due" not in quiet.output
    assert len(quiet.stderr.splitlines()) == 3  # the start block only
    for loud in (serve(workspace, "-v"), CliRunner().invoke(main, ["serve", "--once", "-v", "-w", str(workspace)])):
        last = loud.stderr.splitlines()[-1]
        assert re.fullmatch(r"\d\d:\d\d:\d\d nothing due; next: things at \d\d:\d\d:\d\d UTC", last), last
        assert loud.stdout == ""


@pytest.mark.parametrize("steps", range(6))
def test_a_stop_that_comes_as_the_wait_ends_is_never_swallowed(steps: int) -> None:
    """A stop signal cancels serve while it waits for the next tick. Python 3.11's `asyncio.wait_for` returns
    normally when the cancellation meets a wake-up in the same loop turn, and serve ticked on for ever after SIGTERM
    (the CDC e2e test's rare hang): whatever the interleaving, the wait must end in CancelledError."""

    async def scenario() -> None:
        wake = asyncio.Event()
        waiting = asyncio.create_task(until_woken(wake, 10.0))
        for _ in range(2):
            await asyncio.sleep(0)  # the wait is under way
        wake.set()
        for _ in range(steps):
            await asyncio.sleep(0)
        if not waiting.cancel():  # the wait had ended before the stop: nothing to cancel
            assert steps > 0, "the wait ended before the event loop ran it"
            return
        with pytest.raises(asyncio.CancelledError):
            await waiting

    asyncio.run(scenario())
