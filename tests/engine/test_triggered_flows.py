"""Triggered flows: the records a callback named are re-read by id and synced at once; the watermark stays.

Flow level: ``FlowRun.by_ids`` between two strict scripted APIs (exact request logs). Service level:
``run_triggered`` takes the inbox's pending ids to the flows whose `trigger` watches that entity, and marks them
done only once the flow recorded their records.
"""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from ml_connector.config import MappingConfig
from ml_connector.config.channel import CallbackConfig
from ml_connector.config.entity import EntityConfig
from ml_connector.events.active import ActiveChannel
from ml_connector.events.inbox import Inbox
from ml_connector.store import State
from ml_connector.sync.flow import FlowContext, FlowRun, FlowSummary
from ml_connector.sync.runner import Runner
from ml_connector.sync.triggered import run_triggered, triggered_flows
from ml_connector.transform.mapping import CompiledMapping
from ml_connector.workspace import Workspace
from tests.engine.configs import entity, mapping
from tests.engine.fakeapi import FakeAPI
from tests.engine.flowkit import NOW, client
from tests.pg import fresh_schema, postgres_url  # noqa: F401  (the session fixture)

SOURCE = entity({"key": "code", "read": {"path": "/things", "records": "data",
                                         "incremental": {"field": "updated", "param": "since"}},
                 "get": {"path": "/things/{{ id }}", "record": "data"}})
TARGET = entity({"key": "id", "write": {"strategy": "create_only",
                                        "create": {"method": "POST", "path": "/items", "id": "data.id"},
                                        "delete": {"method": "DELETE", "path": "/items/{{ target_id }}"}}})


def spec(**extra: Any) -> MappingConfig:
    return mapping({"flow": "things", "from": {"connection": "src", "entity": "thing"},
                    "to": {"connection": "dst", "entity": "item"}, "key": "code", "fields": {"name": "name"},
                    "trigger": {"channel": "changes"}, **extra})


def by_ids(state: State, config: MappingConfig, ids: list[str], source: FakeAPI, target: FakeAPI, *,
           source_entity: EntityConfig = SOURCE, run_id: str = "t1") -> FlowSummary:
    context = FlowContext(run_id=run_id, state=state, source=client(source, "src"), target=client(target, "dst"),
                          source_entity=source_entity, target_entity=TARGET, mapping=CompiledMapping(config),
                          known_flows={config.flow}, now=lambda: NOW)
    return asyncio.run(FlowRun(config, context).by_ids(ids))


def log(api: FakeAPI) -> list[tuple[str, str, Any]]:
    return [(r["method"], r["path"], json.loads(r["body"]) if r["body"] else r["params"]) for r in api.requests]


def thing(code: str, name: str) -> dict[str, Any]:
    return {"data": {"code": code, "name": name, "updated": "2026-03-01T11:00:00Z"}}


def test_the_trigger_key_is_typed() -> None:
    assert spec().trigger is not None and spec().trigger.channel == "changes"  # type: ignore[union-attr]
    assert mapping({"flow": "f", "from": {"connection": "a", "entity": "x"}, "to": {"connection": "b", "entity": "y"},
                    "key": "id", "fields": {"n": "n"}}).trigger is None


def test_named_records_are_read_by_id_and_synced_and_the_watermark_stays() -> None:
    state = State(":memory:")
    state.watermarks.set("things", "2026-01-01T00:00:00Z")
    src = FakeAPI().on("GET", "/v2/things/C1", 200, thing("C1", "Ann")).on("GET", "/v2/things/C2", 200,
                                                                          thing("C2", "Bob"))
    dst = FakeAPI().on("POST", "/v2/items", 201, {"data": {"id": 7}}).on("POST", "/v2/items", 201, {"data": {"id": 8}})
    summary = by_ids(state, spec(), ["C1", "C2"], src, dst)
    assert (summary.status, summary.read, summary.created) == ("ok", 2, 2)
    assert log(src) == [("GET", "/v2/things/C1", {}), ("GET", "/v2/things/C2", {})]
    assert log(dst) == [("POST", "/v2/items", {"name": "Ann"}), ("POST", "/v2/items", {"name": "Bob"})]
    assert state.id_maps.get_many("things", ["C1", "C2"])["C2"].target_id == "8"
    assert state.watermarks.get("things") == "2026-01-01T00:00:00Z"
    # the same notice again: read again, unchanged, nothing written
    src2 = FakeAPI().on("GET", "/v2/things/C1", 200, thing("C1", "Ann"))
    again = by_ids(state, spec(), ["C1"], src2, FakeAPI(), run_id="t2")
    assert (again.read, again.unchanged, again.created, again.updated) == (1, 1, 0, 0)


