"""A body that is not what the spec says (not JSON, truncated, HTML, records path missing or not a list) is an error
for that call, retried as a transient failure, then the flow fails clearly; it is never "zero records"."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
import pytest
from starlette.requests import Request
from starlette.responses import Response

from ml_connector.connection import Connection
from ml_connector.http.catalog import FieldCatalog
from ml_connector.http.client import ConnectorClient
from ml_connector.http.errors import TransientError
from ml_connector.http.matching import TargetFinder
from ml_connector.http.reader import EntityReader
from ml_connector.store import State
from tests.engine import configs
from tests.engine.fakeapi import FakeAPI

BASE = "http://api.test"
RAW = "__raw_body__"
HTML = "<!DOCTYPE html><html><body>Maintenance</body></html>"
CURSOR = {"pages": {"type": "cursor", "param": "cursor", "next": "next", "limit": {"param": "limit", "max": 2}}}


def raw(text: str, content_type: str = "application/json") -> dict[str, str]:
    """An answer sent as these exact bytes (an HTML page, truncated JSON), not as JSON."""
    return {RAW: text, "type": content_type}


class RawAPI(FakeAPI):
    """The strict scripted API, whose answers may also be raw text (see ``raw``)."""

    async def _handle(self, request: Request) -> Response:
        response = await super()._handle(request)
        answer = json.loads(bytes(response.body))
        if not (isinstance(answer, dict) and RAW in answer):
            return response
        headers = {k: v for k, v in response.headers.items() if k not in ("content-length", "content-type")}
        return Response(answer[RAW].encode(), response.status_code, headers, media_type=answer["type"])


def make_client(api: FakeAPI, entities: dict[str, Any], waits: list[float]) -> ConnectorClient:
    config = configs.connector({"connector": "fake", "base_url": BASE + "/v2", "retries": 2, "paginators": CURSOR,
                                "entities": entities})

    async def sleep(seconds: float) -> None:
        waits.append(seconds)

    return ConnectorClient(Connection("fake", config, {}, {}, None), State(":memory:").credentials,
                           transport=httpx.ASGITransport(app=api.app), sleep=sleep)


WRITES = {"create": {"method": "POST", "path": "/things"},
          "update": {"method": "PATCH", "path": "/things/{{ target_id }}"}}
THING = {"key": "id", "read": {"path": "/things", "records": "data", "paginator": "pages"}}


def read_all(api: FakeAPI, waits: list[float], entity: dict[str, Any] = THING, **pages: Any) -> list[dict[str, Any]]:
    client = make_client(api, {"thing": entity}, waits)
    reader = EntityReader(client, "thing", client.connection.connector.entities["thing"])

    async def go() -> list[dict[str, Any]]:
        return [record async for page in reader.pages(**pages) for record in page]

    return asyncio.run(go())


@pytest.mark.parametrize("answer, problem", [
    (raw(HTML, "text/html"), "the body is not JSON"),
    (raw('{"data": [{"id": 1}, {"id"', "application/json"), "the body is not JSON"),
    ({"items": [{"id": 1}]}, "records path 'data' is missing"),
    ({"data": {"id": 1}}, "records path 'data' is not a list"),
    ({"data": None}, "records path 'data' is missing"),
])
def test_a_source_read_with_a_bad_body_is_retried_then_fails_never_zero_records(answer: Any, problem: str) -> None:
    api = RawAPI().on("GET", "/v2/things", 200, answer)
    waits: list[float] = []
    with pytest.raises(TransientError) as failure:
        read_all(api, waits)
    assert str(failure.value).startswith(f"GET /v2/things -> HTTP 200: {problem}")
    assert len(api.calls("GET", "/v2/things")) == 3  # first try + 2 retries
    assert len(waits) == 2


def test_a_bad_page_that_comes_right_on_a_retry_is_read() -> None:
    api = RawAPI().on("GET", "/v2/things", 200, {"data": [{"id": 1}, {"id": 2}], "next": "B"}) \
                  .on("GET", "/v2/things", 200, raw(HTML, "text/html")) \
                  .on("GET", "/v2/things", 200, {"data": [{"id": 3}]})
    waits: list[float] = []
    assert read_all(api, waits) == [{"id": 1}, {"id": 2}, {"id": 3}]
    assert [c["params"] for c in api.calls()] == [{"limit": "2"}, {"limit": "2", "cursor": "B"},
                                                  {"limit": "2", "cursor": "B"}]
    assert len(waits) == 1


def test_an_empty_list_at_the_records_path_is_zero_records() -> None:
    api = RawAPI().on("GET", "/v2/things", 200, {"data": []})
    assert read_all(api, []) == []
    assert len(api.calls()) == 1


def test_a_prefetch_of_the_target_that_answers_html_fails_instead_of_matching_nothing() -> None:
    api = RawAPI().on("GET", "/v2/things", 200, raw(HTML, "text/html"))
    waits: list[float] = []
    entity = {**THING, "write": {"strategy": "search_then_write", "prefetch": {"min": 1},
                                 "search": {"path": "/things/search"}, **WRITES}}
    client = make_client(api, {"thing": entity}, waits)
    config = client.connection.connector.entities["thing"]
    assert config.write is not None
    reader = EntityReader(client, "thing", config)

    async def everything() -> list[dict[str, Any]]:
        return [record async for page in reader.pages() for record in page]

    finder = TargetFinder(client, config.write, "name", "id", everything=everything)
    with pytest.raises(TransientError, match="the body is not JSON"):
        asyncio.run(finder.prepare(1))
    assert finder.index is None
    assert len(api.calls()) == 3


@pytest.mark.parametrize("answer, problem", [
    (raw(HTML, "text/html"), "the body is not JSON"),
    ({"data": {"found": 0}}, "records path 'data.items[].item' is missing"),
])
def test_a_search_with_a_bad_body_fails_instead_of_finding_nothing(answer: Any, problem: str) -> None:
    api = RawAPI().on("GET", "/v2/things/search", 200, answer)
    waits: list[float] = []
    entity = {**THING, "write": {"strategy": "search_then_write", **WRITES,
                                 "search": {"path": "/things/search", "params": {"term": "{{ match.value }}"},
                                            "records": "data.items[].item"}}}
    client = make_client(api, {"thing": entity}, waits)
    write = client.connection.connector.entities["thing"].write
    assert write is not None
    finder = TargetFinder(client, write, "name", "id")
    with pytest.raises(TransientError) as failure:
        asyncio.run(finder.find("Acme"))
    assert str(failure.value).startswith(f"GET /v2/things/search -> HTTP 200: {problem}")
    assert len(api.calls()) == 3


def test_a_search_that_answers_one_object_at_its_records_path_is_one_hit() -> None:
    api = RawAPI().on("GET", "/v2/things/search", 200, {"data": {"id": 5, "name": "Acme"}})
    entity = {**THING, "write": {"strategy": "search_then_write", **WRITES,
                                 "search": {"path": "/things/search", "records": "data"}}}
    client = make_client(api, {"thing": entity}, [])
    write = client.connection.connector.entities["thing"].write
    assert write is not None
    assert asyncio.run(TargetFinder(client, write, "name", "id").find("Acme")) == [{"id": 5, "name": "Acme"}]


def test_a_field_catalog_whose_records_path_is_missing_fails() -> None:
    api = RawAPI().on("GET", "/v2/fields", 200, {"fields": [{"key": "abc", "name": "Size"}]})
    entity = {**THING, "custom_fields": {"object": "custom", "catalog": {
        "path": "/fields", "records": "data", "key": "key", "label": "name"}}}
    client = make_client(api, {"thing": entity}, [])
    custom = client.connection.connector.entities["thing"].custom_fields
    assert custom is not None
    with pytest.raises(TransientError, match=r"^GET /v2/fields -> HTTP 200: records path 'data' is missing"):
        asyncio.run(FieldCatalog.load(client, "thing", custom))
    assert len(api.calls()) == 3


def test_an_expansion_whose_records_are_not_a_list_fails() -> None:
    api = RawAPI().on("GET", "/v2/things", 200, {"data": [{"id": 1}]}) \
                  .on("GET", "/v2/parts", 200, {"data": "none"})
    entity = {**THING, "expand": {"parts": {"path": "/parts", "params": {"ids": "{{ keys | join(',') }}"},
                                            "records": "data", "parent_key": "thing_id"}}}
    with pytest.raises(TransientError, match=r"^GET /v2/parts -> HTTP 200: records path 'data' is not a list"):
        read_all(api, [], entity, expand=["parts"])
    assert len(api.calls("GET", "/v2/parts")) == 3
