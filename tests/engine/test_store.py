"""State repositories: id maps, pending records, audit, credentials, multi-row inserts."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ml_connector.store import AuditRow, State, StateError


def test_id_map_upserts_and_looks_up_both_ways() -> None:
    state = State(":memory:")
    state.id_maps.save("f", [("a", "1", "h1"), ("b", "2", "h2"), ("a", "3", "h3")])
    entries = state.id_maps.get_many("f", ["a", "b", "c"])
    assert {k: (e.target_id, e.payload_hash) for k, e in entries.items()} == {"a": ("3", "h3"), "b": ("2", "h2")}
    assert state.id_maps.source_of("f", "2") == "b" and state.id_maps.target_of("f", "zz") is None
    state.id_maps.save("f", [("b", "2", "h9")])
    assert state.id_maps.get_many("f", ["b"])["b"].payload_hash == "h9"


@pytest.mark.duckdb_only  # PostgreSQL text cannot hold NUL: it stores U+FFFD (store/postgres.py)
@settings(max_examples=25, deadline=None)
@given(st.lists(st.tuples(st.text(min_size=1, max_size=8), st.text(max_size=8)), max_size=700))
def test_multi_row_insert_keeps_every_row_including_awkward_text(rows: list[tuple[str, str]]) -> None:
    state = State(":memory:")
    state.audit.add(AuditRow("r", "f", key, None, "create", "ok", 1, error) for key, error in rows)
    stored = state.db.fetchall("SELECT source_key, error FROM audit")
    assert sorted(stored) == sorted(rows)


def test_pending_counts_attempts_and_keeps_the_latest_payload() -> None:
    state = State(":memory:")
    state.pending.park("f", "r1", [("k", "deferred", {"v": 1}, "waiting")])
    state.pending.park("f", "r2", [("k", "failed", {"v": 2}, "HTTP 400: bad")])
    [record] = state.pending.list(flow="f")
    assert (record.status, record.record, record.attempts) == ("failed", {"v": 2}, 2)
    assert state.pending.list(reason_like="http 400")[0].source_key == "k"
    assert state.pending.list(run_id="r1") == []
    state.pending.clear("f", ["k"])
    assert state.pending.list() == []


@pytest.mark.duckdb_only  # reads the ciphertext from the .duckdb file itself
def test_credentials_are_encrypted_at_rest(tmp_path: Path) -> None:
    path = tmp_path / "state.duckdb"
    state = State(path)
    state.credentials.put("conn.refresh_token", "very-secret-value")
    assert state.credentials.get("conn.refresh_token") == "very-secret-value"
    state.close()
    raw = duckdb.connect(str(path), read_only=True).execute("SELECT ciphertext FROM credentials").fetchall()
    assert raw and "very-secret-value" not in raw[0][0]
    assert (tmp_path / "state.key").stat().st_mode & 0o777 == 0o600


@pytest.mark.duckdb_only  # DuckDB's file lock; PostgreSQL is shared by design
def test_a_second_process_gets_a_clear_error_when_the_state_is_locked(tmp_path: Path) -> None:
    import subprocess
    import sys

    path = tmp_path / "state.duckdb"
    holder = subprocess.Popen([sys.executable, "-c", f"import duckdb, time; c = duckdb.connect({str(path)!r}); "
                               "print('ready', flush=True); time.sleep(30)"], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "ready"
        with pytest.raises(StateError, match="another ml-connector process"):
            State(path)
    finally:
        holder.kill()


def test_prune_removes_only_old_audit_rows() -> None:
    from datetime import timedelta

    state = State(":memory:")
    state.audit.add([AuditRow("r1", "f", "old", None, "create", "ok"), AuditRow("r2", "f", "new", None, "skip",
                                                                                  "unchanged")])
    state.db.execute("UPDATE audit SET logged_at = logged_at - ? WHERE source_key = 'old'", [timedelta(days=91)])
    state.pending.park("f", "r1", [("old", "failed", {"x": 1}, "bad")])
    assert state.audit.prune(90) == 1
    assert [row["source_key"] for row in state.audit.query()] == ["new"]
    assert state.pending.list()[0].source_key == "old"  # parked records are never pruned
