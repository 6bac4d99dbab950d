"""The store's repositories on both backends: a DuckDB file and a PostgreSQL schema answer the same way.

Each test runs twice (``state`` is parametrized); PostgreSQL-only behaviours (schemas, shared access, audit
partitions, the password kept out of errors) follow at the end.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from ml_connector.store import AuditRow, State, StateError
from ml_connector.store.database import MIGRATIONS, StateLocked
from ml_connector.store.fingerprints import Fingerprints, fingerprint
from ml_connector.store.idmap import IdMaps
from ml_connector.store.pending import Parking
from ml_connector.store.postgres import PostgresTarget
from tests.pg import fresh_schema, postgres_url

__all__ = ["postgres_url"]  # the session's server fixture, imported for the tests below

BACKENDS = ["duckdb", "postgresql"]


def open_target(request: pytest.FixtureRequest, tmp_path: Path, backend: str) -> Path | PostgresTarget:
    if backend == "duckdb":
        return tmp_path / "state.duckdb"
    url = request.getfixturevalue("postgres_url")
    return PostgresTarget(url, schema=fresh_schema(url), key_file=tmp_path / "state.key")


@pytest.fixture(params=BACKENDS)
def target(request: pytest.FixtureRequest, tmp_path: Path) -> Path | PostgresTarget:
    return open_target(request, tmp_path, request.param)


@pytest.fixture
def state(target: Path | PostgresTarget) -> Iterator[State]:
    opened = State(target)
    yield opened
    opened.close()


def test_migrations_run_from_empty_and_a_reopened_state_keeps_its_rows(target: Path | PostgresTarget) -> None:
    first = State(target)
    assert first.db.fetchone("SELECT max(version) FROM schema_version") == (len(MIGRATIONS),)
    first.watermarks.set("f", "2026-01-01")
    first.close()
    again = State(target)
    assert again.db.fetchall("SELECT count(*) FROM schema_version") == [(len(MIGRATIONS),)]
    assert again.watermarks.get("f") == "2026-01-01"
    again.close()


def test_id_map_save_get_many_and_diff_with_fingerprints(state: State, monkeypatch: pytest.MonkeyPatch) -> None:
    state.id_maps.save("f", [("a", "1", "h1"), ("b", "2", "h2"), ("a", "3", "h3"), ("c", "4", None)])
    entries = state.id_maps.get_many("f", ["a", "b", "x"])
    assert {k: (e.target_id, e.payload_hash) for k, e in entries.items()} == {"a": ("3", "h3"), "b": ("2", "h2")}
    assert state.id_maps.sources_of("f", ["2", "3", "9"]) == {"2": ["b"], "3": ["a"]}
    loaded = Fingerprints.load(state.db, "f")
    assert loaded is not None, "the backend's MD5 fingerprint must agree with Python's"
    assert sorted(loaded.keys) == list(loaded.keys)  # buckets by the top byte, each sorted
    assert set(loaded.keys) == {fingerprint(k, loaded.byteorder) for k in "abc"}
    monkeypatch.setattr(IdMaps, "FINGERPRINT_MIN", 1)
    monkeypatch.setattr(IdMaps, "LOAD_AFTER_PAGES", 0)
    same, others = state.id_maps.diff("f", {"a": "h3", "b": "hX", "c": "h", "new": "h"})
    assert state.db.fingerprints.flows["f"] is not None
    assert same == {"a"} and {k: e.target_id for k, e in others.items()} == {"b": "2", "c": "4"}
    assert state.id_maps.forget_hashes("f", ["a"]) == ["a"]
    assert state.id_maps.get_many("f", ["a"])["a"].payload_hash is None


def test_target_values_round_trip_as_json(state: State) -> None:
    state.id_maps.note_target_values("f", [("t1", {"name": "Ä", "n": 1}), ("t2", {})])
    assert state.id_maps.target_values("f", ["t1", "t2", "t3"]) == {"t1": {"name": "Ä", "n": 1}, "t2": {}}


def test_audit_rows_summary_rows_query_and_prune(state: State) -> None:
    state.audit.add([AuditRow("r1", "f", "k1", "t1", "create", "ok", payload={"a": 1}),
                     AuditRow("r1", "f", "k2", None, "park", "failed", 3, "HTTP 400", note="n")])
    state.audit.add_unchanged("r1", "f", 7)
    rows = state.audit.query(run_id="r1")
    assert {(r["source_key"], r["outcome"], r["count"], r["attempts"]) for r in rows} == {
        ("k1", "ok", 1, 1), ("k2", "failed", 1, 3), (None, "unchanged", 7, 1)}
    assert next(r for r in rows if r["source_key"] == "k1")["payload"] == {"a": 1}
    assert isinstance(rows[0]["logged_at"], datetime)
    state.db.execute("UPDATE audit SET logged_at = logged_at - ? WHERE source_key = 'k1'", [timedelta(days=91)])
    assert state.audit.prune(90) == 1
    assert {r["source_key"] for r in state.audit.query()} == {"k2", None}


def test_audit_export_writes_csv(state: State, tmp_path: Path) -> None:
    state.audit.add([AuditRow("r1", "f", "k1", "t1", "create", "ok")])
    out = tmp_path / "audit.csv"
    assert state.audit.export(out, "csv") == 1
    header, row = out.read_text().splitlines()
    assert header.startswith("run_id,flow,source_key,target_id,action,outcome") and row.startswith("r1,f,k1,t1,")
    parquet = tmp_path / "audit.parquet"
    assert state.audit.export(parquet, "parquet") == 1
    import duckdb

    read = duckdb.connect(":memory:").execute(f"SELECT source_key, count, logged_at FROM '{parquet}'").fetchall()
    assert [(key, count, type(moment)) for key, count, moment in read] == [("k1", 1, datetime)]


def test_pending_park_standing_and_clear(state: State) -> None:
    due = datetime(2030, 1, 1, 12, 0)
    state.pending.park("f", "r1", [("k", "deferred", {"v": 1}, "waiting"), ("j", "failed", {"v": 0}, "bad")],
                       {"k": Parking(next_attempt=due, outcome_unknown=True, failures=2)})
    state.pending.park("f", "r2", [("k", "failed", {"v": 2}, "HTTP 400: bad")],
                       {"k": Parking(next_attempt=due, outcome_unknown=True, failures=3)})
    standing = state.pending.standing("f", ["k", "zz"])
    assert list(standing) == ["k"]
    record = standing["k"]
    assert (record.status, record.record, record.attempts, record.next_attempt, record.outcome_unknown,
            record.failures) == ("failed", {"v": 2}, 2, due, True, 3)
    assert [p.source_key for p in state.pending.list(reason_like="http 400")] == ["k"]
    assert state.pending.counts() == {("f", "failed"): 2}
    state.pending.keep("f", [("j", {"v": 5})])
    assert state.pending.list(keys=["j"])[0].record == {"v": 5}
    state.pending.clear("f", ["k", "j"])
    assert state.pending.list() == [] and state.pending.standing("f", ["k"]) == {}


def test_watermarks_and_full_reads(state: State) -> None:
    assert state.watermarks.get("f") is None
    state.watermarks.set("f", "a")
    state.watermarks.set("f", "b")
    assert state.watermarks.get("f") == "b"
    state.watermarks.reset("f")
    assert state.watermarks.get("f") is None
    state.watermarks.full_read_done("f")
    moment = state.watermarks.last_full_read("f")
    assert moment is not None and abs(moment - datetime.now(UTC).replace(tzinfo=None)) < timedelta(minutes=1)


def test_runs_and_flow_runs(state: State) -> None:
    state.runs.start("r1", "run")
    state.runs.start_flow("r1", "f")
    state.runs.finish_flow("r1", "f", "ok", {"created": 1})
    state.runs.finish("r1", "ok", {"flows": 1})
    state.runs.start("r2", "run")
    state.runs.start_flow("r2", "f")
    assert state.runs.get("r1") is not None and state.runs.get("r1")["summary"] == {"flows": 1}  # type: ignore[index]
    assert [r["run_id"] for r in state.runs.recent()] == ["r2", "r1"]
    [status] = state.runs.flow_status()
    assert (status["flow"], status["last_status"]) == ("f", "running")
    assert state.runs.last_finished("f") is not None
    assert [f["summary"] for f in state.runs.flows_of("r1")] == [{"created": 1}]


def test_a_flow_lock_holder_marks_the_flows_killed_run_interrupted(state: State) -> None:
    state.runs.start("r1", "run")
    state.runs.start_flow("r1", "f")
    state.runs.start_flow("r1", "g")
    assert state.runs.interrupt_flow("f") == 1
    assert {f["flow"]: f["status"] for f in state.runs.flows_of("r1")} == {"f": "interrupted", "g": "running"}


def test_filtered_remember_recall_and_forget(state: State) -> None:
    assert not state.filtered.has_any("f")
    state.filtered.remember("f", ["a", "b"])
    state.filtered.remember_each("f", {"c": "future"})
    state.filtered.release("f")
    again, known = state.filtered.recall("f", ["a", "c", "z"], ["b"])
    assert again == {"a"} and known == ["b"]
    state.filtered.forget("f", ["b"])
    assert state.filtered.known("f", ["a", "b"]) == {"a"}
    assert state.filtered.reasons("f", ["c"]) == {"c": "future"}


def test_credentials_channels_and_stream_positions(state: State) -> None:
    from ml_connector.store.channels import ACTIVE, StoredChannel

    state.credentials.put("c.secret", "value-1")
    assert state.credentials.get("c.secret") == "value-1" and state.credentials.names() == ["c.secret"]
    raw = state.db.fetchone("SELECT ciphertext FROM credentials")
    assert raw is not None and "value-1" not in raw[0]
    moment = datetime(2030, 1, 1, tzinfo=UTC)
    state.channels.save(StoredChannel("c", "ch", "e", "id1", "https://x", ACTIVE, None, moment, moment), "tok-123")
    stored = state.channels.get("c", "ch", "e")
    assert stored is not None and stored.expires_at == moment and state.channels.token("c", "ch", "e") == "tok-123"
    state.stream_positions.save("c", "s", "t", b"\x00\xff\x01", moment)
    position = state.stream_positions.get("c", "s", "t")
    assert position is not None and (position.replay_id, position.saved_at) == (b"\x00\xff\x01", moment)
    assert state.credentials.delete("c.secret") and not state.credentials.delete("c.secret")


def test_the_flow_lock_is_taken_once_until_released(state: State) -> None:
    assert state.db.advisory_lock("flow:a")
    assert not state.db.advisory_lock("flow:a"), "a lock already held is refused, even to its holder"
    assert state.db.advisory_lock("flow:b")
    state.db.unlock("flow:a")
    assert state.db.advisory_lock("flow:a")
    state.db.unlock("flow:a")
    state.db.unlock("flow:b")


@pytest.mark.duckdb_only
def test_duckdb_refuses_a_second_state_on_one_file(tmp_path: Path) -> None:
    first = State(tmp_path / "state.duckdb")
    try:
        import subprocess
        import sys

        code = f"from ml_connector.store import State; State({str(tmp_path / 'state.duckdb')!r})"
        done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                              check=False)
        assert done.returncode != 0 and StateLocked.__name__ in done.stderr
    finally:
        first.close()


# --- PostgreSQL only ---------------------------------------------------------------------------------------------


@pytest.fixture
def pg_target(postgres_url: str, tmp_path: Path) -> PostgresTarget:
    return PostgresTarget(postgres_url, schema=fresh_schema(postgres_url), key_file=tmp_path / "state.key")


def test_postgresql_workers_share_one_state_and_its_flow_locks(pg_target: PostgresTarget) -> None:
    one, two = State(pg_target), State(pg_target)
    try:
        one.id_maps.save("f", [("a", "1", "h")])
        assert two.id_maps.target_of("f", "a") == "1"
        assert one.db.advisory_lock("flow:x")
        assert not two.db.advisory_lock("flow:x")
        assert two.db.advisory_lock("flow:y")
        one.close()  # a worker gone: its connection ends, and its locks with it
        assert two.db.advisory_lock("flow:x")
    finally:
        two.close()


def test_postgresql_a_killed_workers_flow_lock_is_free_again(pg_target: PostgresTarget) -> None:
    import subprocess
    import sys
    import time

    code = (f"from ml_connector.store import State, PostgresTarget; s = State(PostgresTarget({pg_target.url!r}, "
            f"schema={pg_target.schema!r}, key_file=None)); assert s.db.advisory_lock('flow:x'); "
            "print('held', flush=True); import time; time.sleep(60)")
    holder = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    state = State(pg_target)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        assert not state.db.advisory_lock("flow:x")
        holder.kill()
        holder.wait()
        deadline = time.monotonic() + 10
        while not state.db.advisory_lock("flow:x"):
            assert time.monotonic() < deadline, "the killed worker's lock was never released"
            time.sleep(0.05)
    finally:
        holder.kill()
        state.close()


def test_postgresql_run_start_leaves_another_workers_running_run_alone(pg_target: PostgresTarget) -> None:
    one, two = State(pg_target), State(pg_target)
    try:
        one.runs.start("r1", "run")
        two.runs.start("r2", "run")
        assert one.runs.get("r1")["status"] == "running"  # type: ignore[index]
    finally:
        one.close()
        two.close()


def test_postgresql_schemas_isolate_tenants(postgres_url: str, tmp_path: Path) -> None:
    a = State(PostgresTarget(postgres_url, schema="tenant_" + fresh_schema(postgres_url), key_file=tmp_path / "a"))
    b = State(PostgresTarget(postgres_url, schema="tenant_" + fresh_schema(postgres_url), key_file=tmp_path / "b"))
    try:
        a.watermarks.set("f", "A")
        assert b.watermarks.get("f") is None
        assert a.db.advisory_lock("flow:f") and b.db.advisory_lock("flow:f"), "locks are per tenant schema"
    finally:
        a.close()
        b.close()


def test_postgresql_audit_is_partitioned_by_month_and_pruned_by_dropping_months(pg_target: PostgresTarget) -> None:
    state = State(pg_target)
    try:
        parts = {row[0] for row in state.db.fetchall(
            "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
            "JOIN pg_class p ON p.oid = i.inhparent WHERE p.relname = 'audit' "
            "AND p.relnamespace = current_schema()::regnamespace")}
        now = datetime.now(UTC)
        assert f"audit_{now:%Y_%m}" in parts and "audit_default" in parts
        state.db.create_audit_partitions(datetime(2020, 1, 15))
        state.audit.add([AuditRow("r", "f", "old", None, "create", "ok"), AuditRow("r", "f", "new", None, "create",
                                                                                    "ok")])
        state.db.execute("UPDATE audit SET logged_at = '2020-01-20' WHERE source_key = 'old'")
        assert state.db.fetchone("SELECT count(*) FROM audit_2020_01") == (1,)
        assert state.audit.prune(90) == 1
        assert [r["source_key"] for r in state.audit.query()] == ["new"]
        assert state.db.fetchone("SELECT to_regclass('audit_2020_01')") == (None,), "an old month is dropped whole"
    finally:
        state.close()


def test_postgresql_password_never_appears_in_errors(postgres_url: str) -> None:
    port = postgres_url.rsplit(":", 1)[1].split("/")[0]
    url = postgres_url.replace(f":{port}/", ":1/")  # nothing listens on port 1
    with pytest.raises(StateError) as caught:
        State(PostgresTarget(url, password="pw-very-secret-1", schema="s"))
    assert "pw-very-secret-1" not in str(caught.value) and "127.0.0.1:1" in str(caught.value)


def test_postgresql_bad_schema_name_is_refused(postgres_url: str) -> None:
    with pytest.raises(StateError, match="schema"):
        State(PostgresTarget(postgres_url, schema='x"; DROP TABLE y; --'))



def test_postgresql_text_with_nul_is_stored_with_a_replacement_character(pg_target: PostgresTarget) -> None:
    state = State(pg_target)
    try:
        state.audit.add([AuditRow("r", "f", "a\x00b", None, "park", "failed", error="bad\x00byte")])
        state.id_maps.save("f", [("k\x00", "t", None)])
        assert state.db.fetchall("SELECT source_key, error FROM audit") == [("a\ufffdb", "bad\ufffdbyte")]
        assert state.id_maps.target_of("f", "k\x00") == "t"
    finally:
        state.close()


def test_without_the_driver_a_postgresql_state_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    from ml_connector.extras import MissingExtra

    monkeypatch.setitem(sys.modules, "psycopg", None)
    with pytest.raises(MissingExtra, match=r"pip install 'ml-connector\[cluster\]'"):
        State(PostgresTarget("postgresql://ml@127.0.0.1:1/ml"))


def test_postgresql_workers_starting_together_create_the_schema_and_migrate_once(postgres_url: str) -> None:
    from concurrent.futures import ThreadPoolExecutor

    target = PostgresTarget(postgres_url, schema="new_" + fresh_schema(postgres_url))  # a schema not there yet
    with ThreadPoolExecutor(4) as pool:
        states = list(pool.map(lambda _: State(target), range(4)))
    try:
        assert states[0].db.fetchall("SELECT version FROM schema_version ORDER BY version") == [
            (version,) for version in range(1, len(MIGRATIONS) + 1)]
    finally:
        for opened in states:
            opened.close()


def test_placeholders_become_postgresql_ones_outside_quotes_only() -> None:
    from ml_connector.store.dialect import placeholders

    assert placeholders("SELECT '?', \"a?\" FROM t WHERE a LIKE '%x' AND b = ? AND c = 5 % 2") == (
        "SELECT '?', \"a?\" FROM t WHERE a LIKE '%%x' AND b = %s AND c = 5 %% 2")


def test_every_migration_has_a_postgresql_form() -> None:
    from ml_connector.store.dialect import postgres_migration

    forms = [postgres_migration(version, sql) for version, sql in enumerate(MIGRATIONS, start=1)]
    assert "PARTITION BY RANGE (logged_at)" in forms[0] and not any("BLOB" in form for form in forms)


def test_postgresql_state_messages_name_the_schema(pg_target: PostgresTarget, tmp_path: Path) -> None:
    """Many tenants share one database: a message naming only the URL does not say whose state it is."""
    from ml_connector.store.credentials import CredentialError

    state = State(pg_target)
    try:
        state.credentials.put("token", "secret")
    finally:
        state.close()
    assert pg_target.key_file is not None
    pg_target.key_file.unlink()
    with pytest.raises(CredentialError) as refused:
        State(pg_target).credentials.get("token")
    assert f"the state database {pg_target.url} (schema {pg_target.schema}) holds 1 encrypted value" in str(
        refused.value)


def test_postgresql_the_shared_inbox_is_a_versioned_migration(pg_target: PostgresTarget) -> None:
    """The inbox table comes with the state's schema history (versioned like every other), not beside it."""
    state = State(pg_target)
    try:
        assert state.db.fetchone("SELECT max(version) FROM schema_version") == (len(MIGRATIONS),)
        assert state.db.fetchone("SELECT to_regclass('inbox') IS NOT NULL") == (True,)
        index = state.db.fetchone("SELECT indexdef FROM pg_indexes WHERE schemaname = current_schema() "
                                  "AND indexname = 'inbox_pending'")
        assert index is not None and "UNIQUE" in index[0] and "WHERE (done_at IS NULL)" in index[0]
    finally:
        state.close()
