"""An upsert strategy with an `update` operation sends records whose target is known through update, by id.

An upsert matches on a key field of the target; a target record made elsewhere (then linked through a two-way
pair) does not hold our key yet, so an upsert by key would create a second record. Known targets go by id.
"""

from __future__ import annotations

import asyncio
import json

import pytest

from ml_connector.http.writer import EntityWriter, PushItem
from tests.engine import configs
from tests.engine.fakeapi import FakeAPI
from tests.engine.test_client import API_KEY, make_client

RESULTS = {"match": "position", "items": "data", "id": "details.id", "failed": "status != 'success'",
           "created": "action == 'insert'"}
ENTITY = {"key": "id", "write": {
    "strategy": "upsert",
    "create": {"method": "POST", "path": "/things/upsert",
               "batch": {"size": 100, "body": {"data": "{{ records }}", "duplicate_check_fields": ["Key"]}},
               "results": RESULTS},
    "update": {"method": "PUT", "path": "/things", "merge": {"id": "{{ target_id }}"},
               "batch": {"size": 100, "body": {"data": "{{ records }}"}}, "results": RESULTS}}}


@pytest.fixture(autouse=True)
def key_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAKE_KEY", "k-123456")


def test_known_targets_are_updated_by_id_and_unknown_ones_upserted_by_key() -> None:
    api = FakeAPI()
    api.on("POST", "/v2/things/upsert", 200, {"data": [{"status": "success", "action": "insert",
                                                         "details": {"id": "900"}}]})
    api.on("PUT", "/v2/things", 200, {"data": [{"status": "success", "details": {"id": "17"}}]})
    writer = EntityWriter(make_client(api, API_KEY, {"key": "env:FAKE_KEY"}), "thing", configs.entity(ENTITY),
                          match_field="Key")
    items = [PushItem("C1", {"Key": "C1", "Name": "New"}, "C1"),
             PushItem("C2", {"Key": "C2", "Name": "Linked"}, "C2", target_id="17")]
    results = {r.item.source_key: (r.action, r.target_id) for r in asyncio.run(writer.push(items))}
    assert results == {"C1": ("create", "900"), "C2": ("update", "17")}
    assert [json.loads(c["body"]) for c in api.calls("POST")] == [
        {"data": [{"Key": "C1", "Name": "New"}], "duplicate_check_fields": ["Key"]}]
    assert [json.loads(c["body"]) for c in api.calls("PUT")] == [{"data": [{"Key": "C2", "Name": "Linked",
                                                                            "id": "17"}]}]
