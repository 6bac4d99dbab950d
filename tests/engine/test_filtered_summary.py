"""Filtered records (issue 24, target 6): a record gets its own `filter` audit row the first time it is filtered (and
again after it was processed otherwise); filtered again with nothing new, it is counted into one summary row per flow
run (source_key NULL, ``count`` N), like the unchanged records. Strict scripted APIs, exact rows and statements."""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner

from ml_connector.cli import main
from ml_connector.spec import load_workspace
from ml_connector.store import State
from ml_connector.sync.flow import FlowContext, FlowRun, FlowSummary
from ml_connector.sync.runner import Runner
from ml_connector.transform.mapping import CompiledMapping
from ml_connector.workspace import Workspace
from tests.engine.configs import mapping
from tests.engine.fakeapi import FakeAPI
from tests.engine.flowkit import SOURCE, TARGET, client, flow_spec, run_flow
from tests.engine.test_deletes import FLAG, page
from tests.engine.test_deletes import run as run_deletes
from tests.engine.tiny_workspace import write_workspace

SPEC = flow_spec({"name": "name"}, filter="name != 'skip'")
NEVER_LINKED = "deleted at the source; never linked"


def thing(code: str, name: str, updated: str = "2026-03-01T11:00:00Z") -> dict[str, Any]:
    return {"code": code, "name": name, "updated": updated}


def rows(state: State, run_id: str) -> list[tuple[Any, ...]]:
    found = state.audit.query(run_id=run_id, flow="things", limit=1000)
    return sorted(((r["source_key"], r["action"], r["outcome"], r["count"], r["note"]) for r in found), key=str)


def remembered(state: State) -> list[tuple[Any, ...]]:
    return state.db.fetchall("SELECT flow, source_key FROM filtered ORDER BY flow, source_key")


def plan(state: State, src: FakeAPI, run_id: str) -> FlowSummary:
    config = mapping(SPEC)
    context = FlowContext(run_id=run_id, state=state, source=client(src, "src"), target=client(FakeAPI(), "dst"),
                          source_entity=SOURCE, target_entity=TARGET, mapping=CompiledMapping(config),
                          known_flows={"things"}, dry_run=True)
    return asyncio.run(FlowRun(config, context).execute())


def test_a_record_filtered_again_is_counted_into_one_summary_row() -> None:
    state = State(":memory:")
    src = FakeAPI().on("GET", "/v2/things", body={"data": [thing("A", "a"), thing("F", "skip")]})
    dst = FakeAPI().on("POST", "/v2/items", body={"data": {"id": 7}})

    first = run_flow(state, SPEC, src, dst, run_id="r1")
    second = run_flow(state, SPEC, src, dst, run_id="r2")

    assert (first.created, first.filtered, second.unchanged, second.filtered) == (1, 1, 1, 1)
    assert len(dst.calls("POST")) == 1
    assert rows(state, "r1") == [("A", "create", "ok", 1, None), ("F", "filter", "filtered", 1, None)]
    assert rows(state, "r2") == [(None, "filter", "filtered", 1, None), (None, "skip", "unchanged", 1, None)]
    assert remembered(state) == [("things", "F")]
    [own] = state.audit.query(source_key="F")  # --key F still finds its first filter row
    assert (own["run_id"], own["outcome"]) == ("r1", "filtered")


def test_a_record_that_passed_the_filter_in_between_gets_its_own_row_again() -> None:
    state = State(":memory:")
    src = FakeAPI().on("GET", "/v2/things", body={"data": [thing("F", "skip")]})
    src.on("GET", "/v2/things", body={"data": [thing("F", "f", "2026-03-01T11:01:00Z")]})
    src.on("GET", "/v2/things", body={"data": [thing("F", "skip", "2026-03-01T11:02:00Z")]})
    dst = FakeAPI().on("POST", "/v2/items", body={"data": {"id": 7}})

    for run_id in ("r1", "r2", "r3"):
        run_flow(state, SPEC, src, dst, run_id=run_id)

    assert rows(state, "r1") == [("F", "filter", "filtered", 1, None)]
    assert rows(state, "r2") == [("F", "create", "ok", 1, None)]
    assert rows(state, "r3") == [("F", "filter", "filtered", 1, None)]
    assert remembered(state) == [("things", "F")]


