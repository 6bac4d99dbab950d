"""Paging inside a body: a paginator with `in: body` sends its cursor or offset (and page size) in the JSON body of a
POST read, at a dotted path; the depth cap and the paging guards work the same as for query parameters."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from ml_connector.http.errors import FatalError
from ml_connector.http.reader import EntityReader
from ml_connector.spec import load_specs
from tests.engine.fakeapi import FakeAPI
from tests.engine.test_client import API_KEY, make_client

PAGINATORS = {
    "after": {"type": "cursor", "in": "body", "param": "paging.after", "next": "paging.next.after",
              "limit": {"param": "limit", "max": 2}},
    "offset": {"type": "offset", "in": "body", "param": "page.offset", "has_more": "more",
               "limit": {"param": "page.size", "max": 2}},
}
SEARCH = {"path": "/search", "method": "POST", "records": "results",
          "body": {"filters": [{"field": "ts", "op": "GTE", "value": "{{ since }}"}], "sort": "ts"}}


@pytest.fixture(autouse=True)
def key_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAKE_KEY", "k-123456")


def read_all(api: FakeAPI, read: dict[str, Any], since: str | None = None) -> list[Any]:
    spec = {**API_KEY, "paginators": PAGINATORS, "entities": {"thing": {"key": "id", "read": read}}}
    client = make_client(api, spec, {"key": "env:FAKE_KEY"})
    reader = EntityReader(client, "thing", client.connection.connector.entities["thing"])

    async def go() -> list[Any]:
        return [r["id"] async for page in reader.pages(since=since) for r in page]

    return asyncio.run(go())


def sent(api: FakeAPI) -> list[tuple[dict[str, str], Any]]:
    """(query parameters, JSON body) of every request, in order."""
    return [(c["params"], json.loads(c["body"])) for c in api.calls()]


def rows(*ids: int, ts: str = "2026-01-01T00:00:00Z") -> list[dict[str, Any]]:
    return [{"id": i, "ts": ts} for i in ids]


def test_a_cursor_is_sent_in_the_body_at_its_dotted_path() -> None:
    api = FakeAPI().on("POST", "/v2/search", 200, {"results": rows(1, 2), "paging": {"next": {"after": "c2"}}}) \
                   .on("POST", "/v2/search", 200, {"results": rows(3, 4), "paging": {"next": {"after": "c4"}}}) \
                   .on("POST", "/v2/search", 200, {"results": rows(5)})
    assert read_all(api, {**SEARCH, "paginator": "after"}) == [1, 2, 3, 4, 5]
    filters = [{"field": "ts", "op": "GTE", "value": None}]
    assert sent(api) == [({}, {"filters": filters, "sort": "ts", "limit": 2}),
                         ({}, {"filters": filters, "sort": "ts", "limit": 2, "paging": {"after": "c2"}}),
                         ({}, {"filters": filters, "sort": "ts", "limit": 2, "paging": {"after": "c4"}})]


def test_an_offset_in_the_body_restarts_from_the_newest_value_at_the_depth_cap() -> None:
    t0, t1, t2 = "2026-01-01T00:00:00Z", "2026-01-01T00:00:01Z", "2026-01-01T00:00:02Z"
    api = FakeAPI().on("POST", "/v2/search", 200, {"results": rows(1, 2, ts=t0), "more": True}) \
                   .on("POST", "/v2/search", 200, {"results": [*rows(3, ts=t0), *rows(4, ts=t1)], "more": True}) \
                   .on("POST", "/v2/search", 200, {"results": [*rows(4, ts=t1), *rows(5, ts=t2)], "more": True}) \
                   .on("POST", "/v2/search", 200, {"results": rows(6, ts=t2), "more": False})
    read = {**SEARCH, "paginator": "offset", "max_depth": 4, "incremental": {"field": "ts"}}
    assert read_all(api, read, since=t0) == [1, 2, 3, 4, 5, 6]  # 4 is met twice (at the restart), kept once

    def body(since: str, offset: int) -> dict[str, Any]:
        return {"filters": [{"field": "ts", "op": "GTE", "value": since}], "sort": "ts",
                "page": {"offset": offset, "size": 2}}

    assert sent(api) == [({}, body(t0, 0)), ({}, body(t0, 2)), ({}, body(t1, 0)), ({}, body(t1, 2))]


def test_a_cursor_in_the_body_handed_out_again_stops_the_read() -> None:
    api = FakeAPI().on("POST", "/v2/search", 200, {"results": rows(1, 2), "paging": {"next": {"after": "A"}}}) \
                   .on("POST", "/v2/search", 200, {"results": rows(3, 4), "paging": {"next": {"after": "B"}}}) \
                   .on("POST", "/v2/search", 200, {"results": rows(5, 6), "paging": {"next": {"after": "A"}}})
    with pytest.raises(FatalError) as failure:
        read_all(api, {**SEARCH, "paginator": "after"})
    assert str(failure.value) == ("fake.thing: POST /search: paging does not end: page 3 leads back to a page "
                                  "already asked for")
    assert [body.get("paging") for _, body in sent(api)] == [None, {"after": "A"}, {"after": "B"}]


def test_a_paginator_in_the_query_is_unchanged_by_a_post_body() -> None:
    paginators = {"q": {"type": "offset", "param": "start", "limit": {"param": "limit", "max": 2}}}
    spec = {**API_KEY, "paginators": paginators,
            "entities": {"thing": {"key": "id", "read": {**SEARCH, "paginator": "q"}}}}
    api = FakeAPI().on("POST", "/v2/search", 200, {"results": rows(1)})
    client = make_client(api, spec, {"key": "env:FAKE_KEY"})
    reader = EntityReader(client, "thing", client.connection.connector.entities["thing"])

    async def go() -> list[Any]:
        return [r["id"] async for page in reader.pages() for r in page]

    assert asyncio.run(go()) == [1]
    assert sent(api) == [({"start": "0", "limit": "2"},
                          {"filters": [{"field": "ts", "op": "GTE", "value": None}], "sort": "ts"})]


CONNECTOR = """\
connector: bodypaged
base_url: https://api.example.com
auth: {key: {type: api_key, header: x-key, value: "{{ secrets.key }}"}}
connection: {secrets: {key: {required: true}}}
paginators:
  after: {type: cursor, in: body, param: paging.after, next: paging.next, limit: {param: limit, max: 100}}