@pytest.mark.parametrize("status", [404, 204])
def test_a_record_gone_at_the_source_follows_on_delete(status: int) -> None:
    state = State(":memory:")
    state.id_maps.save("things", [("C1", "7", "h")])
    src = FakeAPI().on("GET", "/v2/things/C1", status, {"message": "no such record"} if status == 404 else None)
    dst = FakeAPI().on("DELETE", "/v2/items/7", 204)
    summary = by_ids(state, spec(on_delete="delete"), ["C1"], src, dst)
    assert (summary.status, summary.deleted, summary.delete_keys) == ("ok", 1, ["C1"])
    assert log(dst) == [("DELETE", "/v2/items/7", {})]
    assert state.id_maps.get_many("things", ["C1"]) == {}


def test_a_gone_record_of_a_flow_that_ignores_deletes_is_skipped_with_an_audit_row() -> None:
    state = State(":memory:")
    state.id_maps.save("things", [("C1", "7", "h")])
    src = FakeAPI().on("GET", "/v2/things/C1", 404, {"message": "no such record"})
    summary = by_ids(state, spec(), ["C1"], src, FakeAPI())
    assert (summary.status, summary.filtered, summary.deleted) == ("ok", 1, 0)
    rows = state.audit.query(flow="things", source_key="C1")
    assert [(r["action"], r["outcome"], r["note"]) for r in rows] == [
        ("filter", "filtered", "gone at the source (its get found no record); on_delete is ignore")]
    assert state.id_maps.get_many("things", ["C1"])["C1"].target_id == "7"


def test_a_flow_whose_source_has_no_get_fails_and_writes_nothing() -> None:
    no_get = entity({"key": "code", "read": {"path": "/things", "records": "data"}})
    summary = by_ids(State(":memory:"), spec(), ["C1"], FakeAPI(), FakeAPI(), source_entity=no_get)
    assert summary.status == "failed"
    assert summary.error is not None and "get" in summary.error


def test_a_record_the_target_refuses_is_parked() -> None:
    state = State(":memory:")
    src = FakeAPI().on("GET", "/v2/things/C1", 200, thing("C1", "Ann"))
    dst = FakeAPI().on("POST", "/v2/items", 422, {"message": "name is invalid"})
    summary = by_ids(state, spec(), ["C1"], src, dst)
    assert (summary.status, summary.failed) == ("ok", 1)
    assert [p.source_key for p in state.pending.list(flow="things")] == ["C1"]


# ---- echo suppression (two-way flows) -------------------------------------------------------------------------

THING2 = entity({"key": "code", "read": {"path": "/things", "records": "data"},
                 "get": {"path": "/things/{{ id }}", "record": "data"},
                 "write": {"strategy": "update_only",
                           "update": {"method": "PATCH", "path": "/things/{{ target_id }}", "id": "data.code"}}})
ITEM2 = entity({"key": "id", "read": {"path": "/items", "records": "data"},
                "get": {"path": "/items/{{ id }}", "record": "data"},
                "write": {"strategy": "create_only", "create": {"method": "POST", "path": "/items", "id": "data.id"}}})
A = mapping({"flow": "things_to_items", "from": {"connection": "src", "entity": "thing"},
             "to": {"connection": "dst", "entity": "item"}, "key": "code", "fields": {"ref": "code", "phone": "phone"},
             "reverse": "items_to_things", "trigger": {"channel": "changes"}})
B = mapping({"flow": "items_to_things", "from": {"connection": "dst", "entity": "item"},
             "to": {"connection": "src", "entity": "thing"}, "key": "id", "depends_on": ["things_to_items"],
             "target_id": "{{ lookup_source('things_to_items', id) }}", "fields": {"phone": "phone"},
             "reverse": "things_to_items"})