def test_a_record_processed_otherwise_is_forgotten() -> None:
    state = State(":memory:")
    src = FakeAPI().on("GET", "/v2/things", body={"data": [thing("F", "skip")]})
    src.on("GET", "/v2/things", body={"data": [thing("F", "f", "2026-03-01T11:01:00Z")]})
    dst = FakeAPI().on("POST", "/v2/items", status=422, body={"error": "no"})
    run_flow(state, SPEC, src, dst, run_id="r1")
    assert remembered(state) == [("things", "F")]
    summary = run_flow(state, SPEC, src, dst, run_id="r2")
    assert summary.failed == 1
    assert remembered(state) == []  # parked now: filtered later, that is new again


def test_a_flagged_record_never_linked_is_filtered_once_then_summarised_with_its_note() -> None:
    state = State(":memory:")
    src = FakeAPI().on("GET", "/v2/things", body=page(
        {"code": "C", "name": "c", "updated": "2026-03-01T11:00:00Z", "deleted": True}))

    first = run_deletes(state, "delete", FLAG, src, FakeAPI(), run_id="r1")
    second = run_deletes(state, "delete", FLAG, src, FakeAPI(), run_id="r2")

    assert (first.filtered, second.filtered) == (1, 1)
    assert rows(state, "r1") == [("C", "filter", "filtered", 1, NEVER_LINKED)]
    assert rows(state, "r2") == [(None, "filter", "filtered", 1, NEVER_LINKED)]
    assert remembered(state) == [("things", "C")]


def test_a_record_flagged_deleted_then_filtered_by_the_flow_gets_its_own_row() -> None:
    """Filtered for another reason is something new to say."""
    state = State(":memory:")
    src = FakeAPI().on("GET", "/v2/things", body=page(
        {"code": "C", "name": "skip", "updated": "2026-03-01T11:00:00Z", "deleted": True}))
    src.on("GET", "/v2/things", body=page(
        {"code": "C", "name": "skip", "updated": "2026-03-01T11:01:00Z", "deleted": False}))
    run_deletes(state, "delete", FLAG, src, FakeAPI(), run_id="r1")
    run_flow(state, SPEC, src, FakeAPI(), run_id="r2")
    assert rows(state, "r2") == [("C", "filter", "filtered", 1, None)]


def test_a_filtered_record_with_a_note_keeps_a_row_of_its_own() -> None:
    state = State(":memory:")
    src = FakeAPI().on("GET", "/v2/things", body={"data": [thing("F", "skip")]})
    src.on("GET", "/v2/things", body={"data": [thing("F", "skip", "2026-03-01T13:00:00Z")]})  # after the read began
    src.on("GET", "/v2/things", body={"data": [thing("F", "skip", "2026-03-01T11:00:00Z")]})

    for run_id in ("r1", "r2", "r3"):
        run_flow(state, SPEC, src, FakeAPI(), run_id=run_id)

    assert rows(state, "r1") == [("F", "filter", "filtered", 1, None)]
    [(key, action, outcome, count, note)] = rows(state, "r2")
    assert (key, action, outcome, count) == ("F", "filter", "filtered", 1)
    assert note is not None and note.startswith("future-stamped")
    assert rows(state, "r3") == [(None, "filter", "filtered", 1, None)]


def test_a_plan_writes_nothing() -> None:
    state = State(":memory:")
    src = FakeAPI().on("GET", "/v2/things", body={"data": [thing("F", "skip")]})

    planned = plan(state, src, "p1")
    assert planned.filtered == 1
    assert (state.audit.query(limit=100), remembered(state)) == ([], [])

    run_flow(state, SPEC, src, FakeAPI(), run_id="r1")
    planned = plan(state, src, "p2")
    assert planned.filtered == 1
    assert rows(state, "p2") == [] and remembered(state) == [("things", "F")]


