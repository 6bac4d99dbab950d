"""Two-way flows: a change made on one side costs exactly one write, and nothing is written back (no echoes).

Side S lists /things (key `code`), side D lists /items (key `id`). Flow A (things -> items) writes ref, name and
phone; flow B (items -> things) writes the phone back onto the thing A's id map pairs it with. Each test run is A
then B (B depends on A), against fresh strict APIs scripted for that run only, and asserts both request logs.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from ml_connector.config import MappingConfig
from ml_connector.store import State
from ml_connector.sync.flow import FlowContext, FlowRun, FlowSummary
from ml_connector.transform.mapping import CompiledMapping
from tests.engine.configs import entity, mapping
from tests.engine.fakeapi import FakeAPI
from tests.engine.flowkit import NOW, client

THING = entity({"key": "code", "read": {"path": "/things", "records": "data",
                                        "incremental": {"field": "updated", "param": "since"}},
                "write": {"strategy": "update_only",
                          "update": {"method": "PATCH", "path": "/things/{{ target_id }}", "id": "data.code"}}})
ITEM = entity({"key": "id", "read": {"path": "/items", "records": "data",
                                     "incremental": {"field": "updated", "param": "since"}},
               "write": {"strategy": "search_then_write",
                         "search": {"path": "/items/search", "params": {"ref": "{{ match.value }}"},
                                    "records": "data"},
                         "create": {"method": "POST", "path": "/items", "id": "data.id"},
                         "update": {"method": "PATCH", "path": "/items/{{ target_id }}", "id": "data.id"}}})

A = mapping({"flow": "things_to_items", "from": {"connection": "src", "entity": "thing"},
             "to": {"connection": "dst", "entity": "item"}, "key": "code", "match": {"target": "ref"},
             "fields": {"ref": "code", "name": "name", "phone": "phone"}, "reverse": "items_to_things"})
B = mapping({"flow": "items_to_things", "from": {"connection": "dst", "entity": "item"},
             "to": {"connection": "src", "entity": "thing"}, "key": "id", "depends_on": ["things_to_items"],
             "target_id": "{{ lookup_source('things_to_items', id) }}", "fields": {"phone": "phone"},
             "reverse": "things_to_items"})


def thing(code: str, name: str, phone: str, minute: int) -> dict[str, Any]:
    return {"code": code, "name": name, "phone": phone, "updated": f"2026-03-01T10:{minute:02d}:00Z"}


def item(id_: int, ref: str, name: str, phone: str, minute: int) -> dict[str, Any]:
    return {"id": id_, "ref": ref, "name": name, "phone": phone, "updated": f"2026-03-01T11:{minute:02d}:00Z"}


def _flow(state: State, run_id: str, config: MappingConfig, reverse: MappingConfig, source: FakeAPI,
          target: FakeAPI, *, dry_run: bool = False) -> FlowSummary:
    src_entity, dst_entity = (THING, ITEM) if config is A else (ITEM, THING)
    context = FlowContext(run_id=run_id, state=state, source=client(source, config.source.connection),
                          target=client(target, config.target.connection), source_entity=src_entity,
                          target_entity=dst_entity, mapping=CompiledMapping(config), known_flows={A.flow, B.flow},
                          reverse=reverse, dry_run=dry_run, now=lambda: NOW)
    return asyncio.run(FlowRun(config, context).execute())


def run(state: State, run_id: str, src: FakeAPI, dst: FakeAPI, *,
        dry_run: bool = False) -> tuple[FlowSummary, FlowSummary]:
    """One run: A (things -> items), then B (items -> things)."""
    return (_flow(state, run_id, A, B, src, dst, dry_run=dry_run),
            _flow(state, run_id, B, A, dst, src, dry_run=dry_run))


def log(api: FakeAPI) -> list[tuple[str, str, Any]]:
    """Each request: method, path, and its query (reads) or JSON body (writes)."""
    return [(r["method"], r["path"], json.loads(r["body"]) if r["body"] else r["params"]) for r in api.requests]


def reads(things: list[dict[str, Any]], items: list[dict[str, Any]]) -> tuple[FakeAPI, FakeAPI]:
    return FakeAPI().on("GET", "/v2/things", 200, {"data": things}), FakeAPI().on("GET", "/v2/items", 200,
                                                                                  {"data": items})


def first_run(state: State) -> None:
    """Two things become two items; B reads them back and writes nothing (the things hold those phones)."""
    src, dst = reads([thing("C1", "Ann", "111", 0), thing("C2", "Bob", "222", 0)],
                     [item(11, "C1", "Ann", "111", 0), item(12, "C2", "Bob", "222", 0)])
    dst.on("GET", "/v2/items/search", 200, {"data": []})
    dst.on("POST", "/v2/items", 200, {"data": {"id": 11}}).on("POST", "/v2/items", 200, {"data": {"id": 12}})
    a, b = run(state, "r1", src, dst)
    assert log(src) == [("GET", "/v2/things", {})]  # no write back
    assert log(dst) == [("GET", "/v2/items/search", {"ref": "C1"}), ("GET", "/v2/items/search", {"ref": "C2"}),
                        ("POST", "/v2/items", {"ref": "C1", "name": "Ann", "phone": "111"}),
                        ("POST", "/v2/items", {"ref": "C2", "name": "Bob", "phone": "222"}),
                        ("GET", "/v2/items", {})]
    assert (a.created, b.read, b.echoes, b.updated, b.unchanged) == (2, 2, 2, 0, 0)


def test_the_first_run_writes_one_way_and_nothing_back() -> None:
    state = State(":memory:")
    first_run(state)
    src, dst = reads([], [])  # a run later: nothing changed, nothing is written
    a, b = run(state, "r2", src, dst)
    assert log(src) == [("GET", "/v2/things", {"since": "2026-03-01T10:00:00Z"})]
    assert log(dst) == [("GET", "/v2/items", {"since": "2026-03-01T11:00:00Z"})]
    rows = state.db.fetchall("SELECT flow, source_key, target_id, action, outcome FROM audit WHERE outcome = 'echo' "
                             "ORDER BY source_key")
    assert rows == [("items_to_things", "11", "C1", "skip", "echo"), ("items_to_things", "12", "C2", "skip", "echo")]


def test_a_change_on_side_a_costs_one_write_to_b_and_none_back_over_several_runs() -> None:
    state = State(":memory:")
    first_run(state)
    src, dst = reads([thing("C1", "Ann", "333", 5)], [item(11, "C1", "Ann", "333", 5)])  # B reads A's write
    dst.on("PATCH", "/v2/items/11", 200, {"data": {"id": 11}})
    a, b = run(state, "r2", src, dst)
    assert log(src) == [("GET", "/v2/things", {"since": "2026-03-01T10:00:00Z"})]
    assert log(dst) == [("PATCH", "/v2/items/11", {"ref": "C1", "name": "Ann", "phone": "333"}),
                        ("GET", "/v2/items", {"since": "2026-03-01T11:00:00Z"})]
    assert (a.updated, b.echoes, b.updated) == (1, 1, 0)
    for run_id in ("r3", "r4"):  # runs later: nothing either way (A re-reads its record within its lookback)
        src, dst = reads([thing("C1", "Ann", "333", 5)], [])
        a, b = run(state, run_id, src, dst)
        assert [m for m, _, _ in log(src) + log(dst)] == ["GET", "GET"]
        assert (a.unchanged, b.read) == (1, 0)


def test_a_change_on_side_b_costs_one_write_to_a_and_none_back_over_several_runs() -> None:
    state = State(":memory:")
    first_run(state)
    src, dst = reads([], [item(12, "C2", "Bob", "444", 7)])
    src.on("PATCH", "/v2/things/C2", 200, {"data": {"code": "C2"}})
    a, b = run(state, "r2", src, dst)
    assert log(src) == [("GET", "/v2/things", {"since": "2026-03-01T10:00:00Z"}),
                        ("PATCH", "/v2/things/C2", {"phone": "444"})]
    assert log(dst) == [("GET", "/v2/items", {"since": "2026-03-01T11:00:00Z"})]
    assert (b.updated, b.echoes) == (1, 0)
    # A reads B's write to C2 on the next run: the item already holds it, so nothing goes back.
    src, dst = reads([thing("C2", "Bob", "444", 8)], [])
    a, b = run(state, "r3", src, dst)
    assert log(src) == [("GET", "/v2/things", {"since": "2026-03-01T10:00:00Z"})]
    assert log(dst) == [("GET", "/v2/items", {"since": "2026-03-01T11:07:00Z"})]
    assert (a.read, a.echoes, a.updated, b.read) == (1, 1, 0, 0)
    src, dst = reads([], [])  # and a run later still nothing
    a, b = run(state, "r4", src, dst)
    assert [m for m, _, _ in log(src) + log(dst)] == ["GET", "GET"]


def test_both_sides_changed_the_flow_that_runs_first_wins() -> None:
    """A conflict (the same record changed on both sides between runs): A runs first, its whole payload is
    written, and B then reads A's value back as an echo. B's change is overwritten (documented)."""
    state = State(":memory:")
    first_run(state)
    src, dst = reads([thing("C1", "Ann", "555", 9)], [item(11, "C1", "Ann", "555", 9)])
    dst.on("PATCH", "/v2/items/11", 200, {"data": {"id": 11}})  # the item held 666 before A's write
    a, b = run(state, "r2", src, dst)
    assert log(src) == [("GET", "/v2/things", {"since": "2026-03-01T10:00:00Z"})]
    assert log(dst) == [("PATCH", "/v2/items/11", {"ref": "C1", "name": "Ann", "phone": "555"}),
                        ("GET", "/v2/items", {"since": "2026-03-01T11:00:00Z"})]
    assert (a.updated, b.echoes, b.updated) == (1, 1, 0)


def test_what_a_flow_wrote_replaces_what_its_reverse_read_earlier() -> None:
    """A wrote 777 to item 11 after B had read 111 there; C1 going back to 111 is a real change, not an echo."""
    state = State(":memory:")
    first_run(state)
    src, dst = reads([thing("C1", "Ann", "777", 5)], [])  # B does not read item 11 again in this run
    dst.on("PATCH", "/v2/items/11", 200, {"data": {"id": 11}})
    run(state, "r2", src, dst)
    src, dst = reads([thing("C1", "Ann", "111", 6)], [])
    dst.on("PATCH", "/v2/items/11", 200, {"data": {"id": 11}})
    a, _ = run(state, "r3", src, dst)
    assert log(src) == [("GET", "/v2/things", {"since": "2026-03-01T10:05:00Z"})]
    assert log(dst) == [("PATCH", "/v2/items/11", {"ref": "C1", "name": "Ann", "phone": "111"}),
                        ("GET", "/v2/items", {"since": "2026-03-01T11:00:00Z"})]
    assert (a.updated, a.echoes) == (1, 0)


def test_plan_counts_echoes_and_changes_nothing() -> None:
    state = State(":memory:")
    first_run(state)
    src, dst = reads([thing("C1", "Ann", "333", 5)], [])  # A writes 333 to item 11; B does not meet it yet
    dst.on("PATCH", "/v2/items/11", 200, {"data": {"id": 11}})
    run(state, "r2", src, dst)
    src, dst = reads([], [item(11, "C1", "Ann", "333", 7), item(12, "C2", "Bob", "999", 7)])
    a, b = run(state, "p1", src, dst, dry_run=True)
    assert (b.read, b.echoes, b.updated) == (2, 1, 1)  # 11 holds A's write: an echo; 12 changed on side D
    assert [m for m, _, _ in log(src) + log(dst)] == ["GET", "GET"]
    assert state.db.fetchall("SELECT count(*) FROM audit WHERE run_id = 'p1'") == [(0,)]
