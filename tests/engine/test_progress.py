"""Progress a person can follow: per flow, after each page; a live table on a terminal, plain lines elsewhere,
always on stderr (never mixed into `--json`)."""

from __future__ import annotations

import asyncio
import functools
import io
import json
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner

import ml_connector.cli
from ml_connector.cli import main
from ml_connector.store import State
from ml_connector.sync.flow import FlowContext, FlowRun
from ml_connector.sync.progress import FlowCounts, LineProgress, RichProgress, for_stream
from ml_connector.sync.runner import Runner
from ml_connector.transform.mapping import CompiledMapping
from tests.engine.configs import mapping
from tests.engine.fakeapi import FakeAPI
from tests.engine.flowkit import NOW, SOURCE, TARGET, client, flow_spec
from tests.engine.tiny_workspace import CONNECTOR, FLOW, write_workspace


class Recorder:
    def __init__(self) -> None:
        self.events: list[tuple[str, str, object]] = []

    def flow_started(self, flow: str) -> None:
        self.events.append(("started", flow, None))

    def flow_update(self, flow: str, counts: FlowCounts) -> None:
        self.events.append(("update", flow, counts))

    def flow_finished(self, flow: str, status: str, counts: FlowCounts) -> None:
        self.events.append(("finished", flow, (status, counts)))


def test_a_flow_tells_its_counts_after_each_page() -> None:
    recorder = Recorder()
    source = FakeAPI().on("GET", "/v2/things", 200, {"data": [
        {"code": "A", "name": "a", "updated": "2026-03-01T10:00:00Z"},
        {"code": "B", "name": "b", "updated": "2026-03-01T10:00:00Z"}]})
    target = FakeAPI().on("POST", "/v2/items", 201, {"data": {"id": 7}}).on("POST", "/v2/items", 422, {"e": "no"})
    config = mapping(flow_spec({"name": "name"}))
    context = FlowContext(run_id="r1", state=State(":memory:"), source=client(source, "src"),
                          target=client(target, "dst"), source_entity=SOURCE, target_entity=TARGET,
                          mapping=CompiledMapping(config), known_flows={"things"}, now=lambda: NOW,
                          progress=recorder)
    asyncio.run(FlowRun(config, context).execute())
    assert recorder.events == [("update", "things", FlowCounts(read=2, written=1, failed=1))]


def test_plain_lines_are_throttled_and_a_short_flow_prints_nothing() -> None:
    stream, now = io.StringIO(), [0.0]
    lines = LineProgress(stream, every=5.0, clock=lambda: now[0])
    lines.flow_started("quick")
    lines.flow_update("quick", FlowCounts(read=10))
    lines.flow_finished("quick", "ok", FlowCounts(read=10))
    assert stream.getvalue() == ""
    lines.flow_started("long")
    for second, read in ((2, 100), (5, 250), (7, 350), (10.5, 500)):
        now[0] = second
        lines.flow_update("long", FlowCounts(read=read, written=read - 4, deferred=4, rate_limited=1,
                                             waited_seconds=2.0))
    lines.flow_finished("long", "ok", FlowCounts(read=764, written=760, deferred=4))
    assert stream.getvalue().splitlines() == [
        "ml-connector: long: 250 read, 246 written, 4 deferred, 0 failed, 1 rate-limited (2.0s waited)",
        "ml-connector: long: 500 read, 496 written, 4 deferred, 0 failed, 1 rate-limited (2.0s waited)",
        "ml-connector: long: ok: 764 read, 760 written, 4 deferred, 0 failed, 0 rate-limited (0.0s waited)"]


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_a_terminal_gets_a_live_table_a_pipe_plain_lines() -> None:
    assert isinstance(for_stream(io.StringIO()), LineProgress)
    terminal = Terminal()
    live = for_stream(terminal)
    assert isinstance(live, RichProgress)
    live.flow_started("things")
    live.flow_update("things", FlowCounts(read=764, written=700, deferred=60, failed=4, rate_limited=3))
    live.flow_finished("things", "partial", FlowCounts(read=764, written=700, deferred=60, failed=4))
    live.close()
    shown = terminal.getvalue()
    assert "things" in shown and "764" in shown and "partial" in shown


def test_run_json_keeps_stdout_pure_and_progress_goes_to_stderr(tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAKE_KEY", "k-123456")
    monkeypatch.delenv("ML_CONNECTOR_KEY", raising=False)
    workspace = write_workspace(tmp_path, flow=FLOW.replace('filter: "`false`"\n', ""),
                                connector=CONNECTOR.replace("path: /things}", "path: /things, id: id}"))
    api = FakeAPI().on("GET", "/v2/things", 200, {"data": [{"id": 1, "name": "x", "updated": "2026-01-01"}]})
    api.on("POST", "/v2/things", 201, {"id": 5})
    monkeypatch.setattr(ml_connector.cli, "Runner", functools.partial(Runner, transport=httpx.ASGITransport(
        app=api.app)))
    monkeypatch.setattr(ml_connector.cli, "for_stream", lambda stream: LineProgress(stream, every=0.0))
    result = CliRunner().invoke(main, ["run", "--json", "-w", str(workspace)])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["totals"]["created"] == 1
    assert "ml-connector: things: 1 read, 1 written, 0 deferred, 0 failed" in result.stderr
    assert "ml-connector: things: ok: 1 read, 1 written" in result.stderr


def test_a_closed_stderr_never_fails_a_run() -> None:
    stream = io.StringIO()
    stream.close()
    lines = LineProgress(stream, every=0.0)
    lines.flow_started("things")
    lines.flow_update("things", FlowCounts(read=1))
    lines.flow_finished("things", "ok", FlowCounts(read=1))
