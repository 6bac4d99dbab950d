"""Managing state by hand: discard parked records, reset a watermark, force a re-push; each change audited."""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner, Result

import ml_connector.cli
from ml_connector.cli import main
from ml_connector.store import State
from ml_connector.sync.runner import Runner
from tests.engine.fakeapi import FakeAPI
from tests.engine.tiny_workspace import CONNECTOR, FLOW, write_workspace

UPSERT = CONNECTOR.replace("strategy: create_only", "strategy: upsert").replace("path: /things}",
                                                                                  "path: /things, id: id}")
THINGS = FLOW.replace('filter: "`false`"\n', "match: {target: name}\n")


@pytest.fixture
def workspace(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("FAKE_KEY", "k-123456")
    monkeypatch.delenv("ML_CONNECTOR_KEY", raising=False)
    return write_workspace(tmp_path, flow=THINGS, connector=UPSERT)


def cli(workspace: Path, *args: str, api: FakeAPI | None = None, monkeypatch: pytest.MonkeyPatch | None = None
        ) -> Result:
    if api is not None and monkeypatch is not None:
        monkeypatch.setattr(ml_connector.cli, "Runner",
                            functools.partial(Runner, transport=httpx.ASGITransport(app=api.app)))
    return CliRunner().invoke(main, [*args, "-w", str(workspace)])


def state_of(workspace: Path) -> State:
    return State(workspace.parent / "state" / "state.duckdb")


def status(workspace: Path) -> dict[str, Any]:
    result = cli(workspace, "status", "--json")
    assert result.exit_code == 0, result.output
    flows: list[dict[str, Any]] = json.loads(result.stdout)["flows"]
    return flows[0]


def things(*rows: dict[str, Any]) -> dict[str, Any]:
    return {"data": [{"updated": "2026-01-01", **row} for row in rows]}


def test_twenty_records_parked_without_a_key_can_be_discarded_with_an_audit_trace(
        workspace: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    keyless = things(*({"name": f"n{i}"} for i in range(20)), {"id": 7, "name": "kept"})
    api = FakeAPI().on("GET", "/v2/things", 200, keyless).on("POST", "/v2/things", 201, {"id": 70})
    assert cli(workspace, "run", api=api, monkeypatch=monkeypatch).exit_code == 1
    assert status(workspace)["failed"] == 20

    result = cli(workspace, "parked", "discard", "things", "--all-failed", "--reason", "no key in the source")
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("discarded 20 parked record(s) of things (audit: ml-connector audit --run ")
    assert status(workspace)["failed"] == 0
    state = state_of(workspace)
    try:
        run = state.runs.recent(1)[0]
        assert run["mode"] == "parked discard" and run["summary"]["discarded"] == 20
        rows = state.audit.query(run_id=run["run_id"], limit=100)
    finally:
        state.close()
    assert len(rows) == 20 and {(r["action"], r["outcome"]) for r in rows} == {("discard", "discarded")}
    assert all(r["note"].startswith("discarded by ") and "(no key in the source); was failed; record: {" in r["note"]
               for r in rows)
    again = FakeAPI().on("GET", "/v2/things", 200, things())  # the discarded records are not sent again
    assert cli(workspace, "run", api=again, monkeypatch=monkeypatch).exit_code == 0


def test_discard_by_key_and_its_mistakes(workspace: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    api = FakeAPI().on("GET", "/v2/things", 200, things({"id": 1, "name": "a"}, {"id": 2, "name": "b"}))
    api.on("POST", "/v2/things", 422, {"error": "no"})
    assert cli(workspace, "run", api=api, monkeypatch=monkeypatch).exit_code == 1
    assert cli(workspace, "parked", "discard", "things", "1").exit_code == 0
    listed = cli(workspace, "parked", "list", "things", "--json")
    assert [p["source_key"] for p in json.loads(listed.stdout)] == ["2"]
    unknown = cli(workspace, "parked", "discard", "things", "9")
    assert (unknown.exit_code, unknown.stderr) == (
        2, "ml-connector: flow things has no parked record with key(s) 9 (`ml-connector parked list things` shows "
           "them)\n")
    neither = cli(workspace, "parked", "discard", "things")
    assert neither.exit_code == 2 and "source keys, or --all-failed" in neither.stderr


def test_a_watermark_reset_moves_the_next_read_and_is_recorded(workspace: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    api = FakeAPI().on("GET", "/v2/things", 200, things())
    cli(workspace, "run", api=api, monkeypatch=monkeypatch)
    state = state_of(workspace)
    state.watermarks.set("things", "2026-02-01")
    state.close()

    result = cli(workspace, "watermark", "reset", "things", "--to", "2025-06-01")
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("things: watermark 2026-02-01 -> 2025-06-01 (run ")
    cli(workspace, "run", api=api, monkeypatch=monkeypatch)
    assert cli(workspace, "watermark", "reset", "things").exit_code == 0
    cli(workspace, "run", api=api, monkeypatch=monkeypatch)
    assert [call["params"].get("since") for call in api.calls("GET")] == [None, "2025-06-01", None]
    state = state_of(workspace)
    try:
        resets = [r["summary"] for r in state.runs.recent(10) if r["mode"] == "watermark reset"]
    finally:
        state.close()
    assert [(r["from"], r["to"]) for r in resets] == [("2025-06-01", None), ("2026-02-01", "2025-06-01")]
    assert all(r["by"] for r in resets)
    unknown = cli(workspace, "watermark", "reset", "nope")
    assert unknown.exit_code == 2 and "unknown flow 'nope'" in unknown.stderr


def test_repush_sends_unchanged_records_again_as_updates(workspace: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    api = FakeAPI().on("GET", "/v2/things", 200, things({"id": 1, "name": "a"}, {"id": 2, "name": "b"}))
    api.on("POST", "/v2/things", 201, {"id": 11}).on("POST", "/v2/things", 201, {"id": 12})
    assert cli(workspace, "run", api=api, monkeypatch=monkeypatch).exit_code == 0
    assert cli(workspace, "run", "--full", api=api, monkeypatch=monkeypatch).exit_code == 0
    assert len(api.calls("POST")) == 2  # unchanged: no call

    api.on("POST", "/v2/things", 200, {"id": 12})
    result = cli(workspace, "repush", "things", "2", "--json", api=api, monkeypatch=monkeypatch)
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["totals"]["updated"] + json.loads(result.stdout)["totals"]["created"] == 1
    assert "things: 1 record(s) marked for a re-push" in result.stderr
    posts = api.calls("POST")
    assert len(posts) == 3 and json.loads(posts[-1]["body"])["name"] == "b"
    assert api.calls("GET")[-1]["params"].get("since") is None  # a full read meets the records
    state = state_of(workspace)
    try:
        assert state.id_maps.target_of("things", "2") == "12"
        marks = state.audit.query(flow="things", outcome="marked")
    finally:
        state.close()
    assert [(m["source_key"], m["action"], m["target_id"]) for m in marks] == [("2", "repush", "12")]
    never = cli(workspace, "repush", "things", "99")
    assert never.exit_code == 2 and "has not synced key(s) 99" in never.stderr


@pytest.mark.parametrize("command", [("parked", "discard"), ("parked", "list"), ("watermark", "reset"),
                                     ("repush",), ("parked",), ("watermark",)])
def test_help_gives_an_example(command: tuple[str, ...]) -> None:
    result = CliRunner().invoke(main, [*command, "--help"])
    assert result.exit_code == 0 and "Example" in result.output and "ml-connector " + command[0] in result.output
