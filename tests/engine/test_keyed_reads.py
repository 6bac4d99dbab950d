"""Keyed reads (`read.keys` + `from.keys`) and children expanded by a reference field (`expand.parent_field`).

An API that cannot list an entity is read by the keys another flow's id map knows, `read.keys.batch` keys per
query, each query paged to its end; children fetched by a parent's reference field rather than its key.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner

import ml_connector.commands.preview
from ml_connector.cli import main
from ml_connector.config import ConnectorConfig
from ml_connector.connection import Connection
from ml_connector.http.client import ConnectorClient
from ml_connector.http.errors import FatalError
from ml_connector.http.reader import EntityReader
from ml_connector.store import State
from ml_connector.sync.flow import FlowContext, FlowRun, FlowSummary
from ml_connector.transform.mapping import CompiledMapping
from ml_connector.workspace import Workspace
from tests.engine.configs import connector, mapping
from tests.engine.fakeapi import FakeAPI
from tests.engine.flowkit import NOW, TARGET
from tests.engine.pair_workspace import write_pair

PAGINATORS = {"token": {"type": "cursor", "param": "nextPageToken", "next": "nextPageToken",
                        "limit": {"param": "batchSize", "max": 300}}}
COMPANY = {"key": "id", "updated": "updatedAt",
           "read": {"path": "/companies", "params": {"filterType": "externalCompanyId",
                                                     "filterValues": "{{ keys | join(',') }}"},
                    "keys": {"batch": 300}, "records": "result", "paginator": "token"}}


def source_connector(entity: dict[str, Any]) -> ConnectorConfig:
    return connector({"connector": "src", "base_url": "http://src.test/v2", "retries": 0, "paginators": PAGINATORS,
                      "entities": {"company": entity}})


def make_client(api: FakeAPI, config: ConnectorConfig) -> ConnectorClient:
    async def no_sleep(seconds: float) -> None:
        raise AssertionError(f"a keyed read should not wait ({seconds} s)")

    return ConnectorClient(Connection(config.connector, config, {}, {}, None), State(":memory:").credentials,
                           transport=httpx.ASGITransport(app=api.app), sleep=no_sleep)


def reader_of(api: FakeAPI, entity: dict[str, Any]) -> EntityReader:
    config = source_connector(entity)
    return EntityReader(make_client(api, config), "company", config.entities["company"])


def collect(reader: EntityReader, **kwargs: Any) -> list[list[dict[str, Any]]]:
    async def pages() -> list[list[dict[str, Any]]]:
        return [page async for page in reader.pages(**kwargs)]

    return asyncio.run(pages())


def readback_spec(**keys: Any) -> dict[str, Any]:
    return {"flow": "readback", "from": {"connection": "src", "entity": "company", "keys": {"flow": "customers",
                                                                                           **keys}},
            "to": {"connection": "dst", "entity": "item"}, "depends_on": ["customers"], "key": "id",
            "fields": {"code": "externalCompanyId"}}


def run_readback(state: State, spec: dict[str, Any], source: FakeAPI, target: FakeAPI, *,
                 dry_run: bool = False) -> FlowSummary:
    config = mapping(spec)
    src = source_connector(COMPANY)
    dst = connector({"connector": "dst", "base_url": "http://dst.test/v2", "retries": 0})
    context = FlowContext(run_id="r1", state=state, source=make_client(source, src), target=make_client(target, dst),
                          source_entity=src.entities["company"], target_entity=TARGET,
                          mapping=CompiledMapping(config), known_flows={config.flow, "customers"}, now=lambda: NOW,
                          dry_run=dry_run)
    return asyncio.run(FlowRun(config, context).execute())


def company(n: int) -> dict[str, Any]:
    return {"id": n, "externalCompanyId": f"C{n}", "updatedAt": "2026-02-01T00:00:00Z"}


# ---- keyed reads ---------------------------------------------------------------------------------------------


def test_650_keys_make_three_keyed_queries_each_paged_to_its_end() -> None:
    state = State(":memory:")
    state.id_maps.save("customers", [(str(n), f"T{n}", "h") for n in reversed(range(650))])
    keys = sorted(str(n) for n in range(650))  # as strings: "0", "1", "10", "100", ...
    source = FakeAPI()
    source.on("GET", "/v2/companies", 200, {"success": True, "result": [company(1)], "nextPageToken": "p2"})
    source.on("GET", "/v2/companies", 200, {"success": True, "result": [company(2)]})
    source.on("GET", "/v2/companies", 200, {"success": True, "result": [company(3)]})
    source.on("GET", "/v2/companies", 200, {"success": True, "result": [company(4)], "nextPageToken": "q2"})
    source.on("GET", "/v2/companies", 200, {"success": True, "result": [company(5)], "nextPageToken": "q3"})
    source.on("GET", "/v2/companies", 200, {"success": True, "result": []})
    target = FakeAPI().on("POST", "/v2/items", 201, {"data": {"id": "new"}})
    summary = run_readback(state, readback_spec(), source, target)
    assert summary.status == "ok", summary.error
    assert summary.read == 5 and summary.created == 5
    base = {"filterType": "externalCompanyId", "batchSize": "300"}
    assert [call["params"] for call in source.calls("GET", "/v2/companies")] == [
        {**base, "filterValues": ",".join(keys[:300])},
        {**base, "filterValues": ",".join(keys[:300]), "nextPageToken": "p2"},
        {**base, "filterValues": ",".join(keys[300:600])},
        {**base, "filterValues": ",".join(keys[600:])},
        {**base, "filterValues": ",".join(keys[600:]), "nextPageToken": "q2"},
        {**base, "filterValues": ",".join(keys[600:]), "nextPageToken": "q3"},
    ]
    assert len(keys[600:]) == 50
    assert state.watermarks.get("readback") is None  # a keyed read is a full read of its key set


def test_zero_keys_make_zero_requests_and_zero_records() -> None:
    state = State(":memory:")
    source, target = FakeAPI(), FakeAPI()
    summary = run_readback(state, readback_spec(), source, target)
    assert summary.status == "ok", summary.error
    assert summary.read == 0 and source.requests == [] and target.requests == []


def test_side_target_reads_by_the_id_maps_target_ids() -> None:
    state = State(":memory:")
    state.id_maps.save("customers", [("C2", "200", "h"), ("C1", "100", "h"), ("C3", "100", "h"),
                                     ("other", "999", "h")])
    state.id_maps.save("unrelated", [("C9", "900", "h")])
    source = FakeAPI().on("GET", "/v2/companies", 200, {"success": True, "result": []})
    summary = run_readback(state, readback_spec(side="target"), source, FakeAPI())
    assert summary.status == "ok", summary.error
    assert [call["params"]["filterValues"] for call in source.calls()] == ["100,200,999"]


def test_side_defaults_to_the_source_keys() -> None:
    state = State(":memory:")
    state.id_maps.save("customers", [("C2", "200", "h"), ("C1", "100", "h")])
    source = FakeAPI().on("GET", "/v2/companies", 200, {"success": True, "result": []})
    run_readback(state, readback_spec(), source, FakeAPI())
    assert [call["params"]["filterValues"] for call in source.calls()] == ["C1,C2"]


def test_a_plan_reads_by_keys_too() -> None:
    state = State(":memory:")
    state.id_maps.save("customers", [("C1", "100", "h")])
    source = FakeAPI().on("GET", "/v2/companies", 200, {"success": True, "result": [company(1)]})
    summary = run_readback(state, readback_spec(), source, FakeAPI(), dry_run=True)
    assert summary.status == "ok", summary.error
    assert summary.read == 1 and summary.created == 1
    assert [call["params"]["filterValues"] for call in source.calls()] == ["C1"]


def test_reader_batches_distinct_sorted_non_empty_keys() -> None:
    source = FakeAPI().on("GET", "/v2/companies", 200, {"result": []})
    entity = {**COMPANY, "read": {**COMPANY["read"], "keys": {"batch": 2}}}
    assert collect(reader_of(source, entity), keys=["b", "a", "", "c", "a"]) == [[], []]
    assert [call["params"]["filterValues"] for call in source.calls()] == ["a,b", "c"]


def test_a_keyed_entity_read_without_keys_is_refused_in_one_line() -> None:
    reader = reader_of(FakeAPI(), COMPANY)
    with pytest.raises(FatalError, match=r"^src\.company is read by keys \(read\.keys\)"):
        collect(reader)


def test_keys_given_to_an_entity_without_read_keys_are_refused() -> None:
    entity = {"key": "id", "read": {"path": "/companies", "records": "result"}}
    with pytest.raises(FatalError, match="has no read.keys"):
        collect(reader_of(FakeAPI(), entity), keys=["1"])


# ---- expand by a reference field ----------------------------------------------------------------------------

PARENTS = {"key": "id", "read": {"path": "/companies", "records": "result"},
           "expand": {"opportunities": {"path": "/opportunities", "params": {"filterType": "externalCompanyId",
                                                                             "filterValues": "{{ keys | join(',') }}"},
                                        "batch": 2, "records": "result", "paginator": "token",
                                        "parent_key": "externalCompanyId", "parent_field": "externalCompanyId"}}}


def test_children_by_a_reference_field_are_asked_once_per_value_in_batches() -> None:
    parents = [{"id": 1, "externalCompanyId": "B"}, {"id": 2, "externalCompanyId": "B"},
               {"id": 3, "externalCompanyId": None}, {"id": 4, "externalCompanyId": ""}, {"id": 5},
               {"id": 6, "externalCompanyId": "A"}, {"id": 7, "externalCompanyId": "C"}]
    source = FakeAPI().on("GET", "/v2/companies", 200, {"result": parents})
    source.on("GET", "/v2/opportunities", 200, {"result": [{"externalCompanyId": "A", "n": 1}],
                                                 "nextPageToken": "o2"})
    source.on("GET", "/v2/opportunities", 200, {"result": [{"externalCompanyId": "B", "n": 2},
                                                           {"externalCompanyId": None, "n": 9}]})
    source.on("GET", "/v2/opportunities", 200, {"result": [{"externalCompanyId": "C", "n": 3}]})
    [page] = collect(reader_of(source, PARENTS), expand=["opportunities"])
    assert {r["id"]: [c["n"] for c in r["opportunities"]] for r in page} == {
        1: [2], 2: [2], 3: [], 4: [], 5: [], 6: [1], 7: [3]}
    base = {"filterType": "externalCompanyId", "batchSize": "300"}
    assert [call["params"] for call in source.calls("GET", "/v2/opportunities")] == [
        {**base, "filterValues": "A,B"}, {**base, "filterValues": "A,B", "nextPageToken": "o2"},
        {**base, "filterValues": "C"}]


def test_a_page_whose_parents_lack_the_reference_field_asks_nothing() -> None:
    source = FakeAPI().on("GET", "/v2/companies", 200, {"result": [{"id": 1, "externalCompanyId": None},
                                                                   {"id": 2}]})
    [page] = collect(reader_of(source, PARENTS), expand=["opportunities"])
    assert [r["opportunities"] for r in page] == [[], []]
    assert source.calls("GET", "/v2/opportunities") == []


def test_children_by_key_are_unchanged_without_parent_field() -> None:
    by_key = {name: value for name, value in PARENTS["expand"]["opportunities"].items()  # type: ignore[index]
              if name != "parent_field"}
    source = FakeAPI().on("GET", "/v2/companies", 200, {"result": [{"id": 2, "externalCompanyId": "B"},
                                                                   {"id": 1, "externalCompanyId": "A"}]})
    source.on("GET", "/v2/opportunities", 200, {"result": [{"externalCompanyId": "1", "n": 1}]})
    [page] = collect(reader_of(source, {**PARENTS, "expand": {"opportunities": by_key}}), expand=["opportunities"])
    assert {r["id"]: [c["n"] for c in r["opportunities"]] for r in page} == {1: [1], 2: []}
    assert [call["params"]["filterValues"] for call in source.calls("GET", "/v2/opportunities")] == ["2,1"]


# ---- preview reads by keys too ------------------------------------------------------------------------------


def test_preview_of_a_keyed_flow_reads_by_the_id_map_keys(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAKE_KEY", "k-123456")
    monkeypatch.delenv("ML_CONNECTOR_KEY", raising=False)
    path = write_pair(tmp_path)
    connector_file = tmp_path / "connectors" / "fake.yaml"
    connector_file.write_text(connector_file.read_text().replace(
        "    read: {path: /src/people, records: data}",
        "    read: {path: /src/people, records: data, params: {org: \"{{ keys | join(',') }}\"}, keys: {batch: 2}}"))
    people = tmp_path / "mappings" / "pair" / "people.yaml"
    people.write_text(people.read_text().replace("from: {connection: api, entity: src_person}",
                                                 "from: {connection: api, entity: src_person, keys: {flow: orgs}}"))
    state = Workspace.open(path).state()
    try:
        state.id_maps.save("orgs", [("C", "9", "h"), ("A", "7", "h"), ("B", "8", "h")])
    finally:
        state.close()
    api = FakeAPI().on("GET", "/v2/src/people", 200, {"data": [{"id": 1, "name": "Ann", "org": "A"}]})
    api.on("GET", "/v2/src/people", 200, {"data": [{"id": 2, "name": "Cid", "org": "C"}]})
    monkeypatch.setattr(ml_connector.commands.preview, "base_transport", lambda: httpx.ASGITransport(app=api.app))
    result = CliRunner().invoke(main, ["preview", "people", "-w", str(path)])
    assert result.exit_code == 0, result.output
    assert [call["params"] for call in api.calls("GET", "/v2/src/people")] == [{"org": "A,B"}, {"org": "C"}]
    assert '"org_id": "7"' in result.output and '"org_id": "9"' in result.output
