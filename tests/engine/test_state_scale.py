"""State cost per run (issue 24, targets 5 and 6): unchanged records leave one summary audit row per flow run, not
one row each; a change still leaves its own row; the state file stops growing with unchanged runs; the id-map
lookup returns exactly what the plain query returns. Strict scripted APIs, exact rows."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from ml_connector.store import AuditRow, State
from ml_connector.store.fingerprints import Fingerprints
from ml_connector.store.links import Links
from ml_connector.transform.mapping import content_hash
from tests.engine.fakeapi import FakeAPI
from tests.engine.flowkit import flow_spec, run_flow

SPEC = flow_spec({"name": "name"})


def records(n: int, changed: dict[int, str] | None = None) -> dict[str, Any]:
    changed = changed or {}
    return {"data": [{"code": f"K{i:06d}", "name": changed.get(i, f"n{i}"), "updated": "2026-03-01T11:00:00Z"}
                     for i in range(n)]}


def synced(state: State, n: int) -> None:
    """Every record of ``records(n)`` linked and last pushed as it is now."""
    state.id_maps.save("things", [(f"K{i:06d}", str(1000 + i), content_hash({"name": f"n{i}"})) for i in range(n)])


def audit_rows(state: State) -> list[tuple[Any, ...]]:
    rows = state.audit.query(flow="things", limit=1000)
    return sorted(((r["run_id"], r["source_key"], r["target_id"], r["action"], r["outcome"], r["count"])
                   for r in rows), key=str)


def test_an_unchanged_full_run_writes_one_summary_row_and_no_row_per_record() -> None:
    state = State(":memory:")
    synced(state, 30)
    src = FakeAPI().on("GET", "/v2/things", body=records(30))

    summary = run_flow(state, SPEC, src, FakeAPI(), full=True)

    assert (summary.status, summary.read, summary.unchanged, summary.created) == ("ok", 30, 30, 0)
    assert audit_rows(state) == [("r1", None, None, "skip", "unchanged", 30)]


def test_a_changed_record_keeps_its_own_row_beside_the_summary() -> None:
    state = State(":memory:")
    synced(state, 3)
    state.id_maps.forget("things", "K000002")  # never linked: created
    src = FakeAPI().on("GET", "/v2/things", body=records(3))
    dst = FakeAPI().on("POST", "/v2/items", body={"data": {"id": 77}})

    summary = run_flow(state, SPEC, src, dst, full=True)

    assert (summary.created, summary.unchanged) == (1, 2)
    assert audit_rows(state) == [("r1", "K000002", "77", "create", "ok", 1),
                                 ("r1", None, None, "skip", "unchanged", 2)]
    dst.verify()


def test_runs_with_nothing_unchanged_write_no_summary_row() -> None:
    state = State(":memory:")
    src = FakeAPI().on("GET", "/v2/things", body=records(1))
    dst = FakeAPI().on("POST", "/v2/items", body={"data": {"id": 5}})
    run_flow(state, SPEC, src, dst, full=True)
    assert audit_rows(state) == [("r1", "K000000", "5", "create", "ok", 1)]


def test_the_summary_row_is_found_by_outcome_and_exported_with_its_count(tmp_path: Path) -> None:
    state = State(":memory:")
    state.audit.add([AuditRow("r1", "things", "A", "1", "create", "ok")])
    state.audit.add_unchanged("r1", "things", 41)
    [row] = state.audit.query(outcome="unchanged")
    assert (row["source_key"], row["count"], row["action"]) == (None, 41, "skip")
    out = tmp_path / "audit.csv"
    assert state.audit.export(out, "csv") == 2
    header, *lines = out.read_text().splitlines()
    assert "count" in header.split(",") and len(lines) == 2


@pytest.mark.duckdb_only  # measures the .duckdb file's size
def test_ten_unchanged_runs_of_10k_records_grow_the_state_file_by_a_few_kib(tmp_path: Path) -> None:
    """Bound: each run adds one summary row and one flow run row (well under 1 KiB); DuckDB grows its file in 256 KiB
    blocks and reuses the blocks a checkpoint frees, so ten runs may take at most one new block (measured: 0 bytes).
    Before, ten such runs added 6.25 MiB (one audit row per record per run)."""
    path = tmp_path / "state.duckdb"
    state = State(path)
    synced(state, 10_000)
    src = FakeAPI().on("GET", "/v2/things", body=records(10_000))
    run_flow(state, SPEC, src, FakeAPI(), full=True, run_id="r0")
    state.close()
    state = State(path)
    state.close()
    before = os.path.getsize(path)
    for run in range(1, 11):
        state = State(path)
        summary = run_flow(state, SPEC, src, FakeAPI(), full=True, run_id=f"r{run}")
        assert summary.unchanged == 10_000
        state.close()
    grown = os.path.getsize(path) - before
    state = State(path)
    assert len(state.audit.query(flow="things", limit=100)) == 11  # one summary row per run
    state.close()
    assert grown <= 256 * 1024, f"the state grew {grown} bytes over 10 unchanged runs"


@settings(max_examples=40, deadline=None)
@given(stored=st.dictionaries(st.text(min_size=1, max_size=6), st.tuples(st.text(max_size=4), st.none() | st.text()),
                              max_size=30),
       other=st.dictionaries(st.text(min_size=1, max_size=6), st.text(max_size=4), max_size=10),
       asked=st.lists(st.text(min_size=1, max_size=6), max_size=40))
def test_get_many_returns_what_the_plain_query_returns(stored: dict[str, tuple[str, str | None]],
                                                       other: dict[str, str], asked: list[str]) -> None:
    state = State(":memory:")
    state.id_maps.save("things", [(key, target, digest) for key, (target, digest) in stored.items()])
    state.id_maps.save("other", [(key, target, None) for key, target in other.items()])
    asked = asked + list(stored)[:5]
    plain = state.db.fetchall("SELECT source_key, target_id, payload_hash FROM id_map WHERE flow = 'things' AND "
                              "source_key IN (SELECT unnest(?::VARCHAR[]))", [asked])
    found = state.id_maps.get_many("things", asked)
    assert {k: (e.target_id, e.payload_hash) for k, e in found.items()} == {k: (t, h) for k, t, h in plain}
    state.close()


def plain(state: State, flow: str, keys: list[str]) -> dict[str, tuple[str, str | None]]:
    rows = state.db.fetchall("SELECT source_key, target_id, payload_hash FROM id_map WHERE flow = ? AND source_key IN "
                             "(SELECT unnest(?::VARCHAR[]))", [flow, keys])
    return {k: (t, h) for k, t, h in rows}


KEYS = st.sampled_from(["A", "B", "C", "D", "é", "K 1", ""])
DIGESTS = st.sampled_from(["h1", "h2", "h3"])
CHANGES = st.lists(st.one_of(
    st.tuples(st.just("save"), st.dictionaries(KEYS, st.tuples(st.sampled_from(["1", "2"]), DIGESTS | st.none()))),
    st.tuples(st.just("forget"), KEYS), st.tuples(st.just("unlink"), st.lists(KEYS)),
    st.tuples(st.just("forget_hashes"), st.lists(KEYS)), st.tuples(st.just("rolled_back"), KEYS)), max_size=6)


@settings(max_examples=60, deadline=None)
@example(stored={"A": ("1", "h1")}, changes=[("save", {"A": ("1", "h2")})], asked={"A": "h1"}, also=[])
@example(stored={"A": ("1", "h1")}, changes=[("forget", "A")], asked={"A": "h1"}, also=[])
@example(stored={"A": ("1", "h1")}, changes=[("forget_hashes", ["A"])], asked={"A": "h1"}, also=["A"])
@given(stored=st.dictionaries(KEYS, st.tuples(st.sampled_from(["1", "2"]), DIGESTS | st.none())), changes=CHANGES,
       asked=st.dictionaries(KEYS, DIGESTS), also=st.lists(KEYS, max_size=3))
def test_diff_with_fingerprints_says_what_the_plain_query_says(
        stored: dict[str, tuple[str, str | None]], changes: list[tuple[str, Any]], asked: dict[str, str],
        also: list[str]) -> None:
    """Fingerprints loaded, then links written, unlinked, forgotten (a write rolled back too) during the run."""
    from ml_connector.store.links import Links

    state = State(":memory:")
    state.id_maps.FINGERPRINT_MIN = state.id_maps.LOAD_AFTER_PAGES = 0  # at once, any size
    state.id_maps.save("things", [(k, t, h) for k, (t, h) in stored.items()])
    state.id_maps.save("other", [(k, "9", "h1") for k in stored])
    state.id_maps.diff("things", {"A": "h1"})  # loads the fingerprints
    assert state.db.fingerprints.flows["things"] is not None
    for change, arg in changes:
        if change == "save":
            state.id_maps.save("things", [(k, t, h) for k, (t, h) in arg.items()])
        elif change == "forget":
            state.id_maps.forget("things", arg)
        elif change == "unlink":
            Links(state.db).unlink("things", arg)
        elif change == "forget_hashes":
            state.id_maps.forget_hashes("things", arg)
        else:
            try:
                with state.db.transaction():
                    state.id_maps.save("things", [(arg, "3", "h2")])
                    raise RuntimeError("the page failed")
            except RuntimeError:
                pass
    same, entries = state.id_maps.diff("things", asked, also=also)
    truth = plain(state, "things", list(asked) + also)
    assert same == {k for k, d in asked.items() if k in truth and truth[k][1] == d}
    assert {k: (e.target_id, e.payload_hash) for k, e in entries.items()} == {
        k: v for k, v in truth.items() if k not in same or k in also}
    state.close()


def test_an_unchanged_page_costs_no_query_once_fingerprints_are_loaded() -> None:
    state = State(":memory:")
    state.id_maps.FINGERPRINT_MIN = state.id_maps.LOAD_AFTER_PAGES = 0
    synced(state, 50)
    digests = {f"K{i:06d}": content_hash({"name": f"n{i}"}) for i in range(50)}
    state.id_maps.diff("things", {})  # loads
    asked: list[Any] = []
    real = state.db.fetchall
    state.db.fetchall = lambda sql, params=None: asked.append(sql) or real(sql, params)  # type: ignore[method-assign]
    same, entries = state.id_maps.diff("things", digests)
    assert (same, entries, asked) == (set(digests), {}, [])
    same, entries = state.id_maps.diff("things", {**digests, "K000001": "other"})
    assert (len(same), list(entries), len(asked)) == (49, ["K000001"], 1)
    state.id_maps.release("things")
    assert "things" not in state.db.fingerprints.flows


def test_a_flow_run_drops_its_fingerprints_when_it_ends() -> None:
    state = State(":memory:")
    state.id_maps.FINGERPRINT_MIN = state.id_maps.LOAD_AFTER_PAGES = 0
    synced(state, 5)
    src = FakeAPI().on("GET", "/v2/things", body=records(5, changed={3: "new"}))
    dst = FakeAPI().on("POST", "/v2/items", body={"data": {"id": 77}})
    state.id_maps.forget("things", "K000003")
    summary = run_flow(state, SPEC, src, dst, full=True)
    assert (summary.unchanged, summary.created) == (4, 1)
    assert state.db.fingerprints.flows == {}


def test_fingerprints_load_only_after_a_few_pages_and_only_for_a_large_map() -> None:
    """A short incremental run keeps asking the database (loading scans the whole map once)."""
    state = State(":memory:")
    synced(state, 10)
    state.id_maps.LOAD_AFTER_PAGES = 2
    state.id_maps.FINGERPRINT_MIN = 11
    page = {"K000001": content_hash({"name": "n1"})}
    for _ in range(4):
        assert state.id_maps.diff("things", page) == ({"K000001"}, {})
    assert state.db.fingerprints.flows == {"things": None}  # 10 links: below the minimum, never loaded
    state.id_maps.release("things")
    state.id_maps.FINGERPRINT_MIN = 10
    for expected in (False, False, True):
        state.id_maps.diff("things", page)
        assert (state.db.fingerprints.flows.get("things") is not None) == expected


def test_a_full_read_of_a_large_map_loads_its_fingerprints_before_its_first_page() -> None:
    """Waiting a few pages suits a short incremental run; a full read reads every page. Its first pages' lookups
    scanned a million-link map whose keys the source lists in no order (each page's key range spans the map) and
    filled DuckDB's cache to the cap: the peak of an unchanged full run (issue 24, target 2)."""
    state = State(":memory:")
    synced(state, 5)
    state.id_maps.FINGERPRINT_MIN = 5
    seen = statements(state)
    summary = run_flow(state, SPEC, FakeAPI().on("GET", "/v2/things", body=records(5)), FakeAPI(), full=True)
    assert (summary.unchanged, seen) == (5, [])
    # incremental: a page's lookup asks, as before
    run_flow(state, SPEC, FakeAPI().on("GET", "/v2/things", body=records(5)), FakeAPI(), run_id="r2")
    assert len(seen) == 1


def pending_statements(state: State) -> list[str]:
    """Every statement on the pending table from now on, by its first word."""
    seen: list[str] = []
    db = state.db
    for name in ("fetchall", "fetchone", "execute"):
        real = getattr(db, name)

        def spy(sql: str, params: Any = None, real: Any = real) -> Any:
            if " pending" in sql:
                seen.append(sql.split()[0])
            return real(sql, params)
        setattr(db, name, spy)
    return seen


def test_a_page_asks_the_pending_table_once_and_clears_only_rows_that_exist() -> None:
    state = State(":memory:")
    synced(state, 3)
    src = FakeAPI().on("GET", "/v2/things", body=records(3))
    seen = pending_statements(state)
    run_flow(state, SPEC, src, FakeAPI(), full=True)
    assert seen == ["SELECT", "SELECT"]  # the parked records of the flow at the start; does the flow have any

    state.pending.park("things", "r1", [("K000001", "failed", {"code": "K000001"}, "HTTP 500")])
    seen.clear()
    run_flow(state, SPEC, src, FakeAPI(), full=True, run_id="r2")
    # at the start; the flow has some; the page's; K000001 is unchanged after all: its parked row goes
    assert seen == ["SELECT", "SELECT", "SELECT", "DELETE"]
    assert state.pending.list(flow="things") == []


def test_the_payload_listing_names_the_summary_row_by_its_count() -> None:
    from ml_connector.commands.audit_export import payload_lines

    state = State(":memory:")
    state.audit.add_unchanged("r1", "things", 12)
    [heading, body, _] = payload_lines(state.audit.query())
    assert heading.endswith("  things  (12 records) -> -  skip unchanged")
    assert body == "  (no payload stored; hash -)"


def statements(state: State) -> list[str]:
    """Every query on the id map from now on."""
    seen: list[str] = []
    real = state.db.fetchall

    def spy(sql: str, params: Any = None) -> Any:
        if "FROM id_map" in sql:
            seen.append(sql)
        return real(sql, params)
    state.db.fetchall = spy  # type: ignore[method-assign]
    return seen


def test_keys_the_map_never_held_cost_no_query_once_the_fingerprints_are_loaded() -> None:
    state = State(":memory:")
    synced(state, 3)
    state.db.fingerprints.flows["things"] = Fingerprints.load(state.db, "things")
    seen = statements(state)

    assert state.id_maps.get_many("things", ["NEW-1", "NEW-2"]) == {}
    assert seen == []
    assert set(state.id_maps.get_many("things", ["NEW-1", "K000002"])) == {"K000002"}  # a loaded key is asked for
    assert len(seen) == 1


def test_a_key_linked_after_the_load_is_asked_for_and_found() -> None:
    state = State(":memory:")
    synced(state, 3)
    state.db.fingerprints.flows["things"] = Fingerprints.load(state.db, "things")
    state.id_maps.save("things", [("NEW-1", "t-new", "h")])

    assert state.id_maps.get_many("things", ["NEW-1"])["NEW-1"].target_id == "t-new"
    Links(state.db).unlink("things", ["NEW-1"])
    assert state.id_maps.get_many("things", ["NEW-1"]) == {}


def test_a_write_rolled_back_after_the_load_leaves_its_key_asked_for() -> None:
    state = State(":memory:")
    synced(state, 3)
    state.db.fingerprints.flows["things"] = Fingerprints.load(state.db, "things")
    try:
        with state.db.transaction():
            state.id_maps.save("things", [("NEW-1", "t-new", "h")])
            raise RuntimeError("the page failed")
    except RuntimeError:
        pass
    seen = statements(state)

    assert state.id_maps.get_many("things", ["NEW-1"]) == {}
    assert len(seen) == 1  # never "certainly not linked" on the word of a write that did not happen


def test_a_key_holding_nul_does_not_hide_the_other_keys_of_a_lookup() -> None:
    """PostgreSQL stores NUL as U+FFFD, which sorts after "b": a ``BETWEEN min AND max`` bound made in Python would
    leave "b" out (store/key_range.py)."""
    state = State(":memory:")
    state.id_maps.save("things", [("b", "T-b", "h")])
    state.filtered.remember("things", ["b"], reason="why")
    assert ({k: (e.target_id, e.payload_hash) for k, e in state.id_maps.get_many("things", ["\0", "b"]).items()},
            state.filtered.reasons("things", ["\0", "b"])) == ({"b": ("T-b", "h")}, {"b": "why"})
    state.close()


@pytest.mark.duckdb_only  # DuckDB's storage layout
def test_a_state_file_stores_rows_in_small_row_groups_so_a_pages_key_range_skips_most_of_a_large_map(
        tmp_path: Path) -> None:
    """A page's lookup reads the row groups its key range touches: at DuckDB's default (122,880 rows) a page of
    1,000 keys read a whole group at 1M links against the whole 10k table (2.25x, issue 24 target 5)."""
    state = State(tmp_path / "state.duckdb")
    try:
        state.db.execute("INSERT INTO id_map (flow, source_key, target_id, payload_hash) SELECT 'f', 'K' || "
                         "lpad(i::VARCHAR, 8, '0'), i::VARCHAR, 'h' FROM range(50000) t(i) ORDER BY i")
        state.db.execute("CHECKPOINT")
        groups = state.db.fetchone("SELECT count(DISTINCT row_group_id) FROM pragma_storage_info('id_map')")
        assert groups == (7,)  # 50,000 rows in groups of 8,192
    finally:
        state.close()
    reopened = State(tmp_path / "state.duckdb")  # the size holds for what a later session writes too
    try:
        reopened.db.execute("INSERT INTO id_map (flow, source_key, target_id, payload_hash) SELECT 'g', 'K' || "
                            "lpad(i::VARCHAR, 8, '0'), i::VARCHAR, 'h' FROM range(50000) t(i) ORDER BY i")
        reopened.db.execute("CHECKPOINT")
        groups = reopened.db.fetchone("SELECT count(DISTINCT row_group_id) FROM pragma_storage_info('id_map')")
        assert groups is not None and groups[0] >= 13  # 100,000 rows (at DuckDB's default size: 1)
    finally:
        reopened.close()
