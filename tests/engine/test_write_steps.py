"""Follow-up steps of a write (`write.then`): a record counts as written only when every step succeeded; a failed
step parks it naming the step, and the next run (or a replay) sends only that step and the ones after it, never
the confirmed main write again (issue 18, case 5)."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner

from ml_connector.cli import main
from ml_connector.connection import Connection
from ml_connector.http.client import ConnectorClient
from ml_connector.http.errors import FatalError
from ml_connector.http.writer import EntityWriter, PushAborted, PushItem, PushResult
from ml_connector.store import State
from ml_connector.sync.flow import FlowContext, FlowRun, _Mapped
from ml_connector.transform.mapping import content_hash
from tests.engine import configs
from tests.engine.configs import connector, entity
from tests.engine.fakeapi import FakeAPI
from tests.engine.flowkit import NOW, bodies, flow_spec
from tests.engine.test_client import API_KEY, make_client
from tests.engine.test_late_writes import NOTHING_NEW, run

SET_PARENT = {"name": "set_parent", "method": "PUT", "path": "/items/{{ target_id }}/parent",
              "body": {"parent": "{{ record.parent }}"}}
MOVABLE = entity({"key": "id", "write": {
    "strategy": "update_only", "update": {"method": "PATCH", "path": "/items/{{ target_id }}", "id": "data.id"},
    "then": [SET_PARENT]}})
SPEC = flow_spec({"code": "code", "name": "name", "parent": "parent"})
CHILD = {"code": "C1", "name": "child", "parent": "P2", "updated": "2026-03-01T10:00:00Z"}
MAPPED = {"code": "C1", "name": "child", "parent": "P2"}


def sent(api: FakeAPI) -> list[tuple[str, str]]:
    return [(c["method"], c["path"]) for c in api.requests]


def test_a_moved_child_whose_parent_step_fails_is_parked_and_only_the_step_is_sent_again() -> None:
    state = State(":memory:")
    state.id_maps.save("things", [("C1", "7", "old-hash")])
    target = FakeAPI().on("PATCH", "/v2/items/7", 200, {"data": {"id": 7}})
    target.on("PUT", "/v2/items/7/parent", 422, {"error": "parent P2 is locked"})
    summary = run(state, FakeAPI().on("GET", "/v2/things", 200, {"data": [CHILD]}), target,
                  target_entity=MOVABLE, spec=SPEC)
    assert sent(target) == [("PATCH", "/v2/items/7"), ("PUT", "/v2/items/7/parent")]
    assert bodies(target, "PUT") == [{"parent": "P2"}]
    assert (summary.status, summary.updated, summary.failed) == ("ok", 0, 1)  # fields updated, parent not: not written
    [parked] = state.pending.list(flow="things")
    assert parked.reason == "step set_parent: PUT /v2/items/7/parent -> HTTP 422: parent P2 is locked"
    entry = state.id_maps.get_many("things", ["C1"])["C1"]
    assert entry.target_id == "7" and entry.payload_hash != content_hash(MAPPED)  # still dirty

    again = FakeAPI().on("PUT", "/v2/items/7/parent", 200, {"data": {"id": 7}})
    summary = run(state, FakeAPI().on("GET", "/v2/things", 200, NOTHING_NEW), again, target_entity=MOVABLE,
                  spec=SPEC, run_id="r2")
    assert sent(again) == [("PUT", "/v2/items/7/parent")]  # the confirmed update is not sent again
    assert (summary.updated, summary.failed, summary.retried_pending) == (1, 0, 1)
    assert state.pending.list(flow="things") == []
    assert state.id_maps.get_many("things", ["C1"])["C1"].payload_hash == content_hash(MAPPED)



ATTACH_LINE = {"name": "attach_line", "method": "POST", "path": "/items/{{ target_id }}/lines",
               "body": {"sku": "{{ record.code }}"}}
CREATE_WITH_LINE = entity({"key": "id", "write": {
    "strategy": "create_only", "create": {"method": "POST", "path": "/items", "id": "data.id"},
    "then": [ATTACH_LINE]}})
LINES = flow_spec({"code": "code", "name": "name"})
A = {"code": "A", "name": "a", "updated": "2026-03-01T10:00:00Z"}


def test_a_created_record_whose_step_fails_is_never_created_again() -> None:
    state = State(":memory:")
    target = FakeAPI().on("POST", "/v2/items", 201, {"data": {"id": 8}})
    target.on("POST", "/v2/items/8/lines", 409, {"error": "line locked"})
    summary = run(state, FakeAPI().on("GET", "/v2/things", 200, {"data": [A]}), target,
                  target_entity=CREATE_WITH_LINE, spec=LINES)
    assert sent(target) == [("POST", "/v2/items"), ("POST", "/v2/items/8/lines")]
    assert (summary.created, summary.failed) == (0, 1)
    [row] = state.audit.query(run_id="r1")
    assert (row["action"], row["outcome"], row["target_id"]) == ("park", "failed", "8")
    assert row["error"] == "step attach_line: POST /v2/items/8/lines -> HTTP 409: line locked"

    again = FakeAPI().on("POST", "/v2/items/8/lines", 201, {"data": {"id": 80}})
    summary = run(state, FakeAPI().on("GET", "/v2/things", 200, NOTHING_NEW), again,
                  target_entity=CREATE_WITH_LINE, spec=LINES, run_id="r2")
    assert sent(again) == [("POST", "/v2/items/8/lines")]  # a second create would duplicate the record
    assert bodies(again) == [{"sku": "A"}]
    assert (summary.created, summary.updated, summary.failed) == (0, 1, 0)
    assert state.id_maps.get_many("things", ["A"])["A"].payload_hash == content_hash({"code": "A", "name": "a"})


def test_a_record_changed_since_its_step_failed_is_written_again_in_full() -> None:
    state = State(":memory:")
    state.id_maps.save("things", [("C1", "7", "old-hash")])
    target = FakeAPI().on("PATCH", "/v2/items/7", 200, {"data": {"id": 7}})
    target.on("PUT", "/v2/items/7/parent", 422, {"error": "parent P2 is locked"})
    run(state, FakeAPI().on("GET", "/v2/things", 200, {"data": [CHILD]}), target, target_entity=MOVABLE, spec=SPEC)

    moved_again = {**CHILD, "parent": "P3", "updated": "2026-03-01T11:00:00Z"}
    again = FakeAPI().on("PATCH", "/v2/items/7", 200, {"data": {"id": 7}})
    again.on("PUT", "/v2/items/7/parent", 200, {"data": {"id": 7}})
    summary = run(state, FakeAPI().on("GET", "/v2/things", 200, {"data": [moved_again]}), again,
                  target_entity=MOVABLE, spec=SPEC, run_id="r2")
    assert sent(again) == [("PATCH", "/v2/items/7"), ("PUT", "/v2/items/7/parent")]
    assert bodies(again, "PUT") == [{"parent": "P3"}]
    assert (summary.updated, summary.failed) == (1, 0) and state.pending.list(flow="things") == []


SEARCHED_WITH_LINE = entity({"key": "id", "write": {
    "strategy": "search_then_write",
    "search": {"path": "/items/search", "params": {"code": "{{ match.value }}"}, "records": "data"},
    "create": {"method": "POST", "path": "/items", "id": "data.id"},
    "update": {"method": "PATCH", "path": "/items/{{ target_id }}", "id": "data.id"},
    "then": [{**ATTACH_LINE, "when": "action == 'create'"}]}})


def test_a_step_whose_when_does_not_hold_is_not_sent() -> None:
    state = State(":memory:")
    state.id_maps.save("things", [("B", "5", "old-hash")])
    b = {"code": "B", "name": "b", "updated": "2026-03-01T10:00:00Z"}
    target = FakeAPI().on("GET", "/v2/items/search", 200, {"data": []})  # A only: the id map knows B
    target.on("POST", "/v2/items", 201, {"data": {"id": 8}})
    target.on("POST", "/v2/items/8/lines", 201, {"data": {"id": 80}})
    target.on("PATCH", "/v2/items/5", 200, {"data": {"id": 5}})
    summary = run(state, FakeAPI().on("GET", "/v2/things", 200, {"data": [A, b]}), target,
                  target_entity=SEARCHED_WITH_LINE, spec=flow_spec({"code": "code", "name": "name"},
                                                                   match={"target": "code"}))
    assert sorted(sent(target)) == [("GET", "/v2/items/search"), ("PATCH", "/v2/items/5"), ("POST", "/v2/items"),
                                    ("POST", "/v2/items/8/lines")]  # the update of B has no line step
    assert (summary.created, summary.updated, summary.failed) == (1, 1, 0)


LOST = {"error": "bad gateway"}
CHECKED_LINE = entity({"key": "id", "get": {"path": "/items/{{ id }}", "record": "data"}, "write": {
    "strategy": "create_only", "create": {"method": "POST", "path": "/items", "id": "data.id"},
    "then": [{**ATTACH_LINE, "expect": {"line": "{{ record.code }}"}}]}})


def test_a_step_whose_answer_is_lost_is_read_back_and_counts_only_when_it_landed() -> None:
    state = State(":memory:")
    target = FakeAPI().on("POST", "/v2/items", 201, {"data": {"id": 8}})
    target.on("POST", "/v2/items/8/lines", 502, LOST)
    target.on("GET", "/v2/items/8", 200, {"data": {"id": 8, "code": "A", "line": "A"}})  # it did land
    summary = run(state, FakeAPI().on("GET", "/v2/things", 200, {"data": [A]}), target,
                  target_entity=CHECKED_LINE, spec=LINES)
    assert sent(target) == [("POST", "/v2/items"), ("POST", "/v2/items/8/lines"), ("GET", "/v2/items/8")]
    assert (summary.created, summary.failed) == (1, 0)


def test_a_step_read_back_without_what_it_leaves_is_sent_again_within_the_budget() -> None:
    state = State(":memory:")
    target = FakeAPI().on("POST", "/v2/items", 201, {"data": {"id": 8}})
    target.on("POST", "/v2/items/8/lines", 502, LOST).on("POST", "/v2/items/8/lines", 201, {"data": {"id": 80}})
    target.on("GET", "/v2/items/8", 200, {"data": {"id": 8, "code": "A"}})  # not there: it never landed
    summary = run(state, FakeAPI().on("GET", "/v2/things", 200, {"data": [A]}), target,
                  target_entity=CHECKED_LINE, spec=LINES)
    assert sent(target) == [("POST", "/v2/items"), ("POST", "/v2/items/8/lines"), ("GET", "/v2/items/8"),
                            ("POST", "/v2/items/8/lines")]
    assert (summary.created, summary.failed) == (1, 0)
    [row] = state.audit.query(run_id="r1")
    assert (row["action"], row["outcome"], row["attempts"]) == ("create", "ok", 2)


def test_a_lost_step_nothing_can_read_back_is_parked_and_sent_again_only_by_a_replay() -> None:
    state = State(":memory:")
    target = FakeAPI().on("POST", "/v2/items", 201, {"data": {"id": 8}})
    target.on("POST", "/v2/items/8/lines", 502, LOST)
    summary = run(state, FakeAPI().on("GET", "/v2/things", 200, {"data": [A]}), target,
                  target_entity=CREATE_WITH_LINE, spec=LINES)
    assert sent(target) == [("POST", "/v2/items"), ("POST", "/v2/items/8/lines")]  # never counted, never re-sent
    assert (summary.created, summary.failed) == (0, 1)
    [parked] = state.pending.list(flow="things")
    assert parked.outcome_unknown and parked.reason == (
        "step attach_line: outcome unknown: POST /v2/items/8/lines -> HTTP 502: bad gateway")

    later = FakeAPI()  # after the grace period: a second line could be a duplicate, so a person checks first
    summary = run(state, FakeAPI().on("GET", "/v2/things", 200, NOTHING_NEW), later, target_entity=CREATE_WITH_LINE,
                  spec=LINES, now=NOW + timedelta(days=1), run_id="r2")
    assert later.requests == [] and summary.failed == 1
    assert state.pending.list(flow="things")[0].reason == (
        "step attach_line: outcome unknown (an earlier attempt may have landed) and nothing can read it back: "
        "check the target, then replay it")

    replayed = FakeAPI().on("POST", "/v2/items/8/lines", 201, {"data": {"id": 80}})
    summary = run(state, FakeAPI(), replayed, target_entity=CREATE_WITH_LINE, spec=LINES, now=NOW + timedelta(days=1),
                  run_id="r3", replay=[parked.record])
    assert sent(replayed) == [("POST", "/v2/items/8/lines")]  # the create is not sent again
    assert (summary.updated, summary.failed) == (1, 0) and state.pending.list(flow="things") == []


class CancelOnWire(httpx.AsyncBaseTransport):
    """Serves the scripted API; a request to ``path`` cancels the push (a stop signal) while it is on the wire and
    is answered ``answer_after`` seconds later (None: never)."""

    def __init__(self, api: FakeAPI, path: str, answer_after: float | None) -> None:
        self.inner = httpx.ASGITransport(app=api.app)
        self.path, self.answer_after = path, answer_after
        self.task: asyncio.Task[Any] | None = None

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if request.url.path == self.path and self.task is not None:
            self.task.cancel()
            self.task = None
            await (asyncio.Event().wait() if self.answer_after is None else asyncio.sleep(self.answer_after))
        return await self.inner.handle_async_request(request)


def stopped_push(api: FakeAPI, path: str, answer_after: float | None, codes: str) -> list[tuple[Any, ...]]:
    """Push records ``codes`` one call at a time to CREATE_WITH_LINE, stopped while ``path`` is on the wire."""
    transport = CancelOnWire(api, path, answer_after)
    config = connector({"connector": "dst", "base_url": "http://dst.test/v2", "retries": 0,
                        "limits": {"stop_grace": 0.3}})
    client = ConnectorClient(Connection("dst", config, {}, {}, None), State(":memory:").credentials,
                             transport=transport)
    writer = EntityWriter(client, "item", CREATE_WITH_LINE, match_field=None, concurrency=1)

    async def go() -> list[PushResult]:
        transport.task = asyncio.current_task()
        with pytest.raises(PushAborted) as caught:
            await writer.push([PushItem(code, {"code": code}) for code in codes])
        return caught.value.results

    return sorted((r.item.source_key, r.action, r.target_id, r.error, r.unknown, r.step) for r in asyncio.run(go()))


def test_a_step_on_the_wire_when_the_run_stops_is_answered_within_the_grace_and_counted() -> None:
    api = FakeAPI().on("POST", "/v2/items", 201, {"data": {"id": 8}})
    api.on("POST", "/v2/items/8/lines", 201, {"data": {"id": 80}})
    assert stopped_push(api, "/v2/items/8/lines", 0.05, "A") == [("A", "create", "8", None, False, None)]


def test_a_step_unanswered_at_the_stop_and_steps_not_yet_sent_keep_the_confirmed_target_id() -> None:
    api = FakeAPI().on("POST", "/v2/items", 201, {"data": {"id": 8}}).on("POST", "/v2/items", 201, {"data": {"id": 9}})
    assert stopped_push(api, "/v2/items/8/lines", None, "AB") == [
        ("A", "create", "8", "step attach_line: outcome unknown: the run was stopped with this write in flight (no "
                             "answer within the connector's limits.stop_grace, 0.3 s)", True, "attach_line"),
        ("B", "create", "9", "step attach_line: not sent: the push stopped before this step", False, "attach_line")]


BROKEN = """\
connector: dst
base_url: http://dst.test
auth: {key: {type: api_key, header: x-key, value: k-literal}}
entities:
  item:
    key: id
    write:
      strategy: create_only
      create: {method: POST, path: /items, id: data.id}
      then:
        - {name: attach_line, method: POST, path: "/items/{{ target_id }}/lines"}
        - name: attach_line
          method: PUT
          path: "/items/{{ target_id }}/parent"
          quota: parents
          expect: {parent: "{{ record.parent }}"}
        - {name: Set-Owner, method: PUT, path: /owner, when: "record.owner !="}
