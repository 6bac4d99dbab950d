"""Any crash fails its flow and the run in state (never 'ok' or 'running'); later flows still run."""

from __future__ import annotations

import asyncio
import textwrap
from pathlib import Path

import httpx
import pytest

from ml_connector.store import State
from ml_connector.sync.runner import Runner
from ml_connector.workspace import Workspace
from tests.engine.fakeapi import FakeAPI
from tests.engine.two_flows import two_flow_files

FILES = {
    "connectors/src.yaml": """
        connector: src
        base_url: http://api.test/src
        auth: {key: {type: api_key, header: x-key, value: k-literal}}
        entities:
          broken: {key: code, read: {path: /broken, records: data}}
          thing: {key: code, read: {path: /things, records: data}}
        """,
    **two_flow_files("broken", "thing"),
}


class Breaking(httpx.AsyncBaseTransport):
    """Serves the scripted API, but raises ``error`` (a bug, an interrupt) on one path."""

    def __init__(self, api: FakeAPI, path: str, error: BaseException) -> None:
        self.inner = httpx.ASGITransport(app=api.app)
        self.path, self.error = path, error

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if request.url.path == self.path:
            raise self.error
        return await self.inner.handle_async_request(request)


def runner(tmp_path: Path, transport: httpx.AsyncBaseTransport, state: State) -> Runner:
    for name, text in FILES.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(textwrap.dedent(text))
    return Runner(Workspace.open(tmp_path / "workspace.yaml").project, state, transport=transport)


def statuses(state: State) -> tuple[list[str], dict[str, str]]:
    runs = [run["status"] for run in state.runs.recent()]
    return runs, {f["flow"]: f["last_status"] for f in state.runs.flow_status()}


def test_an_unexpected_exception_fails_its_flow_and_the_run_and_the_next_flow_runs(tmp_path: Path) -> None:
    api = FakeAPI().on("GET", "/src/things", 200, {"data": [{"code": "A", "name": "Acme"}]}) \
                   .on("POST", "/dst/items", 200, {"data": {"id": 1}})
    state = State(":memory:")

    summary = asyncio.run(runner(tmp_path, Breaking(api, "/src/broken", RuntimeError("a bug")), state).run())

    first, second = summary.flows
    assert (first.flow, first.status, first.error) == ("first", "failed", "RuntimeError: a bug")
    assert (second.flow, second.status, second.created) == ("second", "ok", 1)
    assert summary.status == "failed"
    assert statuses(state) == (["failed"], {"first": "failed", "second": "ok"})


def test_an_interrupt_marks_the_flow_and_the_run_interrupted_then_propagates(tmp_path: Path) -> None:
    state = State(":memory:")
    with pytest.raises(KeyboardInterrupt):
        asyncio.run(runner(tmp_path, Breaking(FakeAPI(), "/src/broken", KeyboardInterrupt()), state).run())
    assert statuses(state) == (["interrupted"], {"first": "interrupted"})
    [run] = state.runs.recent()
    assert run["summary"]["flows"][0]["error"] == "interrupted (KeyboardInterrupt)"


def test_an_interrupt_between_flows_still_marks_the_run_interrupted(tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    api = FakeAPI().on("GET", "/src/broken", 200, {"data": []})
    state = State(":memory:")
    start_flow = state.runs.start_flow

    def interrupted_before_second(run_id: str, flow: str) -> None:
        if flow == "second":
            raise KeyboardInterrupt
        start_flow(run_id, flow)

    monkeypatch.setattr(state.runs, "start_flow", interrupted_before_second)
    with pytest.raises(KeyboardInterrupt):
        asyncio.run(runner(tmp_path, httpx.ASGITransport(app=api.app), state).run())
    assert statuses(state) == (["interrupted"], {"first": "ok"})
