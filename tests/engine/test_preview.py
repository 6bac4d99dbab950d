"""`ml-connector preview FLOW --limit N`: source record, mapped payload and, for records the target already holds,
a per-field diff against its current values; nothing is written (the strict FakeAPI allows no write)."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner, Result

import ml_connector.commands.preview
from ml_connector.cli import main
from ml_connector.workspace import Workspace
from tests.engine.fakeapi import FakeAPI
from tests.engine.pair_workspace import write_pair


@pytest.fixture(autouse=True)
def key_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAKE_KEY", "k-123456")
    monkeypatch.delenv("ML_CONNECTOR_KEY", raising=False)


def workspace(tmp_path: Path) -> str:
    path = write_pair(tmp_path)
    state = Workspace.open(path).state()
    try:
        state.id_maps.save("orgs", [("A", "7", "old-hash")])  # A was synced before, to target 7
    finally:
        state.close()
    return str(path)


def preview(monkeypatch: pytest.MonkeyPatch, api: FakeAPI, *args: str) -> Result:
    monkeypatch.setattr(ml_connector.commands.preview, "base_transport", lambda: httpx.ASGITransport(app=api.app))
    return CliRunner().invoke(main, ["preview", *args])


def source(api: FakeAPI) -> FakeAPI:
    return api.on("GET", "/v2/src/orgs", 200, {"data": [
        {"code": "A", "name": "Acme GmbH"}, {"code": "B", "name": "Bolt"}, {"code": "C", "name": "Cog"}]})


def test_preview_shows_payloads_and_per_field_diffs_and_writes_nothing(tmp_path: Path,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    api = source(FakeAPI())
    api.on("GET", "/v2/orgs/7", 200, {"data": {"id": 7, "code": "A", "name": "Acme"}})  # by the id map
    api.on("GET", "/v2/orgs/search", 200, {"data": [{"id": 8, "code": "B"}]})  # B: found by the match search
    api.on("GET", "/v2/orgs/search", 200, {"data": []})  # C: not in the target
    api.on("GET", "/v2/orgs/8", 200, {"data": {"id": 8, "code": "B", "name": "Bolt", "extra": 1}})
    path = workspace(tmp_path)
    result = preview(monkeypatch, api, "orgs", "-w", path)
    assert result.exit_code == 0, result.output
    assert result.output.splitlines() == [
        "[1] A: update target 7 (found by id map)",
        '  source:  {"code": "A", "name": "Acme GmbH"}',
        '  payload: {"code": "A", "name": "Acme GmbH"}',
        "  changes:",
        '    name: "Acme" -> "Acme GmbH"',
        "  (1 field already as sent)",
        "[2] B: update target 8 (found by match)",
        '  source:  {"code": "B", "name": "Bolt"}',
        '  payload: {"code": "B", "name": "Bolt"}',
        "  (2 fields already as sent)",
        "[3] C: create",
        '  source:  {"code": "C", "name": "Cog"}',
        '  payload: {"code": "C", "name": "Cog"}']
    assert {call["method"] for call in api.requests} == {"GET"}
    state = Workspace.open(path).state()
    try:
        assert state.audit.query() == [] and state.runs.recent(5) == []  # the state is not written either
    finally:
        state.close()


def test_preview_stops_at_the_limit_and_shows_deferred_records(tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    api = FakeAPI().on("GET", "/v2/src/people", 200, {"data": [
        {"id": "p1", "name": "Ann", "org": "A"}, {"id": "p2", "name": "Ben", "org": "B"},
        {"id": "p3", "name": "Cy", "org": "A"}]})
    result = preview(monkeypatch, api, "people", "--limit", "2", "--json", "-w", workspace(tmp_path))
    assert result.exit_code == 0, result.output
    items = json.loads(result.output)
    assert [(i["key"], i["action"]) for i in items] == [("p1", "create"), ("p2", "deferred")]
    assert items[0]["payload"] == {"name": "Ann", "org_id": "7"}
    assert items[1]["reason"] == "orgs has not synced source key 'B' yet"
    assert api.calls("POST") == []  # (the strict FakeAPI fails on any call it was not told to expect)


def test_a_value_the_target_carries_with_additions_is_no_change() -> None:
    from ml_connector.commands.preview import Change, compare

    payload = {"name": "Gear", "prices": [{"price": 5, "currency": "USD"}], "custom_fields": {"ERP": "G-1"}}
    current = {"name": "Gear", "prices": [{"price": 5, "currency": "USD", "cost": 0, "product_id": 9}],
               "custom_fields": {"ERP": "G-2", "Other": "x"}}
    assert compare(payload, current) == ([Change("custom_fields.ERP", "G-2", "G-1")], 2)
