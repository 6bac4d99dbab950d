"""A value put into a request path arrives as exactly one segment, wherever the engine builds a path.

The template helper encodes values (tests/engine/test_expressions.py); these tests pin that the reader (a parent
key in an expansion path, ``{{ id }}``), the search (``{{ match.value }}``) and the writer (``{{ target_id }}``,
and ``{{ id }}`` when it fetches the existing record) really send it so, by looking at the raw path on the wire;
a value that cannot be one (null, empty) parks its record and the flow goes on (issue 17, case 8).
"""

from __future__ import annotations

import asyncio
import json
from typing import Any
from urllib.parse import unquote

import pytest

from ml_connector.http.reader import EntityReader
from ml_connector.http.writer import EntityWriter, PushItem
from ml_connector.store import State
from tests.engine import configs
from tests.engine.fakeapi import FakeAPI
from tests.engine.flowkit import flow_spec
from tests.engine.test_client import make_client
from tests.engine.test_late_writes import run

AUTH = {"auth": {"key": {"type": "api_key", "header": "x-key", "value": "k-literal"}}}
KEYS = [
    pytest.param("a/b ..%?#", id="slash-space-dots-percent-query-fragment"),
    pytest.param("Zürich/ß ✓ 🔩", id="unicode"),
    pytest.param("x/../y", id="traversal-lookalike"),
    pytest.param("..", id="dot-dot"),
    pytest.param(".", id="dot"),
]


def assert_one_segment(call: dict[str, Any], prefix: str, value: str, suffix: str = "") -> None:
    """The raw path is ``prefix`` + one encoded segment that decodes to ``value`` + ``suffix``."""
    raw = call["raw_path"]
    assert raw.startswith(prefix) and raw.endswith(suffix), raw
    segment = raw[len(prefix):len(raw) - len(suffix)]
    assert "/" not in segment and segment not in {".", ".."} and unquote(segment) == value, raw


@pytest.mark.parametrize("key", KEYS)
def test_the_reader_puts_a_parent_key_into_an_expansion_path_as_one_segment(key: str) -> None:
    api = FakeAPI()
    api.on("GET", "/v2/deals", 200, {"data": [{"id": key}]})
    api.on("GET", f"/v2/deals/{key}/lines", 200, {"data": [{"n": 1}]})
    spec = {"key": "id", "read": {"path": "/deals", "records": "data"},
            "expand": {"lines": {"path": "/deals/{{ id }}/lines", "records": "data"}}}
    reader = EntityReader(make_client(api, AUTH), "deal", configs.entity(spec))

    async def collect() -> list[list[dict[str, Any]]]:
        return [page async for page in reader.pages(expand=["lines"])]

    assert asyncio.run(collect()) == [[{"id": key, "lines": [{"n": 1}]}]]
    assert [c["method"] for c in api.requests] == ["GET", "GET"]
    assert_one_segment(api.requests[1], "/v2/deals/", key, "/lines")


@pytest.mark.parametrize("key", KEYS)
def test_the_search_puts_the_match_value_into_its_path_as_one_segment(key: str) -> None:
    api = FakeAPI()
    api.on("GET", f"/v2/things/{key}", 404, {"error": "not found"})
    api.on("POST", "/v2/things", 200, {"data": {"id": 7}})
    spec = {"key": "id", "write": {
        "strategy": "search_then_write",
        "search": {"path": "/things/{{ match.value }}", "records": "data", "not_found": [404]},
        "create": {"method": "POST", "path": "/things", "id": "data.id"},
        "update": {"method": "PATCH", "path": "/things/{{ target_id }}", "id": "data.id"}}}
    writer = EntityWriter(make_client(api, AUTH), "thing", configs.entity(spec), match_field="code")

    [result] = asyncio.run(writer.push([PushItem("s1", {"code": key}, key)]))

    assert (result.action, result.target_id, result.error) == ("create", "7", None)
    assert [c["method"] for c in api.requests] == ["GET", "POST"]
    assert_one_segment(api.requests[0], "/v2/things/", key)
    assert json.loads(api.requests[1]["body"]) == {"code": key}


@pytest.mark.parametrize("key", KEYS)
def test_the_writer_puts_the_target_id_into_fetch_and_update_paths_as_one_segment(key: str) -> None:
    api = FakeAPI()
    api.on("GET", f"/v2/things/{key}", 200, {"data": {"id": key, "version": 3}})
    api.on("PATCH", f"/v2/things/{key}", 200, {"data": {"id": key}})
    spec = {"key": "id", "get": {"path": "/things/{{ id }}", "record": "data"}, "write": {
        "strategy": "update_only",
        "update": {"method": "PATCH", "path": "/things/{{ target_id }}", "id": "data.id", "fetch_existing": True,
                   "merge": {"version": "{{ existing.version }}"}}}}
    writer = EntityWriter(make_client(api, AUTH), "thing", configs.entity(spec), match_field=None)

    [result] = asyncio.run(writer.push([PushItem("s1", {"name": "renamed"}, target_id=key)]))

    assert (result.action, result.target_id, result.error) == ("update", key, None)
    assert [c["method"] for c in api.requests] == ["GET", "PATCH"]
    assert_one_segment(api.requests[0], "/v2/things/", key)
    assert_one_segment(api.requests[1], "/v2/things/", key)
    assert json.loads(api.requests[1]["body"]) == {"name": "renamed", "version": 3}


def test_a_path_refused_because_of_a_record_value_parks_that_record_and_the_flow_goes_on() -> None:
    grouped = configs.entity({"key": "id", "write": {"strategy": "create_only", "create": {
        "method": "POST", "path": "/groups/{{ record.group }}/items", "id": "data.id"}}})
    stamp = "2026-03-01T10:00:00Z"
    groups = {"A": "g1", "B": None, "C": "1/../../v1/users", "D": ".."}
    records = [{"code": code, "group": group, "updated": stamp} for code, group in groups.items()]
    target = FakeAPI()
    for raw in ("/v2/groups/g1/items", "/v2/groups/1%2F..%2F..%2Fv1%2Fusers/items", "/v2/groups/%2E%2E/items"):
        target.on("POST", raw, 201, {"data": {"id": raw}})
    state = State(":memory:")
    summary = run(state, FakeAPI().on("GET", "/v2/things", 200, {"data": records}), target, target_entity=grouped,
                  spec=flow_spec({"code": "code", "group": "group"}))
    assert sorted(c["raw_path"] for c in target.requests) == [
        "/v2/groups/%2E%2E/items", "/v2/groups/1%2F..%2F..%2Fv1%2Fusers/items", "/v2/groups/g1/items"]
    assert (summary.status, summary.created, summary.failed) == ("ok", 3, 1)
    [parked] = state.pending.list(flow="things")
    assert (parked.source_key, parked.reason) == (
        "B", "request path '/groups/{{ record.group }}/items': a value put into it is empty (null or missing)")
    assert {row["source_key"] for row in state.audit.query(run_id="r1")} == {"A", "B", "C", "D"}
