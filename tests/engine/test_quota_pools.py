"""Every operation may name a quota pool (issue 18, case 3): read, get, expand, field catalog, search.

Both pools below stop at an answer saying nothing remains; which one an answer blocked shows which pool the call
went through (a call through the default pool would block `default`).
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from ml_connector.http.catalog import FieldCatalog
from ml_connector.http.client import ConnectorClient
from ml_connector.http.reader import EntityReader
from ml_connector.http.writer import EntityWriter
from ml_connector.spec import load_specs
from tests.engine import configs
from tests.engine.fakeapi import FakeAPI
from tests.engine.test_client import API_KEY, make_client


@pytest.fixture(autouse=True)
def key_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAKE_KEY", "k-123456")


QUOTAS = {"quotas": {"default": {"remaining_header": "x-left", "reset_header": "x-reset"},
                     "search": {"remaining_header": "x-left", "reset_header": "x-reset"}}}
EMPTY = {"x-left": "0", "x-reset": "30"}


def client_for(api: FakeAPI) -> ConnectorClient:
    return make_client(api, {**API_KEY, **QUOTAS}, {"key": "env:FAKE_KEY"})


def blocked(client: ConnectorClient) -> list[str]:
    """The pools an answer said were empty."""
    return [name for name, pool in client.quotas.items() if pool.blocked_until]


def read_all(reader: EntityReader, **options: Any) -> list[list[dict[str, Any]]]:
    async def pages() -> list[list[dict[str, Any]]]:
        return [page async for page in reader.pages(**options)]
    return asyncio.run(pages())


def test_a_read_spends_the_pool_it_names() -> None:
    api = FakeAPI().on("POST", "/v2/things/query", 200, {"data": [{"id": 1}]}, EMPTY)
    client = client_for(api)
    spec = configs.entity({"key": "id", "read": {"method": "POST", "path": "/things/query", "body": {"q": 1},
                                                 "quota": "search"}}, **QUOTAS)
    assert read_all(EntityReader(client, "thing", spec)) == [[{"id": 1}]]
    assert blocked(client) == ["search"]
    assert [(r["method"], r["path"]) for r in api.requests] == [("POST", "/v2/things/query")]


def test_an_expansion_spends_the_pool_it_names_and_the_read_its_own() -> None:
    api = FakeAPI()
    api.on("GET", "/v2/things", 200, {"data": [{"id": 1}]})
    api.on("GET", "/v2/things/1/parts", 200, {"data": [{"sku": "p"}]}, EMPTY)
    client = client_for(api)
    spec = configs.entity({"key": "id", "read": {"path": "/things"},
                           "expand": {"parts": {"path": "/things/{{ id }}/parts", "quota": "search"}}}, **QUOTAS)
    assert read_all(EntityReader(client, "thing", spec), expand=["parts"]) == [[{"id": 1, "parts": [{"sku": "p"}]}]]
    assert blocked(client) == ["search"]
    assert [(r["method"], r["path"]) for r in api.requests] == [("GET", "/v2/things"), ("GET", "/v2/things/1/parts")]


def test_a_get_spends_the_pool_it_names() -> None:
    api = FakeAPI().on("GET", "/v2/things/7", 200, {"data": {"id": 7}}, EMPTY)
    client = client_for(api)
    spec = configs.entity({"key": "id", "get": {"path": "/things/{{ id }}", "quota": "search"},
                           "write": {"strategy": "update_only",
                                     "update": {"method": "PATCH", "path": "/things/{{ target_id }}"}}}, **QUOTAS)
    writer = EntityWriter(client, "thing", spec, match_field=None)
    assert asyncio.run(writer.fetch("7")) == {"id": 7}
    assert blocked(client) == ["search"]


def test_a_field_catalog_spends_the_pool_it_names() -> None:
    api = FakeAPI().on("GET", "/v2/thingFields", 200, {"data": [{"key": "f00d", "name": "ERP Id"}]}, EMPTY)
    client = client_for(api)
    spec = configs.entity({"key": "id", "custom_fields": {"object": "custom", "catalog": {
        "path": "/thingFields", "key": "key", "label": "name", "quota": "search"}}}, **QUOTAS)
    assert spec.custom_fields is not None
    catalog = asyncio.run(FieldCatalog.load(client, "thing", spec.custom_fields))
    assert catalog.label_to_key == {"ERP Id": "f00d"}
    assert blocked(client) == ["search"]


CONNECTOR = """\
connector: shop
base_url: https://api.shop.test
auth: {key: {type: api_key, header: x-key, value: k}}
quotas: {default: {concurrency: 4}, search: {calls: 5, window: 2}}
entities:
  thing:
    key: id
    custom_fields:
      object: custom
      catalog: {path: /fields, key: key, label: name, quota: catalogs}
    read: {path: /things, quota: reads}
    get: {path: "/things/{{ id }}", quota: gets}
    expand:
      parts: {path: "/things/{{ id }}/parts", quota: search}
      notes: {path: "/things/{{ id }}/notes", quota: note}
"""


def test_validate_names_every_unknown_pool_with_its_line(tmp_path: Path) -> None:
    path = tmp_path / "shop.yaml"
    path.write_text(CONNECTOR)
    _, problems = load_specs([path])
    known = "(known: default, search)"
    assert [str(p) for p in problems] == [
        f"{path}:10: entities.thing.custom_fields.catalog.quota: unknown quota 'catalogs' {known}",
        f"{path}:11: entities.thing.read.quota: unknown quota 'reads' {known}",
        f"{path}:12: entities.thing.get.quota: unknown quota 'gets' {known}",
        f"{path}:15: entities.thing.expand.notes.quota: unknown quota 'note' {known}",
    ]
