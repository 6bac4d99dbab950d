"""Query reads that page inside the query text: a paginator with `in: template` hands its values to the body template
(`page.offset`, `page.limit`, `page.number`, `page.cursor`); past the depth the API allows, `narrow: key` starts a
new query after the last key read (`page.after`); `sql_string` quotes a value as a string literal of the query."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from ml_connector.errors import MlConnectorError
from ml_connector.http.errors import FatalError
from ml_connector.http.reader import EntityReader
from ml_connector.spec import load_specs
from ml_connector.transform.expressions import compile_template
from tests.engine.fakeapi import FakeAPI
from tests.engine.test_client import API_KEY, make_client

PAGINATORS = {
    "offset": {"type": "offset", "in": "template", "param": "offset", "has_more": "info.more_records",
               "limit": {"param": "limit", "max": 2}},
    "pages": {"type": "page", "in": "template", "param": "page", "limit": {"param": "per_page", "max": 2}},
}
QUERY = ("select id, ts from T where {% if since %}ts >= {{ since | sql_string }} and {% endif %}"
         "{% if page.after %}id > {{ page.after | sql_string }} and {% endif %}id is not null "
         "order by id limit {{ page.limit }} offset {{ page.offset }}")
READ = {"path": "/query", "method": "POST", "records": "data", "paginator": "offset",
        "body": {"select_query": QUERY}}


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


def page(*ids: str, more: bool) -> dict[str, Any]:
    return {"data": [{"id": i, "ts": "2026-01-01T00:00:00Z"} for i in ids], "info": {"more_records": more}}


def queries(api: FakeAPI) -> list[tuple[dict[str, str], str]]:
    return [(c["params"], json.loads(c["body"])["select_query"]) for c in api.calls()]


def test_the_offset_and_limit_go_into_the_query_text_not_the_request() -> None:
    api = FakeAPI().on("POST", "/v2/query", 200, page("01", "02", more=True)) \
                   .on("POST", "/v2/query", 200, page("03", "04", more=True)) \
                   .on("POST", "/v2/query", 200, page("05", more=False))
    assert read_all(api, READ) == ["01", "02", "03", "04", "05"]
    base = "select id, ts from T where id is not null order by id limit 2 offset {}"
    assert queries(api) == [({}, base.format(0)), ({}, base.format(2)), ({}, base.format(4))]


def test_the_watermark_is_quoted_as_a_string_literal() -> None:
    api = FakeAPI().on("POST", "/v2/query", 200, page("01", more=False))
    read = {**READ, "incremental": {"field": "ts"}}
    assert read_all(api, read, since="2026-01-01T00:00:00+01:00") == ["01"]
    assert queries(api) == [({}, "select id, ts from T where ts >= '2026-01-01T00:00:00+01:00' and id is not null "
                                 "order by id limit 2 offset 0")]


def test_past_the_depth_cap_a_new_query_starts_after_the_last_key() -> None:
    api = FakeAPI().on("POST", "/v2/query", 200, page("01", "02", more=True)) \
                   .on("POST", "/v2/query", 200, page("03", "04", more=True)) \
                   .on("POST", "/v2/query", 200, page("05", "06", more=True)) \
                   .on("POST", "/v2/query", 200, page("07", more=False))
    read = {**READ, "max_depth": 4, "narrow": "key"}
    assert read_all(api, read) == ["01", "02", "03", "04", "05", "06", "07"]
    first = "select id, ts from T where id is not null order by id limit 2 offset {}"
    after = "select id, ts from T where id > '04' and id is not null order by id limit 2 offset {}"
    assert queries(api) == [({}, first.format(0)), ({}, first.format(2)), ({}, after.format(0)),
                            ({}, after.format(2))]


def test_narrowing_by_key_that_makes_no_progress_stops_the_read() -> None:
    """An API that ignores the key condition would hand out the same records forever."""
    api = FakeAPI().on("POST", "/v2/query", 200, page("01", "02", more=True))
    read = {**READ, "max_depth": 2, "narrow": "key"}
    with pytest.raises(FatalError) as failure:
        read_all(api, read)
    assert str(failure.value) == ("fake.thing: narrowing by key makes no progress: the query after id '02' "
                                  "ended at '02' again")
    assert len(api.calls()) == 2


def test_a_page_number_and_size_are_template_values_too() -> None:
    read = {**READ, "paginator": "pages",
            "body": {"q": "select id from T limit {{ page.limit }} offset {{ (page.number - 1) * page.limit }}"}}
    api = FakeAPI().on("POST", "/v2/query", 200, page("01", "02", more=True)) \
                   .on("POST", "/v2/query", 200, page("03", more=False))
    assert read_all(api, read) == ["01", "02", "03"]
    assert [json.loads(c["body"])["q"] for c in api.calls()] == ["select id from T limit 2 offset 0",
                                                                  "select id from T limit 2 offset 2"]


@pytest.mark.parametrize(("value", "style", "expected"), [
    ("it's", "", "'it''s'"),
    ("a\\b", "", "'a\\b'"),
    ("it's", "('backslash')", "'it\\'s'"),
    ("a\\b\n", "('backslash')", "'a\\\\b\\n'"),
    (42, "", "'42'"),
])
def test_sql_string_quotes_and_escapes(value: Any, style: str, expected: str) -> None:
    assert compile_template("{{ v | sql_string" + style + " }}").evaluate({"v": value}) == expected


@pytest.mark.parametrize("value", [None, "a\x00b"])
def test_sql_string_refuses_what_no_literal_can_hold(value: Any) -> None:
    with pytest.raises((MlConnectorError, ValueError), match="sql_string"):
        compile_template("{{ v | sql_string }}").evaluate({"v": value})


def test_a_depth_cap_needs_an_incremental_field_unless_it_narrows_by_key(tmp_path: Path) -> None:
    spec = """\