entities:
  thing:
    key: id
    custom_fields:
      object: props
      catalog: {path: /fields, key: name, label: label, paginator: after}
    read: {path: /things, paginator: after}
    expand:
      lines: {path: /lines, records: data, paginator: after}
  other:
    key: id
    read: {path: /others, method: POST, body: "{{ since }}", paginator: after}
  searched:
    key: id
    read: {path: /search, method: POST, body: {filter: "{{ since }}"}, paginator: after}
"""


def test_validate_refuses_body_paging_where_no_post_body_is_sent(tmp_path: Path) -> None:
    (tmp_path / "bodypaged.yaml").write_text(CONNECTOR)
    _, problems = load_specs([tmp_path])
    lines = CONNECTOR.splitlines()

    def line_of(marker: str) -> int:
        return next(n for n, text in enumerate(lines, 1) if marker in text)

    message = "paginator 'after' pages in the body (in: body){}"
    assert sorted((p.line, p.field, p.message) for p in problems) == [
        (line_of("catalog:"), "entities.thing.custom_fields.catalog.paginator",
         message.format(", but a field catalog is read by GET")),
        (line_of("read: {path: /things"), "entities.thing.read.paginator",
         message.format(", but this read is a GET; give it method: POST")),
        (line_of("lines:"), "entities.thing.expand.lines.paginator",
         message.format(", but an expansion is read by GET")),
        (line_of("/others"), "entities.other.read.body", message.format(": the body must be a JSON object")),
    ]
