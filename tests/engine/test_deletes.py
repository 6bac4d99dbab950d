"""Deletes (issue 18, case 8): a source tells deletions by a flag, an endpoint or absence from a full read; the flow's
`on_delete` clears the link or deletes the target record, with one audit row per delete. Strict scripted APIs."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import datetime
from typing import Any

import pytest

from ml_connector.report import run_table
from ml_connector.store import State
from ml_connector.sync.flow import FlowContext, FlowRun, FlowSummary
from ml_connector.sync.runner import RunSummary
from ml_connector.transform.mapping import CompiledMapping, content_hash
from tests.engine.configs import entity, mapping
from tests.engine.fakeapi import FakeAPI
from tests.engine.flowkit import NOW, client

READ = {"path": "/things", "records": "data", "incremental": {"field": "updated", "param": "since"}}
FLAG = {"flag": "deleted == `true`"}
ENDPOINT = {"read": {"path": "/things/deleted", "records": "data", "key": "code",
                     "incremental": {"param": "deleted_since", "field": "deleted_at"}}}
TARGET = entity({"key": "id", "write": {
    "strategy": "update_only", "update": {"method": "PATCH", "path": "/items/{{ target_id }}", "id": "data.id"},
    "delete": {"method": "DELETE", "path": "/items/{{ target_id }}"}}})
STORED = "2026-03-01T10:00:00Z"  # a watermark: the flow's read is incremental unless `full`


def source(deletes: dict[str, Any]) -> Any:
    return entity({"key": "code", "read": READ, "deletes": deletes})


def spec(on_delete: str, **source: Any) -> dict[str, Any]:
    return {"flow": "things", "from": {"connection": "src", "entity": "thing", **source},
            "to": {"connection": "dst", "entity": "item"}, "key": "code", "fields": {"name": "name"},
            "on_delete": on_delete}


def linked(state: State, *pairs: tuple[str, str], stored: str | None = STORED) -> None:
    """Source keys linked to target ids, each last pushed as {"name": <key lower-cased>}."""
    state.id_maps.save("things", [(key, target, content_hash({"name": key.lower()})) for key, target in pairs])
    if stored:
        state.watermarks.set("things", stored)


def run(state: State, on_delete: str, deletes: dict[str, Any], src: FakeAPI, dst: FakeAPI, *, full: bool = False,
        dry_run: bool = False, replay: list[dict[str, Any]] | None = None, run_id: str = "r1",
        now: Callable[[], datetime] = lambda: NOW, **source_parts: Any) -> FlowSummary:
    config = mapping(spec(on_delete, **source_parts))
    context = FlowContext(run_id=run_id, state=state, source=client(src, "src"), target=client(dst, "dst"),
                          source_entity=source(deletes), target_entity=TARGET, mapping=CompiledMapping(config),
                          known_flows={"things"}, full=full, dry_run=dry_run, now=now)
    flow = FlowRun(config, context)
    return asyncio.run(flow.replay(replay) if replay is not None else flow.execute())


def links(state: State) -> dict[str, str]:
    keys = ("A", "B", "C", "D")
    return {k: e.target_id for k, e in state.id_maps.get_many("things", keys).items()}


def audit(state: State) -> list[tuple[Any, ...]]:
    rows = state.audit.query(flow="things", limit=100)
    return sorted(((r["source_key"], r["target_id"], r["action"], r["outcome"]) for r in rows), key=str)


def calls(api: FakeAPI) -> list[tuple[str, str]]:
    return [(c["method"], c["path"]) for c in api.requests]


def page(*records: dict[str, Any]) -> dict[str, Any]:
    return {"data": list(records)}


# ---- (a) a deleted flag in the records read --------------------------------------------------------------------

@pytest.mark.parametrize("on_delete", ["delete", "clear"])
def test_a_flagged_record_deletes_or_clears_its_target_and_is_never_written(on_delete: str) -> None:
    state = State(":memory:")
    linked(state, ("A", "7"), ("B", "8"))
    src = FakeAPI().on("GET", "/v2/things", body=page(
        {"code": "A", "name": "changed", "updated": "2026-03-01T11:00:00Z", "deleted": True},
        {"code": "B", "name": "b", "updated": "2026-03-01T11:00:01Z", "deleted": False}))
    dst = FakeAPI()
    if on_delete == "delete":
        dst.on("DELETE", "/v2/items/7", body={"data": {"id": 7}})

    summary = run(state, on_delete, FLAG, src, dst)

    assert calls(src) == [("GET", "/v2/things")]
    assert calls(dst) == ([("DELETE", "/v2/items/7")] if on_delete == "delete" else [])
    assert (summary.status, summary.read, summary.unchanged, summary.updated) == ("ok", 2, 1, 0)
    assert (summary.deleted, summary.cleared, summary.delete_keys) == (
        (1, 0, ["A"]) if on_delete == "delete" else (0, 1, ["A"]))
    assert links(state) == {"B": "8"}
    assert audit(state) == [("A", "7", on_delete, "ok"), (None, None, "skip", "unchanged")]
    assert state.watermarks.get("things") == "2026-03-01T11:00:01Z"


def test_a_flagged_record_never_linked_is_filtered_not_created() -> None:
    state = State(":memory:")
    linked(state)
    src = FakeAPI().on("GET", "/v2/things", body=page(
        {"code": "C", "name": "c", "updated": "2026-03-01T11:00:00Z", "deleted": True}))
    summary = run(state, "delete", FLAG, src, FakeAPI())
    assert (summary.filtered, summary.deleted, summary.delete_keys) == (1, 0, [])
    assert audit(state) == [("C", None, "filter", "filtered")]


def test_a_flag_alone_keeps_no_deleted_key_for_the_rest_of_the_run() -> None:
    """Keys deleted in a run are kept so that a later signal of the same run (the endpoint, absence) skips them; with
    a flag alone there is none, and a first sync of a million records kept 40,000 keys to the end (issue 24, target
    2)."""
    state = State(":memory:")
    linked(state, ("A", "7"))
    src = FakeAPI().on("GET", "/v2/things", body=page(
        {"code": "A", "name": "a", "updated": "2026-03-01T11:00:00Z", "deleted": True},
        {"code": "C", "name": "c", "updated": "2026-03-01T11:00:01Z", "deleted": True}))
    config = mapping(spec("clear"))
    context = FlowContext(run_id="r1", state=state, source=client(src, "src"), target=client(FakeAPI(), "dst"),
                          source_entity=source(FLAG), target_entity=TARGET, mapping=CompiledMapping(config),
                          known_flows={"things"}, now=lambda: NOW)
    flow = FlowRun(config, context)

    summary = asyncio.run(flow.execute())

    assert (summary.cleared, summary.filtered, flow.deletes.handled) == (1, 1, set())


def test_with_on_delete_ignore_a_flag_changes_nothing() -> None:
    state = State(":memory:")
    linked(state, ("A", "7"))
    src = FakeAPI().on("GET", "/v2/things", body=page(
        {"code": "A", "name": "a2", "updated": "2026-03-01T11:00:00Z", "deleted": True}))
    dst = FakeAPI().on("PATCH", "/v2/items/7", body={"data": {"id": 7}})
    summary = run(state, "ignore", FLAG, src, dst)
    assert calls(dst) == [("PATCH", "/v2/items/7")]
    assert (summary.updated, summary.deleted) == (1, 0)


# ---- (b) a deleted-records endpoint ----------------------------------------------------------------------------

@pytest.mark.parametrize("on_delete", ["delete", "clear"])
def test_b_the_deleted_records_endpoint_is_read_incrementally_after_the_flows_read(on_delete: str) -> None:
    state = State(":memory:")
    linked(state, ("A", "7"), ("B", "8"))
    src = (FakeAPI().on("GET", "/v2/things", body=page())
           .on("GET", "/v2/things/deleted", body=page({"code": "A", "deleted_at": "2026-03-01T11:30:00Z"},
                                                      {"code": "Z", "deleted_at": "2026-03-01T11:31:00Z"}))
           .on("GET", "/v2/things/deleted", body=page()))
    dst = FakeAPI()
    if on_delete == "delete":
        dst.on("DELETE", "/v2/items/7", status=404, body={"error": "not found"})  # already gone counts as deleted

    first = run(state, on_delete, ENDPOINT, src, dst)
    second = run(state, on_delete, ENDPOINT, src, dst, run_id="r2")

    assert [(c["path"], c["params"]) for c in src.requests] == [
        ("/v2/things", {"since": STORED}), ("/v2/things/deleted", {}),
        ("/v2/things", {"since": STORED}), ("/v2/things/deleted", {"deleted_since": "2026-03-01T11:31:00Z"})]
    assert calls(dst) == ([("DELETE", "/v2/items/7")] if on_delete == "delete" else [])
    assert (first.deleted + first.cleared, first.delete_keys, second.deleted + second.cleared) == (1, ["A"], 0)
    assert links(state) == {"B": "8"}
    assert audit(state) == [("A", "7", on_delete, "ok")]


# ---- (c) absence from a full read ------------------------------------------------------------------------------

ABSENT = {"absent": {"max_share": 0.5}}


@pytest.mark.parametrize("on_delete", ["delete", "clear"])
def test_c_a_linked_record_missing_from_a_complete_full_read_is_deleted(on_delete: str) -> None:
    state = State(":memory:")
    linked(state, ("A", "7"), ("B", "8"))
    src = FakeAPI().on("GET", "/v2/things", body=page({"code": "B", "name": "b", "updated": "2026-03-01T11:00:00Z"}))
    dst = FakeAPI()
    if on_delete == "delete":
        dst.on("DELETE", "/v2/items/7", body={"data": {"id": 7}})

    summary = run(state, on_delete, ABSENT, src, dst, full=True)

    assert [(c["path"], c["params"]) for c in src.requests] == [("/v2/things", {})]
    assert calls(dst) == ([("DELETE", "/v2/items/7")] if on_delete == "delete" else [])
    assert (summary.deleted + summary.cleared, summary.delete_keys, summary.unchanged) == (1, ["A"], 1)
    assert links(state) == {"B": "8"}
    assert audit(state) == [("A", "7", on_delete, "ok"), (None, None, "skip", "unchanged")]


def test_c_no_delete_is_inferred_from_an_incremental_or_a_failed_read() -> None:
    state = State(":memory:")
    linked(state, ("A", "7"), ("B", "8"))
    src = (FakeAPI().on("GET", "/v2/things", body=page({"code": "B", "name": "b", "updated": "2026-03-01T11:00:00Z"}))
           .on("GET", "/v2/things", status=500, body={"error": "down"}))
    incremental = run(state, "delete", ABSENT, src, FakeAPI())
    failed = run(state, "delete", ABSENT, src, FakeAPI(), full=True, run_id="r2")
    assert [c["params"] for c in src.requests] == [{"since": STORED}, {}]
    assert (incremental.status, incremental.deleted, failed.status, failed.deleted) == ("ok", 0, "failed", 0)
    assert links(state) == {"A": "7", "B": "8"}


def test_c_no_delete_is_inferred_from_a_full_read_filtered_by_from_params() -> None:
    state = State(":memory:")
    linked(state, ("A", "7"), ("B", "8"))
    src = (FakeAPI().on("GET", "/v2/things", body=page({"code": "B", "name": "b", "updated": "2026-03-01T11:00:00Z"}))
           .on("GET", "/v2/things/deleted", body=page()))
    summary = run(state, "delete", {**ABSENT, **ENDPOINT}, src, FakeAPI(), full=True, params={"kind": "big"})
    assert [(c["path"], c["params"]) for c in src.requests] == [("/v2/things", {"kind": "big"}),
                                                                ("/v2/things/deleted", {})]
    assert (summary.status, summary.deleted, summary.delete_refused) == ("ok", 0, 0)
    assert links(state) == {"A": "7", "B": "8"}


def test_c_a_mass_delete_is_refused_and_parked_until_replayed() -> None:
    state = State(":memory:")
    linked(state, ("A", "7"), ("B", "8"), ("C", "9"), ("D", "10"))
    src = FakeAPI().on("GET", "/v2/things", body=page({"code": "D", "name": "d", "updated": "2026-03-01T11:00:00Z"}))
    dst = FakeAPI()

    summary = run(state, "delete", ABSENT, src, dst, full=True)

    assert calls(dst) == []
    assert (summary.deleted, summary.delete_refused, summary.delete_keys) == (0, 3, [])
    [row] = state.audit.query(flow="things", source_key="A")
    assert row["error"].startswith("mass delete refused: 3 of 4 linked records (75%) are missing from the full read")
    assert links(state) == {"A": "7", "B": "8", "C": "9", "D": "10"}
    assert audit(state) == [("A", "7", "delete", "parked"), ("B", "8", "delete", "parked"),
                            ("C", "9", "delete", "parked"), (None, None, "skip", "unchanged")]
    parked = state.pending.list(flow="things")
    assert [p.source_key for p in parked] == ["A", "B", "C"]

    again = run(state, "delete", ABSENT, src, dst, run_id="r2")  # an ordinary run does not apply them
    assert (again.deleted, again.waiting) == (0, 3)

    for target in ("7", "8", "9"):
        dst.on("DELETE", f"/v2/items/{target}", body={"data": {"id": int(target)}})
    replayed = run(state, "delete", ABSENT, FakeAPI(), dst, replay=[p.record for p in parked], run_id="r3")
    assert calls(dst) == [("DELETE", "/v2/items/7"), ("DELETE", "/v2/items/8"), ("DELETE", "/v2/items/9")]
    assert (replayed.deleted, replayed.delete_keys) == (3, ["A", "B", "C"])
    assert links(state) == {"D": "10"} and state.pending.list(flow="things") == []


# ---- outcomes and plan -----------------------------------------------------------------------------------------

def test_a_delete_of_unknown_outcome_is_parked_not_counted_and_checked_again() -> None:
    state = State(":memory:")
    linked(state, ("A", "7"))
    src = (FakeAPI().on("GET", "/v2/things", body=page(
        {"code": "A", "name": "a", "updated": "2026-03-01T11:00:00Z", "deleted": True}))
           .on("GET", "/v2/things", body=page()))
    dst = (FakeAPI().on("DELETE", "/v2/items/7", status=503, body={"error": "busy"})
           .on("DELETE", "/v2/items/7", status=404, body={"error": "not found"}))

    first = run(state, "delete", FLAG, src, dst)
    assert (first.deleted, first.failed, first.delete_keys) == (0, 1, [])
    assert links(state) == {"A": "7"}
    [parked] = state.pending.list(flow="things")
    assert parked.outcome_unknown and parked.next_attempt is not None

    later = parked.next_attempt.replace(tzinfo=NOW.tzinfo)
    second = run(state, "delete", FLAG, src, dst, run_id="r2", now=lambda: later)
    assert calls(dst) == [("DELETE", "/v2/items/7"), ("DELETE", "/v2/items/7")]
    assert (second.deleted, second.failed, second.retried_pending) == (1, 0, 1)
    assert links(state) == {} and state.pending.list(flow="things") == []
    assert audit(state) == [("A", "7", "delete", "ok"), ("A", "7", "delete", "unknown")]


def test_a_parked_delete_is_dropped_once_the_flow_says_ignore() -> None:
    state = State(":memory:")
    linked(state, ("A", "7"))
    state.pending.park("things", "r0", [("A", "failed", {"$deleted": "A"}, "HTTP 409")])
    summary = run(state, "ignore", FLAG, FakeAPI().on("GET", "/v2/things", body=page()), FakeAPI())
    assert (summary.retried_pending, summary.filtered, summary.deleted) == (1, 1, 0)
    assert links(state) == {"A": "7"} and state.pending.list(flow="things") == []
    [row] = state.audit.query(flow="things")
    assert (row["action"], row["note"]) == ("filter", "a parked delete dropped: the flow's on_delete is ignore")


def test_plan_counts_and_names_the_deletes_without_calling_the_target() -> None:
    state = State(":memory:")
    linked(state, ("A", "7"), ("B", "8"))
    src = FakeAPI().on("GET", "/v2/things", body=page(
        {"code": "A", "name": "a", "updated": "2026-03-01T11:00:00Z", "deleted": True}))
    summary = run(state, "delete", FLAG, src, FakeAPI(), dry_run=True)
    assert (summary.deleted, summary.delete_keys) == (1, ["A"])
    assert links(state) == {"A": "7", "B": "8"} and audit(state) == []


def test_the_run_table_names_what_was_deleted_and_what_was_refused() -> None:
    summary = RunSummary("r1", "plan", [FlowSummary("items", deleted=2, delete_keys=["A", "B"]),
                                        FlowSummary("orgs", cleared=1, delete_refused=3, delete_keys=["X"])])
    data = summary.as_dict()
    assert (data["totals"]["deleted"], data["totals"]["cleared"], data["totals"]["delete_refused"]) == (2, 1, 3)
    lines = run_table(data, plan=True).splitlines()
    assert lines[-4:] == [
        "  items: would be 2 target record(s) deleted (deleted at the source: A, B)",
        "  orgs: would be 1 link(s) cleared (deleted at the source: X)",
        "  orgs: 3 delete(s) refused as a mass delete and parked (audit rows say why; `ml-connector replay --flow "
        "orgs` applies them)",
        "run r1: partial"]
