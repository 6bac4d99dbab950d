"""The 30-minute soak's duplicate (issue 19): a person whose create had landed earlier was created again because the
read-back of its search hit got a malformed 200 answer, which counted as "no such record"."""

from __future__ import annotations

from typing import Any

import pytest

from bench.soak import _plain
from ml_connector.sandbox.core import Fault
from tests.e2e.conftest import Env, flows

LONG_AGO = "2026-01-01T00:00:00Z"  # older than the spec's search_lag: only the search (not the recent list) shows it


def _persons(env: Env, contact_id: str) -> list[dict[str, Any]]:
    key = env.crm.store.field_key("persons", "ERP Contact Id")
    return [p for p in env.crm.store.all("persons")
            if not p.get("is_deleted") and p["custom_fields"].get(key) == contact_id]


@pytest.mark.parametrize(("raw", "content_type"), [
    ('{"success": true}', "application/json"),
    ("<html><body><h1>502 Bad Gateway</h1></body></html>", "text/html"),
    ('{"success": true, "data": {"id": 1', "application/json")])
def test_a_person_whose_read_back_answer_is_malformed_is_not_created_again(
        env: Env, raw: str, content_type: str) -> None:
    code, _ = env.run_json()
    assert code == 0
    template = next(c for c in env.qad.store.all("customerV2s") if c["isActive"] and c["contacts"])
    contact = {**template["contacts"][0], "contactId": "DUP-CT-1", "isKeyContact": True}
    env.qad.store.insert("customerV2s", {**_plain(template), "customerCode": "DUP01", "name": "Dup Customer",
                                         "contacts": [contact]})
    # the create an earlier run sent (its answer lost, the run killed) landed long ago
    landed = env.crm.store.insert("persons", {"name": "Landed Earlier", "add_time": LONG_AGO,
                                              "update_time": LONG_AGO,
                                              "custom_fields": {"ERP Contact Id": "DUP-CT-1"}})
    env.crm.config.update(search_index_lag_seconds=0)
    env.crm.faults.add(Fault(method="GET", path=f"/api/v2/persons/{landed['id']}", status=200, raw=raw,
                             content_type=content_type))
    code, summary = env.run_json()
    assert code == 0, summary
    assert [p["id"] for p in _persons(env, "DUP-CT-1")] == [landed["id"]]
    assert flows(summary)["contacts_to_persons"]["updated"] == 1
