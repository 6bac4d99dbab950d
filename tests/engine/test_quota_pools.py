"""Every operation may name a quota pool (issue 18, case 3): read, get, expand, field catalog, search.

Both pools below stop at an answer saying nothing remains; which one an answer blocked shows which pool the call
went through (a call through the default pool would block `default`).
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import httpx
import pytest

from ml_connector.connection import Connection
from ml_connector.http.catalog import FieldCatalog
from ml_connector.http.client import ConnectorClient
from ml_connector.http.reader import EntityReader
from ml_connector.http.writer import EntityWriter
from ml_connector.spec import load_specs
from ml_connector.store import State
from tests.engine import configs
from tests.engine.fakeapi import FakeAPI
from tests.engine.test_client import API_KEY, make_client
from tests.engine.test_quotas import FakeClock, clock  # noqa: F401  (the fixture)


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


def test_a_pool_within_another_spends_both_windows(clock: FakeClock) -> None:  # noqa: F811
    """A search window inside the general one (Pipedrive: 10 searches / 2 s, 20 calls / 2 s in all, searches
    included): a search counts in both. Before, a search spent only its own pool, so searches and writes together
    sent more calls in a window than the general limit (a first sync's 429s on searches and on POST /persons)."""
    pools = {"quotas": {"default": {"window": 2, "calls": 2},
                        "search": {"window": 2, "calls": 5, "within": "default"}}}
    api = FakeAPI().on("GET", "/v2/search", 200, {}).on("POST", "/v2/things", 201, {}).on("POST", "/v2/things", 201, {})
    config = configs.connector({"connector": "fake", "base_url": "http://api.test/v2", **API_KEY, **pools})
    client = ConnectorClient(Connection("fake", config, {}, {"key": "env:FAKE_KEY"}, None),
                             State(":memory:").credentials, transport=httpx.ASGITransport(app=api.app),
                             clock=clock.time, sleep=clock.sleep)

    async def three_calls() -> list[float]:
        sent = []
        for method, path, quota in (("GET", "/search", "search"), ("POST", "/things", None),
                                    ("POST", "/things", None)):
            await client.request(method, path, quota=quota)
            sent.append(clock.now)
        return sent

    assert asyncio.run(three_calls()) == [1000.0, 1000.0, 1002.0]  # the search took one of the window's two calls
    assert clock.sleeps == [2.0]
    assert [(r["method"], r["path"]) for r in api.requests] == [("GET", "/v2/search"), ("POST", "/v2/things"),
                                                                ("POST", "/v2/things")]


def test_validate_refuses_a_pool_within_an_unknown_one_or_itself(tmp_path: Path) -> None:
    path = tmp_path / "shop.yaml"
    for within, problem in (("searches", "unknown quota 'searches' (known: default, search)"),
                            ("search", "a pool cannot be within itself")):
        path.write_text(CONNECTOR.replace("search: {calls: 5, window: 2}",
                                          f"search: {{calls: 5, window: 2, within: {within}}}"))
        _, problems = load_specs([path])
        assert f"{path}:4: quotas.search.within: {problem}" in [str(p) for p in problems]