def test_pruning_a_records_filter_row_forgets_it_so_its_next_filtering_has_a_row_again() -> None:
    state = State(":memory:")
    src = FakeAPI().on("GET", "/v2/things", body={"data": [thing("F", "skip")]})
    run_flow(state, SPEC, src, FakeAPI(), run_id="r1")
    state.db.execute("UPDATE audit SET logged_at = now() - INTERVAL '100 days'")
    state.db.execute("UPDATE filtered SET filtered_at = now() - INTERVAL '100 days'")

    assert state.audit.prune(90) == 1
    assert remembered(state) == []
    run_flow(state, SPEC, src, FakeAPI(), run_id="r2")
    assert rows(state, "r2") == [("F", "filter", "filtered", 1, None)]


def filtered_statements(state: State) -> list[str]:
    """Every statement on the filtered table from now on, by its first word."""
    seen: list[str] = []
    db = state.db
    for name in ("fetchall", "fetchone", "execute", "insert_rows", "fetch_in_chunks"):
        real = getattr(db, name)

        def spy(sql: str, *args: Any, real: Any = real, **kwargs: Any) -> Any:
            if sql == "filtered" or re.search(r"(FROM|INTO) filtered\b", sql):
                seen.append(sql.split()[0])
            return real(sql, *args, **kwargs)
        setattr(db, name, spy)
    return seen


def test_a_flow_without_filtered_records_asks_the_table_once_per_run_and_a_page_at_most_once() -> None:
    state = State(":memory:")
    src = FakeAPI().on("GET", "/v2/things", body={"data": [thing("A", "a"), thing("B", "b")]})
    dst = FakeAPI().on("POST", "/v2/items", body={"data": {"id": 7}})
    seen = filtered_statements(state)
    run_flow(state, SPEC, src, dst, run_id="r1")
    assert seen == ["SELECT"]  # has the flow any? no: no query per page

    src = FakeAPI().on("GET", "/v2/things", body={"data": [thing("A", "a"), thing("F", "skip")]})
    seen.clear()
    run_flow(state, SPEC, src, dst, run_id="r2")
    assert seen == ["SELECT", "filtered"]  # has any (no); F remembered (an insert)

    seen.clear()
    run_flow(state, SPEC, src, dst, run_id="r3")
    # has any (yes); its rows loaded once as fingerprints: F filtered again as before and A never filtered cost no
    # query of their own
    assert seen == ["SELECT", "SELECT"]


@pytest.fixture
def key_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAKE_KEY", "k-123456")
    monkeypatch.delenv("ML_CONNECTOR_KEY", raising=False)


@pytest.mark.usefixtures("key_env")
def test_audit_outcome_filtered_shows_the_summary_row_with_its_count(tmp_path: Path) -> None:
    workspace = write_workspace(tmp_path)  # its flow filters every record out
    project = load_workspace(workspace)
    api = FakeAPI().on("GET", "/v2/things", body={"data": [{"id": 1, "name": "a", "updated": "2026-02-01T00:00:00Z"},
                                                           {"id": 2, "name": "b", "updated": "2026-02-01T00:00:00Z"}]})
    for _ in range(2):
        state = Workspace.open(workspace).state()
        try:
            summary = asyncio.run(Runner(project, state, transport=httpx.ASGITransport(app=api.app)).run())
        finally:
            state.close()
        assert summary.flows[0].filtered == 2

    result = CliRunner().invoke(main, ["audit", "-w", str(workspace), "--outcome", "filtered", "--json"])
    assert result.exit_code == 0, result.output
    listed = [(r["source_key"], r["action"], r["outcome"], r["count"]) for r in json.loads(result.output)]
    assert sorted(listed, key=str) == [("1", "filter", "filtered", 1), ("2", "filter", "filtered", 1),
                                       (None, "filter", "filtered", 2)]
    listing = CliRunner().invoke(main, ["audit", "-w", str(workspace), "--outcome", "filtered", "--payload"])
    assert listing.exit_code == 0, listing.output
    assert sum(line.endswith("  things  (2 records) -> -  filter filtered") for line in listing.output.splitlines()) \
        == 1
    by_key = CliRunner().invoke(main, ["audit", "-w", str(workspace), "--key", "1", "--json"])
    assert [(r["source_key"], r["outcome"]) for r in json.loads(by_key.output)] == [("1", "filtered")]
