"""Next-URL paging (`type: next_url`): the next request is a path or URL found in the body, sent as given with no
query parameters, and it must stay under the connection's base URL (a query API that hands out a locator path,
e.g. `"nextRecordsUrl": "/services/data/v66.0/query/01g...-2000"` under a base `.../services/data/v66.0`)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from ml_connector.http.errors import FatalError
from ml_connector.http.reader import EntityReader
from tests.engine.fakeapi import FakeAPI
from tests.engine.test_client import API_KEY, BASE, make_client

ROOT = "/services/data/v66.0"
PAGINATORS = {"soql": {"type": "next_url", "next": "nextRecordsUrl", "done": "done"},
              "link": {"type": "next_url", "next": "links.next"}}
QUERY = {"path": "/query", "params": {"q": "SELECT Id FROM Account"}, "records": "records", "paginator": "soql"}


@pytest.fixture(autouse=True)
def key_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAKE_KEY", "k-123456")


def read_all(api: FakeAPI, read: dict[str, Any], since: str | None = None, max_pages: int | None = None,
             expand: tuple[str, ...] = (), entity: dict[str, Any] | None = None) -> list[Any]:
    spec: dict[str, Any] = {**API_KEY, "base_url": BASE + ROOT, "paginators": PAGINATORS,
                            "entities": {"thing": {"key": "Id", "read": read, **(entity or {})}}}
    if max_pages is not None:
        spec["limits"] = {"max_pages": max_pages}
    client = make_client(api, spec, {"key": "env:FAKE_KEY"})
    reader = EntityReader(client, "thing", client.connection.connector.entities["thing"])

    async def go() -> list[Any]:
        return [r async for page in reader.pages(since=since, expand=expand) for r in page]

    return asyncio.run(go())


def sent(api: FakeAPI) -> list[tuple[str, str, dict[str, str]]]:
    return [(c["method"], c["raw_path"], c["params"]) for c in api.calls()]


def page(*ids: str, done: bool, next_url: str | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"totalSize": 5, "done": done, "records": [{"Id": i} for i in ids]}
    if next_url is not None:
        body["nextRecordsUrl"] = next_url
    return body


def test_an_absolute_path_under_the_base_path_is_followed_with_no_query_parameters() -> None:
    api = FakeAPI()
    api.on("GET", f"{ROOT}/query", 200, page("a", "b", done=False, next_url=f"{ROOT}/query/01gX-2"))
    api.on("GET", f"{ROOT}/query/01gX-2", 200, page("c", "d", done=False, next_url=f"{ROOT}/query/01gX-4"))
    api.on("GET", f"{ROOT}/query/01gX-4", 200, page("e", done=True))
    read = {**QUERY, "incremental": {"field": "SystemModstamp", "param": "since"}}
    assert [r["Id"] for r in read_all(api, read, since="2026-03-01T00:00:00Z")] == ["a", "b", "c", "d", "e"]
    assert sent(api) == [("GET", f"{ROOT}/query", {"q": "SELECT Id FROM Account", "since": "2026-03-01T00:00:00Z"}),
                         ("GET", f"{ROOT}/query/01gX-2", {}),
                         ("GET", f"{ROOT}/query/01gX-4", {})]


def test_done_ends_the_read_even_when_a_next_url_is_given() -> None:
    api = FakeAPI().on("GET", f"{ROOT}/query", 200, page("a", done=True, next_url=f"{ROOT}/query/01gX-1"))
    assert [r["Id"] for r in read_all(api, QUERY)] == ["a"]
    assert sent(api) == [("GET", f"{ROOT}/query", {"q": "SELECT Id FROM Account"})]


def test_without_done_a_missing_next_url_ends_the_read() -> None:
    api = FakeAPI().on("GET", f"{ROOT}/things", 200, {"data": [{"Id": "a"}], "links": {"next": "things/p2"}}) \
                   .on("GET", f"{ROOT}/things/p2", 200, {"data": [{"Id": "b"}], "links": {"next": None}})
    assert [r["Id"] for r in read_all(api, {"path": "/things", "paginator": "link"})] == ["a", "b"]
    assert sent(api) == [("GET", f"{ROOT}/things", {}), ("GET", f"{ROOT}/things/p2", {})]


def test_a_full_url_on_the_same_host_under_the_base_is_followed_with_its_own_query() -> None:
    api = FakeAPI().on("GET", f"{ROOT}/things", 200,
                       {"data": [{"Id": "a"}], "links": {"next": f"{BASE}{ROOT}/things?cursor=c2"}}) \
                   .on("GET", f"{ROOT}/things", 200, {"data": [{"Id": "b"}], "links": {}})
    assert [r["Id"] for r in read_all(api, {"path": "/things", "params": {"sort": "id"}, "paginator": "link"})] \
        == ["a", "b"]
    assert sent(api) == [("GET", f"{ROOT}/things", {"sort": "id"}), ("GET", f"{ROOT}/things", {"cursor": "c2"})]


@pytest.mark.parametrize("link", [
    "/services/data/v65.0/query/01gX-2",  # another API root on the same host
    "/services/data/v66.0evil/query",  # shares the base path's text, not its folder
    f"{ROOT}/../../../admin/query",  # climbs out
    "http://elsewhere.test/services/data/v66.0/query/01gX-2",  # another host
    "https://api.test/services/data/v66.0/query/01gX-2",  # another scheme
])
def test_a_next_url_outside_the_base_url_is_refused_before_anything_is_sent(link: str) -> None:
    api = FakeAPI().on("GET", f"{ROOT}/query", 200, page("a", done=False, next_url=link))
    with pytest.raises(FatalError, match="leaves the connection's base URL"):
        read_all(api, QUERY)
    assert sent(api) == [("GET", f"{ROOT}/query", {"q": "SELECT Id FROM Account"})]


def test_a_next_url_that_repeats_stops_the_read() -> None:
    api = FakeAPI().on("GET", f"{ROOT}/query", 200, page("a", done=False, next_url=f"{ROOT}/query/L-1")) \
                   .on("GET", f"{ROOT}/query/L-1", 200, page("b", done=False, next_url=f"{ROOT}/query/L-2")) \
                   .on("GET", f"{ROOT}/query/L-2", 200, page("c", done=False, next_url=f"{ROOT}/query/L-1"))
    with pytest.raises(FatalError, match="paging does not end: page 3 leads back to a page already asked for"):
        read_all(api, QUERY)
    assert [p for _, p, _ in sent(api)] == [f"{ROOT}/query", f"{ROOT}/query/L-1", f"{ROOT}/query/L-2"]


def test_a_next_url_pointing_at_itself_stops_the_read() -> None:
    api = FakeAPI().on("GET", f"{ROOT}/query", 200, page("a", done=False, next_url=f"{ROOT}/query/L-1")) \
                   .on("GET", f"{ROOT}/query/L-1", 200, page("b", done=False, next_url=f"{ROOT}/query/L-1"))
    with pytest.raises(FatalError, match="paging does not end"):
        read_all(api, QUERY)
    assert [p for _, p, _ in sent(api)] == [f"{ROOT}/query", f"{ROOT}/query/L-1"]


def test_max_pages_bounds_a_next_url_read() -> None:
    api = FakeAPI().on("GET", f"{ROOT}/query", 200, page("a", done=False, next_url=f"{ROOT}/query/L-1")) \
                   .on("GET", f"{ROOT}/query/L-1", 200, page("b", done=False, next_url=f"{ROOT}/query/L-2"))
    with pytest.raises(FatalError, match="more than 2 pages"):
        read_all(api, QUERY, max_pages=2)


def test_a_next_url_that_is_not_text_is_refused() -> None:
    api = FakeAPI().on("GET", f"{ROOT}/query", 200, page("a", done=False) | {"nextRecordsUrl": {"href": "x"}})
    with pytest.raises(FatalError, match="next URL"):
        read_all(api, QUERY)


def test_an_expansion_follows_next_urls_too() -> None:
    api = FakeAPI().on("GET", f"{ROOT}/things", 200, {"data": [{"Id": "a"}]}) \
                   .on("GET", f"{ROOT}/things/a/parts", 200, {"data": [{"sku": 1}], "links": {"next": f"{ROOT}/p/2"}}) \
                   .on("GET", f"{ROOT}/p/2", 200, {"data": [{"sku": 2}], "links": {}})
    entity = {"expand": {"parts": {"path": "/things/{{ id }}/parts", "paginator": "link"}}}
    rows = read_all(api, {"path": "/things"}, expand=("parts",), entity=entity)
    assert rows == [{"Id": "a", "parts": [{"sku": 1}, {"sku": 2}]}]
    assert sent(api) == [("GET", f"{ROOT}/things", {}), ("GET", f"{ROOT}/things/a/parts", {}),
                         ("GET", f"{ROOT}/p/2", {})]