"""


def test_validate_names_each_step_mistake_with_file_and_line(tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "dst.yaml").write_text(BROKEN)
    result = CliRunner().invoke(main, ["validate", "dst.yaml"])
    assert result.exit_code == 1
    assert result.output.splitlines() == [
        "dst.yaml:12: entities.item.write.then[1].name: step name 'attach_line' is used twice: a parked record names "
        "the step it still needs",
        "dst.yaml:15: entities.item.write.then[1].quota: unknown quota 'parents' (none defined)",
        "dst.yaml:16: entities.item.write.then[1].expect: needs the entity's get operation: a step whose answer is "
        "lost is read back by it",
        "dst.yaml:17: entities.item.write.then[2].name: 'Set-Owner' does not match ^[a-z][a-z0-9_]*$",
        "dst.yaml:17: entities.item.write.then[2].when: invalid JMESPath: incomplete expression",
        "1 file, 5 problems"]


DOC_EXAMPLE = entity({"key": "id", "get": {"path": "/items/{{ id }}", "record": "data"}, "write": {
    "strategy": "update_only",
    "update": {"method": "PATCH", "path": "/items/{{ target_id }}", "id": "data.id", "fetch_existing": True},
    "then": [{**SET_PARENT, "when": "record.parent != existing.parent", "expect": {"parent": "{{ record.parent }}"}}]}})


def test_the_documented_example_moves_only_the_child_whose_parent_changed() -> None:
    state = State(":memory:")
    state.id_maps.save("things", [("C1", "7", "old-hash"), ("C2", "9", "old-hash")])
    stayed = {"code": "C2", "name": "renamed", "parent": "P1", "updated": "2026-03-01T10:00:00Z"}
    target = FakeAPI()
    target.on("GET", "/v2/items/7", 200, {"data": {"id": 7, "name": "child", "parent": "P1"}})
    target.on("GET", "/v2/items/9", 200, {"data": {"id": 9, "name": "c2", "parent": "P1"}})
    target.on("PATCH", "/v2/items/7", 200, {"data": {"id": 7}}).on("PATCH", "/v2/items/9", 200, {"data": {"id": 9}})
    target.on("PUT", "/v2/items/7/parent", 200, {"data": {"id": 7}})
    summary = run(state, FakeAPI().on("GET", "/v2/things", 200, {"data": [CHILD, stayed]}), target,
                  target_entity=DOC_EXAMPLE, spec=SPEC)
    assert sorted(sent(target)) == [("GET", "/v2/items/7"), ("GET", "/v2/items/9"), ("PATCH", "/v2/items/7"),
                                    ("PATCH", "/v2/items/9"), ("PUT", "/v2/items/7/parent")]
    assert bodies(target, "PUT") == [{"parent": "P2"}]
    assert (summary.updated, summary.failed) == (2, 0)


def test_a_push_that_fails_before_a_step_is_sent_records_the_confirmed_create_with_the_step_left(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAKE_KEY", "k-123456")
    api = FakeAPI().on("POST", "/v2/items", 201, {"data": {"id": 8}})
    api.on("POST", "/v2/items", 403, {"error": "this account may not write items"})
    state = State(":memory:")
    target = make_client(api, {**API_KEY, "responses": [{"when": {"status": 403}, "do": "fatal"}]},
                         {"key": "env:FAKE_KEY"})
    context = FlowContext(run_id="r1", state=state, source=None, target=target,  # type: ignore[arg-type]
                          source_entity=entity({"key": "id"}), target_entity=CREATE_WITH_LINE,
                          mapping=None, known_flows={"things"})  # type: ignore[arg-type]
    flow = FlowRun(configs.flow(), context)
    flow._entity_writer = EntityWriter(target, "item", CREATE_WITH_LINE, match_field=None, concurrency=1)
    changed = [_Mapped(key, {"code": key}, {"code": key}, f"h{key}") for key in ("k1", "k2")]
    with pytest.raises(FatalError, match="may not write items"):
        asyncio.run(flow._push(changed, {}))
    assert sent(api) == [("POST", "/v2/items"), ("POST", "/v2/items")]  # k1's step was never sent
    entry = state.id_maps.get_many("things", ["k1", "k2"])
    assert {k: (e.target_id, e.payload_hash) for k, e in entry.items()} == {"k1": ("8", "hk1@attach_line")}
    [parked] = state.pending.list(flow="things")
    assert (parked.source_key, parked.reason) == (
        "k1", "step attach_line: not sent: the push stopped before this step")
