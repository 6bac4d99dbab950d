"""A create of unknown outcome that waited out its grace period is looked for before any new create; a search hit
read back through a malformed 200 answer (a body without the record) is not "no such record" (the soak's
duplicate SOAK-CT-0263, issue 19)."""

from __future__ import annotations

import asyncio

import pytest

from ml_connector.http.catalog import FieldCatalog
from ml_connector.http.writer import EntityWriter, PushItem, PushResult
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
CATALOG = FieldCatalog("custom_fields", {"ERP Id": "f00d"}, "fake.thing")
PAYLOAD = {"name": "Ada", "custom_fields": {"ERP Id": "C-1"}}
# the search shows custom fields as bare strings: the hit is read in full to confirm it
HIT = {"data": [{"id": 7, "custom_fields": ["C-1"]}]}
STORED = {"data": {"id": 7, "name": "Ada", "custom_fields": {"f00d": "C-1"}}}


def push(api: FakeAPI, item: PushItem) -> PushResult:
    writer = EntityWriter(make_client(api, API_KEY, {"key": "env:FAKE_KEY"}), "thing", configs.entity(ENTITY),
                          match_field="custom_fields.ERP Id", catalog=CATALOG)
    [result] = asyncio.run(writer.push([item]))
    return result


@pytest.mark.parametrize("unknown_create", [True, False], ids=["look", "resolve"])
def test_a_hit_read_back_through_a_body_without_the_record_is_read_again_not_created_twice(
        unknown_create: bool) -> None:
    api = FakeAPI().on("GET", "/v2/things/search", 200, HIT)
    api.on("GET", "/v2/things/7", 200, {"success": True})  # a malformed 200: valid JSON, the record missing
    api.on("GET", "/v2/things/7", 200, STORED)
    if not unknown_create:  # a record the id map does not know, found: updated (a look confirms it unchanged)
        api.on("PATCH", "/v2/things/7", 200, {"data": {"id": 7}})
    result = push(api, PushItem("C-1", PAYLOAD, "C-1", unknown_create=unknown_create))
    assert api.calls("POST") == []  # the record exists: a create would duplicate it
    assert (result.ok, result.target_id) == (True, "7")
    assert len(api.calls("GET", "/v2/things/7")) == 2
    api.verify()


def test_a_hit_that_is_really_gone_is_no_match() -> None:
    """A 404 on the read-back still means the hit is not there (deleted between the search and the get)."""
    api = FakeAPI().on("GET", "/v2/things/search", 200, HIT)
    api.on("GET", "/v2/things/7", 404, {"error": "not found"})
    api.on("POST", "/v2/things", 201, {"data": {"id": 8}})
    result = push(api, PushItem("C-1", PAYLOAD, "C-1", unknown_create=True))
    assert (result.action, result.target_id) == ("create", "8")
    api.verify()



def test_a_re_check_whose_read_back_stays_malformed_parks_the_create_as_unknown() -> None:
    """Retries spent on a malformed read-back end the re-check, not the push: the create may have landed."""
    api = FakeAPI().on("GET", "/v2/things/search", 200, {"data": []})  # resolve: not there yet
    api.on("POST", "/v2/things", 504, {"error": "gateway timeout"})  # the create's answer is lost
    api.on("GET", "/v2/things/search", 200, HIT)  # the re-check's search shows it
    api.on("GET", "/v2/things/7", 200, {"success": True})  # and every read-back of the hit is malformed
    result = push(api, PushItem("C-1", PAYLOAD, "C-1"))
    assert (result.ok, result.unknown) == (False, True)
    assert result.error is not None and result.error.startswith("outcome unknown: POST /v2/things -> HTTP 504")
    assert len(api.calls("POST")) == 1 and len(api.calls("GET", "/v2/things/7")) == 4  # the connector's retries
    api.verify()


def test_a_look_whose_search_is_refused_keeps_the_create_unknown() -> None:
    """A later run must still look for it first (a strategy without search would otherwise create it blindly)."""
    api = FakeAPI().on("GET", "/v2/things/search", 400, {"error": "term too long"})
    result = push(api, PushItem("C-1", PAYLOAD, "C-1", unknown_create=True))
    assert (result.ok, result.unknown) == (False, True)
    assert api.calls("POST") == []
    api.verify()