connector: capped
base_url: https://api.example.com
auth: {key: {type: api_key, header: x-key, value: k}}
paginators: {offset: {type: offset, in: template, param: offset, limit: {param: limit, max: 2000}}}
entities:
  by_cursor:
    key: id
    read: {path: /query, method: POST, body: {q: "limit {{ page.limit }} offset {{ page.offset }}"},
           paginator: offset, max_depth: 100000}
  by_key:
    key: id
    read: {path: /query, method: POST, body: {q: "limit {{ page.limit }} offset {{ page.offset }}"},
           paginator: offset, max_depth: 100000, narrow: key}
"""
    (tmp_path / "capped.yaml").write_text(spec)
    _, problems = load_specs([tmp_path])
    assert [(p.field, p.message) for p in problems] == [
        ("entities.by_cursor.read", "missing required key 'incremental'")]


def test_template_paging_needs_a_post_read_with_a_body(tmp_path: Path) -> None:
    spec = """\
connector: templated
base_url: https://api.example.com
auth: {key: {type: api_key, header: x-key, value: k}}
paginators: {offset: {type: offset, in: template, param: offset, limit: {param: limit, max: 200}}}
entities:
  listed:
    key: id
    read: {path: /things, paginator: offset}
    expand:
      lines: {path: /lines, paginator: offset}
  queried:
    key: id
    read: {path: /query, method: POST, body: "select id limit {{ page.limit }} offset {{ page.offset }}",
           paginator: offset}
"""
    (tmp_path / "templated.yaml").write_text(spec)
    _, problems = load_specs([tmp_path])
    message = "paginator 'offset' pages in the body template (in: template), but {}"
    assert sorted((p.field, p.message) for p in problems) == [
        ("entities.listed.expand.lines.paginator", message.format("an expansion is read by GET")),
        ("entities.listed.read.paginator",
         message.format("this read sends no body to place them in; give it method: POST and a body")),
    ]
