"""`ml-connector discover CONNECTION [ENTITY]`: the entities, and an entity's field declarations drafted from
sampled records, ready to paste into the connector spec (a connector with them validates)."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
import yaml
from click.testing import CliRunner

import ml_connector.commands.discover
from ml_connector.cli import main
from ml_connector.commands.discover import draft
from tests.engine.fakeapi import FakeAPI
from tests.engine.pair_workspace import CONNECTOR, write_pair


@pytest.fixture(autouse=True)
def key_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAKE_KEY", "k-123456")
    monkeypatch.delenv("ML_CONNECTOR_KEY", raising=False)


def test_types_and_required_are_drafted_from_what_the_records_hold() -> None:
    records = [{"id": 1, "price": 2, "at": "2026-01-02T03:04:05Z", "day": "2026-01-02", "tags": ["a"],
                "lines": [{"sku": "x", "qty": 1}], "note": None, "on": True},
               {"id": 2, "price": 2.5, "at": "2026-01-03T00:00:00Z", "day": "2026-01-03", "tags": [],
                "lines": [{"sku": "y", "qty": 2.5, "extra": "z"}], "on": False}]
    assert draft(records, ["id"]) == {
        "id": {"type": "integer", "required": True, "writable": False},
        "price": {"type": "number", "required": True},
        "at": {"type": "datetime", "required": True},
        "day": {"type": "date", "required": True},
        "tags": {"type": "array", "required": True},
        "lines": {"type": "array", "required": True, "fields": {"sku": {"type": "string", "required": True},
                                                                  "qty": {"type": "number", "required": True},
                                                                  "extra": {"type": "string"}}},
        "note": {"type": "any"},
        "on": {"type": "boolean", "required": True}}


def test_discover_drafts_declarations_that_validate_when_pasted(tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    api = FakeAPI().on("GET", "/v2/src/orgs", 200, {"data": [
        {"code": "A", "name": "Acme", "address": {"city": "Bonn", "zip": "53111"}, "size": 10},
        {"code": "B", "name": "Bolt", "address": {"city": "Köln"}, "size": None}]})
    monkeypatch.setattr(ml_connector.commands.discover, "base_transport", lambda: httpx.ASGITransport(app=api.app))
    workspace = write_pair(tmp_path)
    result = CliRunner().invoke(main, ["discover", "api", "src_org", "-w", str(workspace)])
    assert result.exit_code == 0, result.output
    assert result.output.splitlines()[1:] == [
        "fields:",
        "  code: {type: string, required: true, writable: false}",
        "  name: {type: string, required: true}",
        "  address:",
        "    type: object",
        "    required: true",
        "    fields:",
        "      city: {type: string, required: true}",
        "      zip: {type: string}",
        "  size: {type: integer}"]
    drafted = yaml.safe_load(result.output)["fields"]
    pasted = yaml.safe_load(CONNECTOR)
    pasted["entities"]["src_org"]["fields"] = drafted
    (tmp_path / "connectors" / "fake.yaml").write_text(yaml.safe_dump(pasted, sort_keys=False))
    check = CliRunner().invoke(main, ["validate", str(tmp_path / "connectors" / "fake.yaml")])
    assert check.exit_code == 0, check.output


def test_discover_lists_the_entities(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["discover", "api", "-w", str(write_pair(tmp_path))])
    assert result.exit_code == 0, result.output
    assert [line.split()[:2] for line in result.output.splitlines()[2:]] == [
        ["src_org", "code"], ["src_person", "id"], ["org", "id"], ["person", "id"]]