def _two_way(state: State, config: MappingConfig, reverse: MappingConfig, source: FakeAPI, target: FakeAPI,
             ids: list[str] | None, run_id: str) -> FlowSummary:
    src_entity, dst_entity = (THING2, ITEM2) if config is A else (ITEM2, THING2)
    context = FlowContext(run_id=run_id, state=state, source=client(source, config.source.connection),
                          target=client(target, config.target.connection), source_entity=src_entity,
                          target_entity=dst_entity, mapping=CompiledMapping(config), known_flows={A.flow, B.flow},
                          reverse=reverse, now=lambda: NOW)
    flow = FlowRun(config, context)
    return asyncio.run(flow.by_ids(ids) if ids is not None else flow.execute())


def test_a_notice_caused_by_our_own_write_writes_nothing_back() -> None:
    state = State(":memory:")
    # first: C1 becomes item 7 (A), and B reads item 7 back (nothing to write)
    _two_way(state, A, B, FakeAPI().on("GET", "/v2/things/C1", 200, {"data": {"code": "C1", "phone": "111"}}),
             FakeAPI().on("POST", "/v2/items", 201, {"data": {"id": 7}}), ["C1"], "r1")
    _two_way(state, B, A, FakeAPI().on("GET", "/v2/items", 200, {"data": [{"id": 7, "ref": "C1", "phone": "111"}]}),
             FakeAPI(), None, "r1")
    # the item's phone changes: B writes it to the thing; the source then calls back about C1 (our own write)
    b_src = FakeAPI().on("GET", "/v2/items", 200, {"data": [{"id": 7, "ref": "C1", "phone": "222"}]})
    b_dst = FakeAPI().on("PATCH", "/v2/things/C1", 200, {"data": {"code": "C1"}})
    assert _two_way(state, B, A, b_src, b_dst, None, "r2").updated == 1
    a_src = FakeAPI().on("GET", "/v2/things/C1", 200, {"data": {"code": "C1", "phone": "222"}})
    a_dst = FakeAPI()  # strict: any write back fails the test
    summary = _two_way(state, A, B, a_src, a_dst, ["C1"], "r3")
    assert (summary.status, summary.read, summary.echoes, summary.updated) == ("ok", 1, 1, 0)
    assert a_dst.requests == []


def test_a_triggered_read_tells_the_echo_guard_what_the_source_holds() -> None:
    state = State(":memory:")
    _two_way(state, A, B, FakeAPI().on("GET", "/v2/things/C1", 200, {"data": {"code": "C1", "phone": "111"}}),
             FakeAPI().on("POST", "/v2/items", 201, {"data": {"id": 7}}), ["C1"], "r1")
    # B's targets are A's sources: the triggered read noted thing C1 holds phone 111
    assert state.id_maps.target_values("items_to_things", ["C1"]) == {"C1": {"phone": "111"}}


# ---- the service level: inbox -> flows -> done ---------------------------------------------------------------

CONNECTOR = """\
connector: fake
base_url: http://api.test/v2
connection:
  secrets:
    key: {description: API key}
auth:
  key: {type: api_key, header: x-key, value: "{{ secrets.key }}"}
channels:
  changes:
    register: {method: POST, path: /watch, body: {id: "{{ channel.id }}", token: "{{ channel.token }}"}}
    callback: {verify: [{path: token, equals: channel.token}], ids: ids}
entities:
  thing:
    key: code
    read: {path: /things, records: data, incremental: {param: since, field: updated}}
    get: {path: "/things/{{ id }}", record: data}
    events: {channel: changes, names: [things.all]}
  item:
    key: id
    write:
      strategy: create_only
      create: {method: POST, path: /items, id: data.id}
"""
FLOW = """\
flow: things
from: {connection: api, entity: thing}
to: {connection: api, entity: item}
key: code
fields: {name: name}
trigger: {channel: changes}
"""
UNTRIGGERED = FLOW.replace("flow: things", "flow: others").replace("trigger: {channel: changes}\n", "")
CALLBACK = CallbackConfig(max_bytes=1024, verify=(), ids="ids", operation=None, answer_status=200, answer_body=None)


def channel(entity_name: str = "thing") -> ActiveChannel:
    return ActiveChannel(connection="api", channel="changes", entity=entity_name, channel_id="1", token="t" * 12,
                         expires_at=datetime(2026, 3, 8, tzinfo=UTC), callback=CALLBACK)


