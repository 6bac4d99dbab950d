"""Issue 17 case 11: SIGINT and SIGTERM stop a run gracefully, mark it interrupted and keep what was confirmed."""

from __future__ import annotations

import asyncio
import functools
import os
import signal
import textwrap
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner

import ml_connector.cli
from ml_connector.cli import main
from ml_connector.store import State
from ml_connector.sync.runner import Runner
from ml_connector.workspace import Workspace
from tests.engine.fakeapi import FakeAPI

FILES = {
    "connectors/src.yaml": """
        connector: src
        base_url: http://api.test/src
        auth: {key: {type: api_key, header: x-key, value: k-literal}}
        entities:
          thing: {key: code, read: {path: /things, records: data}}
        """,
    "connectors/dst.yaml": """
        connector: dst
        base_url: http://api.test/dst
        auth: {key: {type: api_key, header: x-key, value: k-literal}}
        limits: {stop_grace: 0.3}
        entities:
          item: {key: id, write: {strategy: create_only, create: {method: POST, path: /items, id: data.id}}}
        """,
    "mappings/p/integration.yaml": """
        integration: p
        connections: {src: {connector: src}, dst: {connector: dst}}
        flows: [things.yaml]
        """,
    "mappings/p/things.yaml": """
        flow: things
        from: {connection: src, entity: thing}
        to: {connection: dst, entity: item}
        key: code
        fields: {name: name}
        """,
    "workspace.yaml": """
        state: state.duckdb
        connectors: [connectors]
        integrations: [mappings/p]
        connections: {src: {connector: src}, dst: {connector: dst}}
        """,
}
THINGS = {"data": [{"code": c, "name": f"thing {c}"} for c in ("A", "B", "C")]}


def workspace(root: Path) -> Path:
    for name, text in FILES.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(textwrap.dedent(text))
    return root / "workspace.yaml"


class StopAtThirdWrite(httpx.AsyncBaseTransport):
    """Serves the scripted API; the third POST calls ``stop`` (a signal arrives) while it is on the wire, and is
    answered ``answer_after`` seconds later (None: never, it waits to be cancelled)."""

    def __init__(self, api: FakeAPI, stop: Callable[[], object], answer_after: float | None = None) -> None:
        self.inner = httpx.ASGITransport(app=api.app)
        self.stop = stop
        self.answer_after = answer_after
        self.posts = 0

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if request.method == "POST":
            self.posts += 1
            if self.posts == 3:
                self.stop()
                if self.answer_after is None:
                    await asyncio.Event().wait()
                else:
                    await asyncio.sleep(self.answer_after)
        return await self.inner.handle_async_request(request)


def scripted() -> FakeAPI:
    return FakeAPI().on("GET", "/src/things", 200, THINGS) \
                    .on("POST", "/dst/items", 200, {"data": {"id": 1}}) \
                    .on("POST", "/dst/items", 200, {"data": {"id": 2}})


def statuses(state: State) -> tuple[list[str], dict[str, str]]:
    return [r["status"] for r in state.runs.recent()], {f["flow"]: f["last_status"] for f in state.runs.flow_status()}


def test_a_cancelled_run_is_marked_interrupted_not_failed_and_keeps_its_summary(tmp_path: Path) -> None:
    api = scripted()
    state = State(":memory:")

    async def go() -> Runner:
        task = asyncio.current_task()
        assert task is not None
        runner = Runner(Workspace.open(workspace(tmp_path)).project, state,
                        transport=StopAtThirdWrite(api, functools.partial(task.cancel, "SIGINT")))
        with pytest.raises(asyncio.CancelledError):
            await runner.run()
        return runner

    runner = asyncio.run(go())
    assert statuses(state) == (["interrupted"], {"things": "interrupted"})
    assert runner.last is not None and runner.last.status == "interrupted"
    [flow] = runner.last.flows
    assert (flow.status, flow.error, flow.read) == ("interrupted", "interrupted (SIGINT)", 3)
    [run] = state.runs.recent()
    assert run["summary"]["status"] == "interrupted" and run["finished_at"] is not None
    assert len(api.calls("POST", "/dst/items")) == 2


def interrupted_at_the_third_write(tmp_path: Path, api: FakeAPI, state: State, answer_after: float | None) -> None:
    async def go() -> None:
        task = asyncio.current_task()
        assert task is not None
        runner = Runner(Workspace.open(workspace(tmp_path)).project, state,
                        transport=StopAtThirdWrite(api, functools.partial(task.cancel, "SIGINT"), answer_after))
        with pytest.raises(asyncio.CancelledError):
            await runner.run()

    asyncio.run(go())


def audit_of(state: State) -> list[tuple[str, str | None, str, str | None]]:
    return sorted((r["source_key"], r["target_id"], r["outcome"], r["error"]) for r in state.audit.query(flow="things"))


