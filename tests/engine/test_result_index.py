"""Batch results matched by the input index each result carries (`results.match: index`, `results.index: seq`):
an API that answers `{"seq": 2, "status": "skipped"}` names its input by position whatever the order of the list.
Duplicated, out-of-range or missing indexes confirm nothing. A result for which `results.skip_flow` holds (the
object is managed elsewhere on this account) ends the flow skipped, recording nothing of the batch."""

from __future__ import annotations

import asyncio
import json
import textwrap
from pathlib import Path

import httpx
import pytest

from ml_connector.http.skips import FlowSkipped
from ml_connector.http.work import PushAborted
from ml_connector.http.writer import EntityWriter, PushItem, PushResult
from ml_connector.store import State
from ml_connector.sync.runner import Runner
from ml_connector.workspace import Workspace
from tests.engine import configs
from tests.engine.fakeapi import FakeAPI
from tests.engine.test_client import API_KEY, make_client

RESULTS = {"items": "result", "match": "index", "index": "seq", "id": "id", "created": "status == 'created'",
           "failed": "status == 'skipped'", "error_message": "{{ error.reasons[0].message }}",
           "skip_flow": "reasons[?code == '1018']",
           "skip_message": "the account's CRM manages these records ({{ error.reasons[0].message }})"}
ENTITY = {
    "key": "id",
    "write": {"strategy": "update_only", "update": {
        "method": "POST", "path": "/things.json",
        "batch": {"size": 10, "body": {"action": "updateOnly", "input": "{{ records }}"}},
        "body": {"id": "{{ target_id }}", "name": "{{ record.name }}"},
        "results": RESULTS}},
}


@pytest.fixture(autouse=True)
def key_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAKE_KEY", "k-123456")


def push(api: FakeAPI, items: list[PushItem]) -> dict[str, PushResult]:
    writer = EntityWriter(make_client(api, API_KEY, {"key": "env:FAKE_KEY"}), "thing", configs.entity(ENTITY),
                          match_field=None)
    return {r.item.source_key: r for r in asyncio.run(writer.push(items))}


def items(count: int) -> list[PushItem]:
    return [PushItem(f"k{n}", {"name": f"new {n}"}, target_id=str(n)) for n in range(count)]


def sent(api: FakeAPI) -> list[list[str]]:
    return [[r["id"] for r in json.loads(c["body"])["input"]] for c in api.calls("POST")]


def test_results_out_of_order_are_matched_by_their_index() -> None:
    api = FakeAPI().on("POST", "/v2/things.json", 200, {"success": True, "result": [
        {"seq": 2, "status": "skipped", "reasons": [{"code": "1013", "message": "Record not found"}]},
        {"seq": 0, "status": "updated", "id": 0},
        {"seq": 1, "status": "created", "id": 1}]})
    results = push(api, items(3))
    assert (results["k0"].ok, results["k0"].target_id, results["k0"].action) == (True, "0", "update")
    assert (results["k1"].ok, results["k1"].target_id) == (True, "1")
    assert results["k2"].error == "Record not found"
    assert sent(api) == [["0", "1", "2"]]


def test_duplicate_out_of_range_and_missing_indexes_confirm_nothing() -> None:
    api = FakeAPI().on("POST", "/v2/things.json", 200, {"success": True, "result": [
        {"seq": 0, "status": "updated", "id": 0}, {"seq": 0, "status": "updated", "id": 0},
        {"seq": 7, "status": "updated", "id": 1}, {"status": "updated", "id": 2},
        {"seq": 3, "status": "updated", "id": 3}]})
    results = push(api, items(4))
    assert [results[f"k{n}"].ok for n in range(4)] == [False, False, False, True]
    assert [results[f"k{n}"].error for n in range(3)] == ["outcome unknown: the response does not mention it"] * 3
    assert sent(api) == [["0", "1", "2", "3"]]


def test_a_result_index_that_is_not_an_integer_names_nothing() -> None:
    api = FakeAPI().on("POST", "/v2/things.json", 200, {"success": True, "result": [
        {"seq": "0", "status": "updated", "id": 0}, {"seq": True, "status": "updated", "id": 1}]})
    results = push(api, items(2))
    assert [results[k].ok for k in ("k0", "k1")] == [False, False]


def test_a_result_that_says_skip_flow_skips_the_flow_and_records_nothing() -> None:
    api = FakeAPI().on("POST", "/v2/things.json", 200, {"success": True, "result": [
        {"seq": 0, "status": "updated", "id": 0},
        {"seq": 1, "status": "skipped", "reasons": [{"code": "1018", "message": "CRM Enabled"}]}]})
    with pytest.raises(PushAborted) as aborted:
        push(api, items(2))
    assert isinstance(aborted.value.cause, FlowSkipped)  # the flow ends skipped (sync/flow.py re-raises the cause)
    assert str(aborted.value.cause) == "the account's CRM manages these records (CRM Enabled)"
    assert aborted.value.results == []  # nothing of the batch confirmed, parked or failed: all dirty, sent next run
    assert sent(api) == [["0", "1"]]


FLOW_FILES = {
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
        entities:
          item:
            key: id
            write:
              strategy: create_only
              create:
                method: POST
                path: /items.json
                batch: {size: 10, body: {action: createOnly, input: "{{ records }}"}}
                results: {items: result, match: index, index: seq, id: id, failed: "status == 'skipped'",
                          skip_flow: "reasons[?code == '1018']",
                          skip_message: "managed by the CRM ({{ error.reasons[0].message }})"}
        """,
    "mappings/p/integration.yaml": """
        integration: p
        connections: {src: {connector: src}, dst: {connector: dst}}
        flows: [items.yaml]
        """,
    "mappings/p/items.yaml": """
        flow: items
        from: {connection: src, entity: thing}
        to: {connection: dst, entity: item}
        key: code
        fields: {name: name}
        """,
    "workspace.yaml": """
        connectors: [connectors]
        integrations: [mappings/p]
        connections: {src: {connector: src}, dst: {connector: dst}}
        """,
}


def test_a_skipping_result_leaves_the_batch_dirty_for_the_next_run(tmp_path: Path) -> None:
    for name, text in FLOW_FILES.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(textwrap.dedent(text))
    state = State(":memory:")
    crm = {"seq": 1, "status": "skipped", "reasons": [{"code": "1018", "message": "CRM Enabled"}]}
    api = FakeAPI().on("GET", "/src/things", 200, {"data": [{"code": "A", "name": "a"}, {"code": "B", "name": "b"}]})
    api.on("POST", "/dst/items.json", 200, {"success": True, "result": [{"seq": 0, "status": "created", "id": 7},
                                                                         crm]})
    api.on("POST", "/dst/items.json", 200, {"success": True, "result": [{"seq": 0, "status": "created", "id": 7},
                                                                         {"seq": 1, "status": "created", "id": 8}]})
    first = asyncio.run(Runner(Workspace.open(tmp_path / "workspace.yaml").project, state,
                               transport=httpx.ASGITransport(app=api.app)).run())
    assert [(f.flow, f.status, f.created, f.failed, f.error) for f in first.flows] == [
        ("items", "skipped", 0, 0, "skipped: managed by the CRM (CRM Enabled)")]
    second = asyncio.run(Runner(Workspace.open(tmp_path / "workspace.yaml").project, state,
                                transport=httpx.ASGITransport(app=api.app)).run())
    assert [(f.flow, f.status, f.created) for f in second.flows] == [("items", "ok", 2)]
    assert [[r["name"] for r in json.loads(c["body"])["input"]] for c in api.calls("POST")] == [["a", "b"], ["a", "b"]]