@pytest.fixture
def workspace(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Workspace:
    monkeypatch.setenv("FAKE_KEY", "k-123456")
    (tmp_path / "connectors").mkdir()
    (tmp_path / "mappings" / "pair").mkdir(parents=True)
    (tmp_path / "connectors" / "fake.yaml").write_text(CONNECTOR)
    (tmp_path / "mappings" / "pair" / "integration.yaml").write_text(
        "integration: pair\nconnections: {api: {connector: fake}}\nflows: [things.yaml, others.yaml]\n")
    (tmp_path / "mappings" / "pair" / "things.yaml").write_text(FLOW)
    (tmp_path / "mappings" / "pair" / "others.yaml").write_text(UNTRIGGERED)
    path = tmp_path / "workspace.yaml"
    path.write_text("state: state/state.duckdb\nintegrations: [mappings/pair]\nconnections:\n"
                    "  api: {connector: fake, secrets: {key: \"env:FAKE_KEY\"}}\n")
    return Workspace.open(path)


def tick(workspace: Workspace, inbox: Inbox, api: FakeAPI) -> Any:
    state = workspace.state()
    try:
        runner = Runner(workspace.project, state, transport=httpx.ASGITransport(app=api.app), now=lambda: NOW)
        return asyncio.run(run_triggered(runner, inbox))
    finally:
        state.close()


def test_only_flows_with_a_trigger_watch_their_source(workspace: Workspace) -> None:
    assert triggered_flows(workspace.project) == {("api", "thing"): ["things"]}


def test_pending_ids_run_their_flow_once_and_are_done_after_it_recorded_them(workspace: Workspace,
                                                                               tmp_path: Path) -> None:
    inbox = Inbox.open(tmp_path / "inbox")
    try:
        inbox.add(channel(), ["C1"], "update", NOW)
        inbox.add(channel("item"), ["99"], None, NOW)  # no flow is triggered by items: left alone
        api = FakeAPI().on("GET", "/v2/things/C1", 200, thing("C1", "Ann")).on("POST", "/v2/items", 201,
                                                                              {"data": {"id": 7}})
        summary = tick(workspace, inbox, api)
        assert summary is not None and summary.mode == "trigger" and summary.status == "ok"
        assert [f.flow for f in summary.flows] == ["things"]
        assert inbox.pending("api", "thing") == []
        assert [i.record_id for i in inbox.pending("api", "item")] == ["99"]
        assert tick(workspace, inbox, FakeAPI()) is None  # nothing pending: no run, no request
        state = workspace.state()
        try:
            assert state.id_maps.get_many("things", ["C1"])["C1"].target_id == "7"
            assert state.watermarks.get("things") is None
            assert [r["mode"] for r in state.runs.recent(5)] == ["trigger"]
        finally:
            state.close()
    finally:
        inbox.close()


def test_a_flow_that_fails_leaves_its_ids_pending(workspace: Workspace, tmp_path: Path) -> None:
    inbox = Inbox.open(tmp_path / "inbox")
    try:
        inbox.add(channel(), ["C1"], "update", NOW)
        api = FakeAPI().on("GET", "/v2/things/C1", 401, {"message": "bad key"})
        summary = tick(workspace, inbox, api)
        assert summary is not None and summary.status == "failed"
        assert [i.record_id for i in inbox.pending("api", "thing")] == ["C1"]
    finally:
        inbox.close()


def test_a_parked_record_is_done_it_is_parked(workspace: Workspace, tmp_path: Path) -> None:
    inbox = Inbox.open(tmp_path / "inbox")
    try:
        inbox.add(channel(), ["C1"], "update", NOW)
        api = FakeAPI().on("GET", "/v2/things/C1", 200, thing("C1", "Ann")).on("POST", "/v2/items", 422,
                                                                              {"message": "invalid"})
        summary = tick(workspace, inbox, api)
        assert summary is not None and summary.status == "partial"
        assert inbox.pending("api", "thing") == []
    finally:
        inbox.close()




@pytest.mark.parametrize("triggered_only", [False, True])
def test_a_triggered_only_replica_runs_what_callbacks_named_and_leaves_the_schedules(
        workspace: Workspace, tmp_path: Path, triggered_only: bool) -> None:
    """`serve --triggered-only` (a receiver replica beside `scheduler` and its workers): a tick runs the flows the
    inbox's ids trigger and no due flow; without it, the due flows run too."""
    import functools

    from ml_connector.events.service import Service

    for name in ("things", "others"):  # both flows scheduled, and due (never run)
        path = tmp_path / "mappings" / "pair" / f"{name}.yaml"
        path.write_text(path.read_text() + "schedule: every 15m\n")
    scheduled = Workspace.open(workspace.path)
    inbox = Inbox.open(tmp_path / "inbox")
    try:
        inbox.add(channel(), ["C1"], "update", NOW)
        api = FakeAPI().on("GET", "/v2/things/C1", 200, thing("C1", "Ann")).on("POST", "/v2/items", 201,
                                                                              {"data": {"id": 7}})
        if not triggered_only:  # the due flows read their source in full (nothing there)
            api.on("GET", "/v2/things", 200, {"data": []}).on("GET", "/v2/things", 200, {"data": []})
        service = Service(scheduled, 1.0, triggered_only=triggered_only,
                          make_runner=functools.partial(Runner, transport=httpx.ASGITransport(app=api.app),
                                                        now=lambda: NOW))
        asyncio.run(service._ticks(True, inbox))
        reads = [(method, path) for method, path, _ in log(api) if method == "GET"]
        assert reads == ([("GET", "/v2/things/C1")] if triggered_only else
                         [("GET", "/v2/things"), ("GET", "/v2/things"), ("GET", "/v2/things/C1")])
        assert inbox.pending("api", "thing") == []
        state = scheduled.state()
        try:
            assert sorted(r["mode"] for r in state.runs.recent(5)) == (
                ["trigger"] if triggered_only else ["run", "trigger"])
        finally:
            state.close()
    finally:
        inbox.close()


def test_a_triggered_only_serve_with_nothing_to_receive_is_refused(workspace: Workspace) -> None:
    from click.testing import CliRunner

    from ml_connector.cli import main

    result = CliRunner().invoke(main, ["serve", "--once", "--triggered-only", "-w", str(workspace.path)])
    assert result.exit_code != 0 and result.exception is not None and not isinstance(result.exception, TypeError)
    assert "serve --triggered-only runs only the flows callbacks and change streams trigger: give --listen" in (
        result.output)


def test_replicas_on_a_shared_state_take_the_inbox_one_at_a_time(workspace: Workspace, tmp_path: Path,
                                                                 postgres_url: str) -> None:  # noqa: F811
    """A replica runs the shared inbox's ids, marks them done and only then lets another replica look: before, a
    second replica could read the ids while the first ran them and run them again once the flow's lease was free
    (one more read of each record; seen in tests/e2e/test_serve_receiver.py)."""
    import functools

    from ml_connector.events.service import INBOX_LEASE, Service
    from ml_connector.events.shared_inbox import open_inbox
    from ml_connector.store.flow_locks import FlowLocks

    workspace.path.write_text(workspace.path.read_text().replace(
        "state: state/state.duckdb", f"state: {{postgresql: '{postgres_url}', schema: {fresh_schema(postgres_url)}}}"))
    shared = Workspace.open(workspace.path)
    inbox = open_inbox(shared.state_target, shared.state_path)
    state = shared.state()
    try:
        inbox.add(channel(), ["C1"], "update", NOW)
        assert FlowLocks(state.db).take(INBOX_LEASE, "serve other-host:1", ttl=30)  # another replica has the inbox

        def tick(api: FakeAPI) -> None:
            service = Service(shared, 1.0, inbox_wait=0.3, make_runner=functools.partial(
                Runner, transport=httpx.ASGITransport(app=api.app), now=lambda: NOW))
            asyncio.run(service._ticks(True, inbox))

        tick(FakeAPI())  # strict: not one request
        assert [item.record_id for item in inbox.pending("api", "thing")] == ["C1"]
        FlowLocks(state.db).release(INBOX_LEASE, "serve other-host:1")
        api = FakeAPI().on("GET", "/v2/things/C1", 200, thing("C1", "Ann")).on("POST", "/v2/items", 201,
                                                                              {"data": {"id": 7}})
        tick(api)
        assert log(api) == [("GET", "/v2/things/C1", {}), ("POST", "/v2/items", {"name": "Ann"})]
        assert inbox.pending("api", "thing") == [] and FlowLocks(state.db).holder(INBOX_LEASE) is None
    finally:
        state.close()
        inbox.close()