def test_a_write_on_the_wire_when_the_stop_lands_is_answered_and_recorded_before_the_run_stops(
        tmp_path: Path) -> None:
    api = scripted().on("POST", "/dst/items", 200, {"data": {"id": 3}})
    state = State(":memory:")
    interrupted_at_the_third_write(tmp_path, api, state, answer_after=0.05)
    assert statuses(state) == (["interrupted"], {"things": "interrupted"})
    assert state.id_maps.count("things") == 3
    assert audit_of(state) == [("A", "1", "ok", None), ("B", "2", "ok", None), ("C", "3", "ok", None)]
    again = FakeAPI().on("GET", "/src/things", 200, THINGS)
    summary = asyncio.run(Runner(Workspace.open(tmp_path / "workspace.yaml").project, state,
                                 transport=httpx.ASGITransport(app=again.app)).run())
    assert [(f.created, f.unchanged) for f in summary.flows] == [(0, 3)]
    assert again.calls("POST", "/dst/items") == []


def test_a_write_unanswered_within_the_stop_grace_is_parked_as_outcome_unknown_never_sent_again_blindly(
        tmp_path: Path) -> None:
    api = scripted()
    state = State(":memory:")
    interrupted_at_the_third_write(tmp_path, api, state, answer_after=None)
    assert state.id_maps.count("things") == 2
    assert audit_of(state) == [
        ("A", "1", "ok", None), ("B", "2", "ok", None),
        ("C", None, "failed", "outcome unknown: the run was stopped with this write in flight (no answer within "
                              "the connector's limits.stop_grace, 0.3 s)")]
    [parked] = state.pending.list("things")
    assert (parked.source_key, parked.outcome_unknown) == ("C", True)
    again = FakeAPI().on("GET", "/src/things", 200, THINGS)
    asyncio.run(Runner(Workspace.open(tmp_path / "workspace.yaml").project, state,
                       transport=httpx.ASGITransport(app=again.app)).run())
    assert again.calls("POST", "/dst/items") == []  # nothing can look for it: it waits for a person, not re-sent


@pytest.mark.parametrize(("signum", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_the_cli_stops_on_a_signal_prints_what_was_done_and_exits_with_its_code(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, signum: int, code: int) -> None:
    api = scripted()
    transport = StopAtThirdWrite(api, functools.partial(os.kill, os.getpid(), signum))
    monkeypatch.setattr(ml_connector.cli, "Runner", functools.partial(Runner, transport=transport))
    path = workspace(tmp_path)

    result = CliRunner().invoke(main, ["run", "-w", str(path)])

    assert result.exit_code == code, result.output
    assert "Traceback" not in result.output
    assert "run " in result.stdout and ": interrupted" in result.stdout
    assert f"ml-connector: interrupted by {signal.Signals(signum).name}" in result.stderr
    state = State(tmp_path / "state.duckdb")
    try:
        assert statuses(state) == (["interrupted"], {"things": "interrupted"})
    finally:
        state.close()


def test_a_crash_still_marks_the_run_and_flow_failed(tmp_path: Path) -> None:
    api = FakeAPI().on("GET", "/src/things", 200, THINGS).on("POST", "/dst/items", 200, {"data": {"id": 1}})
    state = State(":memory:")

    def crash() -> None:
        raise RuntimeError("a bug")

    runner = Runner(Workspace.open(workspace(tmp_path)).project, state,
                    transport=StopAtThirdWrite(api, functools.partial(crash)))
    api.on("POST", "/dst/items", 200, {"data": {"id": 2}})
    summary = asyncio.run(runner.run())
    assert statuses(state) == (["failed"], {"things": "failed"})
    assert summary.flows[0].error == "RuntimeError: a bug"


def test_a_stop_signal_is_not_lost_when_its_wakeup_byte_never_reaches_the_event_loop() -> None:
    """Under load ``serve`` once ignored SIGTERM for 30 s: asyncio learns which signal came only from the byte the C
    handler writes to the loop's wakeup fd; with that byte lost, its Python-level handler is a no-op. The stop must
    also arrive through the Python-level handler, which runs whenever the main thread runs."""
    async def work() -> str:
        signal.set_wakeup_fd(-1)  # the byte is lost: nothing writes to the loop's self-pipe
        os.kill(os.getpid(), signal.SIGTERM)
        for _ in range(40):  # the loop wakes on its own timers, as serve's does
            await asyncio.sleep(0.05)
        return "ran to its end"

    with pytest.raises(ml_connector.cli.Interrupted) as stopped:
        ml_connector.cli._until_stopped(work(), lambda: None)

    assert stopped.value.signum == signal.SIGTERM
    assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL  # one-shot: a second signal stops the process at once
