"""Issue 17 case 13: a state file that cannot be used says what is wrong with it; killed runs do not stay 'running'."""

from __future__ import annotations

import functools
import logging
import re
import subprocess
import sys
from pathlib import Path

import duckdb
import httpx
import pytest
from click.testing import CliRunner

import ml_connector.cli
from ml_connector.cli import main
from ml_connector.store import State, StateError
from ml_connector.sync.runner import Runner
from tests.engine.fakeapi import FakeAPI
from tests.engine.tiny_workspace import FLOW, write_workspace

# the state file's own failures (truncated, corrupt, read-only, lost log, lock, full disk) and a run's stale 'running'
# rows presumed killed only when one process owns the file: DuckDB's; a shared PostgreSQL state leaves them (runs.py)
pytestmark = pytest.mark.duckdb_only


def filled_state(path: Path) -> None:
    state = State(path)
    state.runs.start("r1", "run")
    state.runs.finish("r1", "ok", {})
    state.close()


def test_a_truncated_state_file_is_reported_as_truncated(tmp_path: Path) -> None:
    path = tmp_path / "state.duckdb"
    filled_state(path)
    with path.open("r+b") as file:
        file.truncate(5000)
    with pytest.raises(StateError, match=r"is truncated") as caught:
        State(path)
    assert "another ml-connector process" not in str(caught.value)


def test_a_corrupted_state_file_is_reported_as_not_a_state_database(tmp_path: Path) -> None:
    path = tmp_path / "state.duckdb"
    filled_state(path)
    with path.open("r+b") as file:
        file.write(b"garbage!" * 64)
    with pytest.raises(StateError, match=r"is not a valid state database \(corrupted, or another kind of file\)"):
        State(path)


