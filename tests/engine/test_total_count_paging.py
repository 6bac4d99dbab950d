"""Page and offset paginators with `total` (the unpaged record count each page reports): paging stops once the pages
read cover the total, or on a short page, whichever comes first, so an API that repeats its last page when asked past
the end (clamping) never yields duplicates or loops. A total that is not a non-negative integer is an error; a total
that changes between pages is read again on each. Bracketed parameter names are sent as written."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from ml_connector.http.errors import FatalError
from ml_connector.http.reader import EntityReader
from tests.engine.fakeapi import FakeAPI
from tests.engine.test_client import API_KEY, make_client

PAGE, SIZE = "searchCriteria[currentPage]", "searchCriteria[pageSize]"
PAGINATORS = {
    "pages": {"type": "page", "param": PAGE, "limit": {"param": SIZE, "max": 2}, "total": "total_count"},
    "offsets": {"type": "offset", "param": "offset", "limit": {"param": "limit", "max": 2}, "total": "meta.total"},
    "plain": {"type": "page", "param": PAGE, "limit": {"param": SIZE, "max": 2}},
}


@pytest.fixture(autouse=True)
def key_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAKE_KEY", "k-123456")


def read_all(api: FakeAPI, paginator: str = "pages") -> list[Any]:
    read = {"path": "/orders", "records": "items", "paginator": paginator, "params": {"fields": "items[id]"}}
    spec = {**API_KEY, "paginators": PAGINATORS, "entities": {"order": {"key": "id", "read": read}}}
    client = make_client(api, spec, {"key": "env:FAKE_KEY"})
    reader = EntityReader(client, "order", client.connection.connector.entities["order"])

    async def go() -> list[Any]:
        return [r["id"] async for page in reader.pages() for r in page]

    return asyncio.run(go())


def page(*ids: int, total: Any) -> dict[str, Any]:
    return {"items": [{"id": i} for i in ids], "search_criteria": {}, "total_count": total}


def asked(api: FakeAPI) -> list[dict[str, str]]:
    return [c["params"] for c in api.calls()]


def pages(*numbers: int) -> list[dict[str, str]]:
    return [{"fields": "items[id]", PAGE: str(n), SIZE: "2"} for n in numbers]


def test_a_total_of_zero_reads_one_empty_page() -> None:
    api = FakeAPI().on("GET", "/v2/orders", 200, page(total=0))
    assert read_all(api) == []
    assert asked(api) == pages(1)


def test_a_total_that_fills_the_last_page_asks_no_further_page() -> None:
    api = FakeAPI().on("GET", "/v2/orders", 200, page(1, 2, total=4)).on("GET", "/v2/orders", 200, page(3, 4, total=4))
    assert read_all(api) == [1, 2, 3, 4]
    assert asked(api) == pages(1, 2)  # the second page is the last: page 3 is never asked for


def test_a_clamping_server_that_repeats_the_last_page_yields_no_duplicates() -> None:
    api = FakeAPI().on("GET", "/v2/orders", 200, page(1, 2, total=6)).on("GET", "/v2/orders", 200, page(3, 4, total=6))
    api.on("GET", "/v2/orders", 200, page(5, 6, total=6))  # and again for any page past the end (FakeAPI repeats it)
    assert read_all(api) == [1, 2, 3, 4, 5, 6]
    assert asked(api) == pages(1, 2, 3)


def test_without_a_total_the_same_clamping_server_is_caught_only_after_asking_past_the_end() -> None:
    api = FakeAPI().on("GET", "/v2/orders", 200, page(1, 2, total=4)).on("GET", "/v2/orders", 200, page(3, 4, total=4))
    with pytest.raises(FatalError, match="page 3 repeats page 2"):
        read_all(api, "plain")
    assert asked(api) == pages(1, 2, 3)


def test_a_short_page_ends_before_the_total_is_reached() -> None:
    api = FakeAPI().on("GET", "/v2/orders", 200, page(1, 2, total=5)).on("GET", "/v2/orders", 200, page(3, 4, total=5))
    api.on("GET", "/v2/orders", 200, page(5, total=5))
    assert read_all(api) == [1, 2, 3, 4, 5]
    assert asked(api) == pages(1, 2, 3)
    shrunk = FakeAPI().on("GET", "/v2/orders", 200, page(1, 2, total=9)).on("GET", "/v2/orders", 200, page(3, total=9))
    assert read_all(shrunk) == [1, 2, 3]  # records left while paging: the short page ends it
    assert asked(shrunk) == pages(1, 2)


def test_a_total_that_changes_is_read_again_on_each_page() -> None:
    grown = FakeAPI().on("GET", "/v2/orders", 200, page(1, 2, total=4))
    grown.on("GET", "/v2/orders", 200, page(3, 4, total=5)).on("GET", "/v2/orders", 200, page(5, total=5))
    assert read_all(grown) == [1, 2, 3, 4, 5]
    assert asked(grown) == pages(1, 2, 3)
    fell = FakeAPI().on("GET", "/v2/orders", 200, page(1, 2, total=6)).on("GET", "/v2/orders", 200, page(3, 4, total=4))
    assert read_all(fell) == [1, 2, 3, 4]
    assert asked(fell) == pages(1, 2)


@pytest.mark.parametrize("total", [None, "4", -1, 2.5, True, [4], {"n": 4}])
def test_a_total_that_is_not_a_count_is_an_error(total: Any) -> None:
    body = page(1, 2, total=total)
    if total is None:
        del body["total_count"]
    api = FakeAPI().on("GET", "/v2/orders", 200, body)
    with pytest.raises(FatalError, match=r"total \(total_count\)"):
        read_all(api)
    assert asked(api) == pages(1)


def test_a_total_is_checked_on_the_last_page_too() -> None:
    api = FakeAPI().on("GET", "/v2/orders", 200, page(1, total="1"))
    with pytest.raises(FatalError, match="not a count of records"):
        read_all(api)


def test_an_offset_paginator_stops_at_its_total() -> None:
    api = FakeAPI().on("GET", "/v2/orders", 200, {"items": [{"id": 1}, {"id": 2}], "meta": {"total": 4}})
    api.on("GET", "/v2/orders", 200, {"items": [{"id": 3}, {"id": 4}], "meta": {"total": 4}})
    assert read_all(api, "offsets") == [1, 2, 3, 4]
    assert asked(api) == [{"fields": "items[id]", "offset": "0", "limit": "2"},
                          {"fields": "items[id]", "offset": "2", "limit": "2"}]


def test_bracketed_parameter_names_are_sent_as_written() -> None:
    api = FakeAPI().on("GET", "/v2/orders", 200, page(1, total=1))
    read_all(api)
    [call] = api.calls()
    assert set(call["params"]) == {"fields", "searchCriteria[currentPage]", "searchCriteria[pageSize]"}
    assert call["params"]["searchCriteria[pageSize]"] == "2"
