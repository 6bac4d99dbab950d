"""A flow over an entity this account does not have (a query on an object the org lacks answers 400 INVALID_TYPE):
a response rule `do: skip_flow` ends the flow as "skipped" with the rule's message, not as an error. The run goes
on, its status and exit code do not count the skip, and the flow's watermark stays where it was."""

from __future__ import annotations

import asyncio
import functools
import textwrap
from pathlib import Path
from typing import Any

import httpx
from click.testing import CliRunner

import ml_connector.cli
from ml_connector.cli import main
from ml_connector.store import State
from ml_connector.sync.runner import Runner
from ml_connector.workspace import Workspace
from tests.engine.fakeapi import FakeAPI
from tests.engine.two_flows import two_flow_files

RULE = """
        responses:
          - when: {status: 400, body: "[0].errorCode == 'INVALID_TYPE'"}
            do: skip_flow
            message: "this account has no such object ({{ body[0].message }})"
"""
FILES = {
    "connectors/src.yaml": """
        connector: src
        base_url: http://api.test/src
        auth: {key: {type: api_key, header: x-key, value: k-literal}}
        retries: 3
        RULE
        entities:
          missing: {key: code, read: {path: /missing, records: data, incremental: {param: since, field: at}}}
          thing: {key: code, read: {path: /things, records: data}}
        """,
    **two_flow_files("missing", "thing"),
}
INVALID = [{"message": "sObject type 'Foo' is not supported.", "errorCode": "INVALID_TYPE"}]
SKIPPED = "skipped: this account has no such object (sObject type 'Foo' is not supported.)"


def workspace(tmp_path: Path, rule: str = RULE) -> Path:
    for name, text in FILES.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(textwrap.dedent(text).replace("RULE", textwrap.dedent(rule).strip()))
    return tmp_path / "workspace.yaml"


def scripted() -> FakeAPI:
    return FakeAPI().on("GET", "/src/missing", 400, INVALID) \
                    .on("GET", "/src/things", 200, {"data": [{"code": "A", "name": "a"}]}) \
                    .on("POST", "/dst/items", 200, {"data": {"id": 1}})


def run(path: Path, api: FakeAPI, state: State) -> Any:
    runner = Runner(Workspace.open(path).project, state, transport=httpx.ASGITransport(app=api.app))
    return asyncio.run(runner.run())


def test_a_skip_rule_ends_the_flow_as_skipped_and_the_run_goes_on(tmp_path: Path) -> None:
    path, api, state = workspace(tmp_path), scripted(), State(":memory:")
    state.watermarks.set("first", "2026-03-01T00:00:00Z")

    summary = run(path, api, state)

    assert [(f.flow, f.status, f.read, f.created, f.error) for f in summary.flows] == [
        ("first", "skipped", 0, 0, SKIPPED), ("second", "ok", 1, 1, None)]
    assert summary.status == "ok"
    assert state.watermarks.get("first") == "2026-03-01T00:00:00Z"  # untouched
    assert len(api.calls("GET", "/src/missing")) == 1  # not retried
    assert api.calls("GET", "/src/missing")[0]["params"] == {"since": "2026-03-01T00:00:00Z"}
    assert {f["flow"]: f["last_status"] for f in state.runs.flow_status()} == {"first": "skipped", "second": "ok"}
    assert [r["status"] for r in state.runs.recent()] == ["ok"]


def test_a_skip_rule_without_a_message_names_the_answer(tmp_path: Path) -> None:
    rule = """
        responses:
          - {when: {status: 400, body: "[0].errorCode == 'INVALID_TYPE'"}, do: skip_flow}
    """
    summary = run(workspace(tmp_path, rule), scripted(), State(":memory:"))
    assert summary.flows[0].error == "skipped: GET /src/missing -> HTTP 400: sObject type 'Foo' is not supported."
    assert summary.status == "ok"


def test_a_skipped_flow_exits_0_with_its_line_in_the_summary(tmp_path: Path, monkeypatch: Any) -> None:
    path, api = workspace(tmp_path), scripted()
    monkeypatch.setattr(ml_connector.cli, "Runner",
                        functools.partial(Runner, transport=httpx.ASGITransport(app=api.app)))
    result = CliRunner().invoke(main, ["run", "-w", str(path)])
    assert result.exit_code == 0, result.output
    assert f"  first: {SKIPPED}" in result.stdout.splitlines()
    assert result.stderr == ""


def test_without_the_rule_the_same_answer_fails_the_flow(tmp_path: Path) -> None:
    summary = run(workspace(tmp_path, "responses: []"), scripted(), State(":memory:"))
    assert summary.flows[0].status == "failed"
    assert summary.status == "failed"