def test_a_read_only_state_file_is_reported_as_read_only(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The tests run as root, for whom a file mode cannot forbid writing: DuckDB's own error stands in."""
    path = tmp_path / "state.duckdb"

    def refuse(database: str) -> duckdb.DuckDBPyConnection:
        raise duckdb.IOException(f'IO Error: Cannot open file "{database}": Permission denied')

    monkeypatch.setattr(duckdb, "connect", refuse)
    with pytest.raises(StateError, match=r"cannot be written \(read-only or not ours: Permission denied\)"):
        State(path)


def killed_after_a_write(path: Path) -> None:
    """A process that opens the state, starts a run and is killed (no clean close, no checkpoint)."""
    code = (f"import os; from ml_connector.store import State; s = State({str(path)!r}); "
            "s.runs.start('killed', 'run'); os._exit(9)")
    assert subprocess.run([sys.executable, "-c", code], cwd=Path(__file__).resolve().parents[2]).returncode == 9


def test_a_state_file_that_lost_its_write_ahead_log_is_reported(tmp_path: Path,
                                                                 caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "state.duckdb"
    filled_state(path)
    killed_after_a_write(path)
    wal = Path(str(path) + ".wal")
    assert wal.exists()
    wal.unlink()
    with caplog.at_level(logging.WARNING, logger="ml_connector.state"):
        State(path).close()
    assert re.search(r"its write-ahead log .*state\.duckdb\.wal is missing", caplog.text)


def killed_just_after_the_log_grew_past_a_checkpoint(path: Path) -> None:
    """A process that writes ~40 MB through the state and is killed right after a commit that left no log.

    DuckDB checkpoints on its own once its log passes a threshold and removes the log until the next write; a
    kill in that window left the session mark in the file with no log beside it, the signature of a lost log.
    """
    code = (f"import os; from ml_connector.store import State; s = State({str(path)!r}); wal = {str(path) + '.wal'!r}\n"
            "for i in range(40):\n"
            "    with s.db.transaction():\n"
            "        s.db.execute(\"CREATE TABLE IF NOT EXISTS filler (v VARCHAR)\")\n"
            "        s.db.execute(\"INSERT INTO filler SELECT repeat('x', 1000) || range FROM range(1000)\")\n"
            "    if not os.path.exists(wal):\n"
            "        os._exit(7)\n"
            "os._exit(9)")
    assert subprocess.run([sys.executable, "-c", code], cwd=Path(__file__).resolve().parents[2]).returncode in (7, 9)


def test_a_process_killed_after_a_checkpoint_is_not_taken_for_a_lost_log(tmp_path: Path,
                                                                        caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "state.duckdb"
    filled_state(path)
    killed_just_after_the_log_grew_past_a_checkpoint(path)
    with caplog.at_level(logging.WARNING, logger="ml_connector.state"):
        state = State(path)
    assert "write-ahead log" not in caplog.text
    assert state.db.fetchone("SELECT count(*) FROM filler") == (40_000,)
    state.close()


TORN_CHECKPOINT = """
import os
from ml_connector.store import State
path = {path!r}
state = State(path)
state.runs.start("before", "run")
state.db.execute("CREATE TABLE filler AS SELECT range AS n FROM range(5000)")


class TornCheckpoint:
    \"\"\"DuckDB's connection, except that a checkpoint is killed after it tore the block the file's header names.\"\"\"

    def __init__(self, conn):
        self.conn = conn

    def execute(self, sql, *args):
        if sql == "CHECKPOINT":
            with open(path, "r+b") as file:  # half of the first block rewritten, then the process is gone
                file.seek(12288 + 4096)
                file.write(os.urandom(8192))
            os._exit(9)
        return self.conn.execute(sql, *args)


state.db._conn = TornCheckpoint(state.db._conn)
state.db._checkpoint()
"""


def test_a_checkpoint_torn_by_a_kill_is_undone_and_the_log_replays_every_change(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "state.duckdb"
    filled_state(path)
    code = TORN_CHECKPOINT.format(path=str(path))
    assert subprocess.run([sys.executable, "-c", code], cwd=Path(__file__).resolve().parents[2]).returncode == 9
    with caplog.at_level(logging.WARNING, logger="ml_connector.state"):
        state = State(path)
    try:
        assert "stopped in the middle of a checkpoint" in caplog.text
        assert {r["run_id"] for r in state.runs.recent()} == {"r1", "before"}
        assert state.db.fetchone("SELECT count(*), sum(n) FROM filler") == (5000, 12_497_500)
    finally:
        state.close()
    assert not Path(str(path) + ".ckpt").exists()


def test_a_second_process_cannot_open_a_state_in_use(tmp_path: Path) -> None:
    path = tmp_path / "state.duckdb"
    holder = subprocess.Popen([sys.executable, "-c", f"import sys; from ml_connector.store import State; "
                               f"s = State({str(path)!r}); print('open', flush=True); sys.stdin.read()"],
                              cwd=Path(__file__).resolve().parents[2], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    try:
        assert holder.stdout is not None and holder.stdout.readline() == b"open\n"
        with pytest.raises(StateError, match="another ml-connector process is using it"):
            State(path)
    finally:
        holder.kill()
        holder.wait()


def test_a_killed_process_with_its_write_ahead_log_recovers_and_its_run_is_marked_interrupted(
        tmp_path: Path) -> None:
    path = tmp_path / "state.duckdb"
    filled_state(path)
    killed_after_a_write(path)
    state = State(path)
    assert {r["run_id"]: r["status"] for r in state.runs.recent()} == {"r1": "ok", "killed": "running"}
    state.runs.start("next", "run")
    assert {r["run_id"]: r["status"] for r in state.runs.recent()} == {"r1": "ok", "killed": "interrupted",
                                                                       "next": "running"}
    state.close()
    State(path).close()  # closed cleanly: opens again without complaint


def test_the_next_run_marks_stale_running_runs_and_flows_interrupted() -> None:
    state = State(":memory:")
    state.runs.start("old", "run")
    state.runs.start_flow("old", "things")
    state.runs.start("new", "run")
    assert sorted((r["run_id"], r["status"], r["finished_at"] is not None) for r in state.runs.recent()) == [
        ("new", "running", False), ("old", "interrupted", True)]
    assert state.runs.flow_status()[0]["last_status"] == "interrupted"


def test_serve_waits_while_a_manual_run_holds_the_state_then_runs_its_tick(tmp_path: Path,
                                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAKE_KEY", "k-123456")
    workspace = write_workspace(tmp_path, flow=FLOW + "schedule: every 15m\n")
    path = tmp_path / "state" / "state.duckdb"
    State(path).close()
    holder = subprocess.Popen([sys.executable, "-c", f"import duckdb, time; c = duckdb.connect({str(path)!r}); "
                               "print('ready', flush=True); time.sleep(60)"], stdout=subprocess.PIPE, text=True)
    pauses: list[float] = []

    async def pause(seconds: float) -> None:  # the manual run ends while the service waits
        pauses.append(seconds)
        holder.kill()
        holder.wait()

    api = FakeAPI().on("GET", "/v2/things", 200, {"data": [{"id": 1, "name": "x", "updated": "2026-01-01"}]})
    monkeypatch.setattr(ml_connector.cli, "_pause", pause)
    monkeypatch.setattr(ml_connector.cli, "Runner",
                        functools.partial(Runner, transport=httpx.ASGITransport(app=api.app)))
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "ready"
        result = CliRunner().invoke(main, ["serve", "--once", "--interval", "7", "-w", str(workspace)])
    finally:
        holder.kill()
    assert result.exit_code == 0, result.output
    assert pauses == [7]
    assert "another ml-connector process is using it" in result.stderr
    assert result.stderr.strip().endswith("trying again in 7s")
    assert "run " in result.stdout and len(api.calls("GET", "/v2/things")) == 1


class FullDisk:
    """A connection whose writes to one table fail the way DuckDB fails when the disk is full."""

    def __init__(self, conn: duckdb.DuckDBPyConnection, table: str) -> None:
        self.conn, self.table = conn, table

    def execute(self, sql: str, params: object = None) -> duckdb.DuckDBPyConnection:
        if sql.lstrip().startswith(f"INSERT INTO {self.table} "):
            raise duckdb.IOException('IO Error: Could not write file "state.duckdb.wal": No space left on device')
        return self.conn.execute(sql, params)

    def close(self) -> None:
        self.conn.close()


def test_a_full_disk_fails_the_flow_and_the_run_with_a_clear_message(tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    import asyncio

    from ml_connector.workspace import Workspace

    monkeypatch.setenv("FAKE_KEY", "k-123456")
    api = FakeAPI().on("GET", "/v2/things", 200, {"data": [{"id": 1, "name": "x", "updated": "2026-01-01"}]})
    state = State(tmp_path / "state.duckdb")
    state.db._conn = FullDisk(state.db._conn, "audit")  # type: ignore[assignment]
    runner = Runner(Workspace.open(write_workspace(tmp_path)).project, state,
                    transport=httpx.ASGITransport(app=api.app))
    summary = asyncio.run(runner.run())
    state.close()
    assert summary.status == "failed"
    assert summary.flows[0].error == (f"the state database {tmp_path / 'state.duckdb'} cannot be written: "
                                      'Could not write file "state.duckdb.wal": No space left on device')
    state = State(tmp_path / "state.duckdb")
    assert [r["status"] for r in state.runs.recent()] == ["failed"]
    state.close()
