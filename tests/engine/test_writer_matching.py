"""A found target record counts only on an exact match; two source keys on one target record are a conflict
(issue 16, case 2)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import pytest

from ml_connector.http.catalog import FieldCatalog
from ml_connector.http.writer import EntityWriter, PushItem, PushResult
from ml_connector.store import State
from ml_connector.sync.flow import FlowContext, FlowRun, _Mapped
from tests.engine import configs
from tests.engine.fakeapi import FakeAPI
from tests.engine.test_client import API_KEY, make_client


@pytest.fixture(autouse=True)
def key_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAKE_KEY", "k-123456")


ENTITY = {
    "key": "id",
    "get": {"path": "/things/{{ id }}", "record": "data"},
    "write": {
        "strategy": "search_then_write",
        "search": {"path": "/things/search", "params": {"term": "{{ match.value }}"}, "records": "data"},
        "create": {"method": "POST", "path": "/things", "id": "data.id"},
        "update": {"method": "PATCH", "path": "/things/{{ target_id }}", "id": "data.id"},
    },
}


def push(api: FakeAPI, items: list[PushItem], *, match_field: str = "code", **options: Any) -> dict[str, PushResult]:
    writer = EntityWriter(make_client(api, API_KEY, {"key": "env:FAKE_KEY"}), "thing", configs.entity(ENTITY),
                          match_field=match_field, **options)
    return {r.item.source_key: r for r in asyncio.run(writer.push(items))}


def owned_by(owners: dict[str, list[str]]) -> Callable[[Iterable[str]], Mapping[str, list[str]]]:
    """The id map's reverse lookup: source keys by target id."""
    return lambda target_ids: {t: owners[t] for t in target_ids if t in owners}


def test_a_case_insensitive_search_hit_is_not_a_match() -> None:
    api = FakeAPI()
    api.on("GET", "/v2/things/search", 200, {"data": [{"id": 42, "code": "def-2"}]})  # the API ignores case
    api.on("POST", "/v2/things", 201, {"data": {"id": 43}})
    results = push(api, [PushItem("DEF-2", {"code": "DEF-2"}, "DEF-2")])
    assert (results["DEF-2"].action, results["DEF-2"].target_id) == ("create", "43")
    assert api.calls("PATCH") == []  # record 42 (def-2) is left alone


def test_normalised_matching_is_opt_in_and_a_record_mapped_to_another_key_is_a_conflict() -> None:
    api = FakeAPI().on("GET", "/v2/things/search", 200, {"data": [{"id": 42, "code": "def-2"}]})
    results = push(api, [PushItem("DEF-2", {"code": "DEF-2"}, "DEF-2")], match_normalize=["casefold"],
                   owners=owned_by({"42": ["def-2"]}))
    assert results["DEF-2"].error == "target record 42 is already mapped to source key def-2"
    assert api.calls("PATCH") == [] and api.calls("POST") == []


def test_two_keys_of_one_push_on_one_target_record_are_a_conflict() -> None:
    api = FakeAPI()
    api.on("GET", "/v2/things/search", 200, {"data": [{"id": 42, "code": "def-2"}]})
    api.on("PATCH", "/v2/things/42", 200, {"data": {"id": 42}})
    results = push(api, [PushItem("def-2", {"code": "def-2"}, "def-2"), PushItem("DEF-2", {"code": "DEF-2"}, "DEF-2")],
                   match_normalize=["casefold", "trim"])
    assert results["def-2"].ok and results["def-2"].target_id == "42"
    assert results["DEF-2"].error == "source keys def-2 and DEF-2 both match code='DEF-2'"
    assert len(api.calls("GET")) == 1 and len(api.calls("PATCH")) == 1


def test_a_hit_that_does_not_show_the_match_field_is_read_to_confirm_it_through_the_catalog() -> None:
    catalog = FieldCatalog("custom_fields", {"ERP Id": "f00d"}, "fake.thing")
    api = FakeAPI()
    api.on("GET", "/v2/things/search", 200, {"data": [{"id": 7, "custom_fields": ["c-1"]}, {"id": 8}]})
    api.on("GET", "/v2/things/7", 200, {"data": {"id": 7, "custom_fields": {"f00d": "c-1"}}})
    api.on("GET", "/v2/things/8", 200, {"data": {"id": 8, "custom_fields": {"f00d": "C-1"}}})
    api.on("PATCH", "/v2/things/8", 200, {"data": {"id": 8}})
    results = push(api, [PushItem("C-1", {"custom_fields": {"ERP Id": "C-1"}}, "C-1")],
                   match_field="custom_fields.ERP Id", catalog=catalog)
    assert (results["C-1"].action, results["C-1"].target_id) == ("update", "8")
    assert json.loads(api.calls("PATCH")[0]["body"]) == {"custom_fields": {"f00d": "C-1"}}


def test_the_flow_wires_the_id_map_so_a_second_key_on_a_mapped_record_is_parked() -> None:
    state = State(":memory:")
    state.id_maps.save("things", [("def-2", "42", "h1")])
    api = FakeAPI().on("GET", "/v2/things/search", 200, {"data": [{"id": 42, "code": "def-2"}]})
    target = make_client(api, API_KEY, {"key": "env:FAKE_KEY"})
    context = FlowContext(run_id="r1", state=state, source=None, target=target,  # type: ignore[arg-type]
                          source_entity=configs.entity({"key": "id"}), target_entity=configs.entity(ENTITY),
                          mapping=None, known_flows={"things"})  # type: ignore[arg-type]
    run = FlowRun(configs.flow(match={"target": "code", "normalize": "casefold"}), context)
    [result] = asyncio.run(run._push([_Mapped("DEF-2", {"code": "DEF-2"}, {"code": "DEF-2"}, "h2")], {}))
    assert result.error == "target record 42 is already mapped to source key def-2"
