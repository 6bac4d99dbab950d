"""Fields the target lacks: a mapping's `ensure_fields` has the custom fields it writes created (connector
`custom_fields.create`) once, before any record of the flow is written; `plan` lists them and creates nothing."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

from ml_connector.http.catalog import LazyCatalog
from ml_connector.report import run_table
from ml_connector.spec import load_specs
from ml_connector.store import State
from ml_connector.sync.flow import FlowContext, FlowRun, FlowSummary
from ml_connector.transform.mapping import CompiledMapping
from tests.engine.configs import entity, mapping
from tests.engine.fakeapi import FakeAPI
from tests.engine.flowkit import NOW, SOURCE, client

TARGET = entity({
    "key": "id",
    "custom_fields": {
        "object": "custom",
        "catalog": {"path": "/fields", "records": "data", "key": "key", "label": "name"},
        "create": {"method": "POST", "path": "/fields", "key": "data.key",
                   "body": {"name": "{{ field.label }}", "slug": "{{ field.name }}", "field_type": "{{ field.type }}"}},
    },
    "write": {"strategy": "create_only", "create": {"method": "POST", "path": "/items", "id": "data.id"}},
})
FLOW = {"flow": "things", "from": {"connection": "src", "entity": "thing"},
        "to": {"connection": "dst", "entity": "item"}, "key": "code",
        "fields": {"name": "name", "custom.ERP Id": "code", "custom.Loyalty Tier": "tier"},
        "ensure_fields": {"Loyalty Tier": "enum", "ERP Id": "varchar"}}
THINGS = {"data": [{"code": "A", "name": "Alpha", "tier": "gold", "updated": "2026-03-01T10:00:00Z"},
                   {"code": "B", "name": "Beta", "tier": "silver", "updated": "2026-03-01T10:01:00Z"}]}
ERP_ID = {"key": "k-erp", "name": "ERP Id"}
TIER = {"key": "k-tier", "name": "Loyalty Tier"}


def run_flow(state: State, source: FakeAPI, target: FakeAPI, *, dry_run: bool = False) -> FlowSummary:
    config = mapping(FLOW)
    target_client = client(target, "dst")
    context = FlowContext(run_id="r1", state=state, source=client(source, "src"), target=target_client,
                          source_entity=SOURCE, target_entity=TARGET, mapping=CompiledMapping(config),
                          known_flows={config.flow}, target_catalog=LazyCatalog(target_client, "item",
                                                                                TARGET.custom_fields),
                          dry_run=dry_run, now=lambda: NOW)
    return asyncio.run(FlowRun(config, context).execute())


def calls(api: FakeAPI) -> list[tuple[str, str, Any]]:
    return [(c["method"], c["path"], json.loads(c["body"]) if c["body"] else None) for c in api.requests]


def test_run_creates_a_missing_field_once_before_any_record_is_written() -> None:
    source = FakeAPI().on("GET", "/v2/things", 200, THINGS)
    target = FakeAPI().on("GET", "/v2/fields", 200, {"data": [ERP_ID]}) \
                      .on("POST", "/v2/fields", 201, {"data": {"key": "k-tier"}}) \
                      .on("GET", "/v2/fields", 200, {"data": [ERP_ID, TIER]}) \
                      .on("POST", "/v2/items", 201, {"data": {"id": 1}}) \
                      .on("POST", "/v2/items", 201, {"data": {"id": 2}})
    state = State(":memory:")
    summary = run_flow(state, source, target)
    assert (summary.status, summary.created, summary.new_fields) == ("ok", 2, ["Loyalty Tier"])
    assert calls(target) == [
        ("GET", "/v2/fields", None),
        ("POST", "/v2/fields", {"name": "Loyalty Tier", "slug": "loyalty_tier", "field_type": "enum"}),
        ("GET", "/v2/fields", None),  # the catalog, read again after the creation
        ("POST", "/v2/items", {"name": "Alpha", "custom": {"k-erp": "A", "k-tier": "gold"}}),
        ("POST", "/v2/items", {"name": "Beta", "custom": {"k-erp": "B", "k-tier": "silver"}}),
    ]

    added = {"data": [{"code": "C", "name": "Gamma", "tier": "gold", "updated": "2026-03-01T11:00:00Z"}]}
    source = FakeAPI().on("GET", "/v2/things", 200, added)
    target = FakeAPI().on("GET", "/v2/fields", 200, {"data": [ERP_ID, TIER]}).on("POST", "/v2/items", 201,
                                                                                  {"data": {"id": 3}})
    summary = run_flow(state, source, target)  # the field exists now: nothing is created again
    assert (summary.status, summary.created, summary.new_fields) == ("ok", 1, [])
    assert [(m, p) for m, p, _ in calls(target)] == [("GET", "/v2/fields"), ("POST", "/v2/items")]


def test_a_created_field_the_catalog_does_not_list_yet_is_written_by_the_key_in_the_answer() -> None:
    source = FakeAPI().on("GET", "/v2/things", 200, {"data": THINGS["data"][:1]})
    target = FakeAPI().on("GET", "/v2/fields", 200, {"data": [ERP_ID]}) \
                      .on("POST", "/v2/fields", 201, {"data": {"key": "k-tier"}}) \
                      .on("GET", "/v2/fields", 200, {"data": [ERP_ID]}) \
                      .on("POST", "/v2/items", 201, {"data": {"id": 1}})
    summary = run_flow(State(":memory:"), source, target)
    assert (summary.status, summary.created, summary.new_fields) == ("ok", 1, ["Loyalty Tier"])
    assert calls(target)[-1] == ("POST", "/v2/items", {"name": "Alpha", "custom": {"k-erp": "A", "k-tier": "gold"}})


def test_plan_lists_the_fields_it_would_create_and_writes_nothing() -> None:
    source = FakeAPI().on("GET", "/v2/things", 200, THINGS)
    target = FakeAPI().on("GET", "/v2/fields", 200, {"data": []})
    summary = run_flow(State(":memory:"), source, target, dry_run=True)
    assert (summary.status, summary.created, summary.new_fields) == ("ok", 2, ["ERP Id", "Loyalty Tier"])
    assert calls(target) == [("GET", "/v2/fields", None)]
    table = run_table({"run_id": "r1", "status": "ok", "flows": [summary.as_dict()]}, plan=True)
    assert "  things: would create custom field(s) ERP Id, Loyalty Tier" in table.splitlines()


def test_a_failed_field_creation_fails_the_flow_and_writes_no_record() -> None:
    source = FakeAPI().on("GET", "/v2/things", 200, THINGS)
    target = FakeAPI().on("GET", "/v2/fields", 200, {"data": [ERP_ID]}) \
                      .on("POST", "/v2/fields", 400, {"error": "unknown field type"})
    state = State(":memory:")
    summary = run_flow(state, source, target)
    assert summary.status == "failed" and summary.created == 0
    assert summary.error is not None and summary.error.startswith(
        "dst.item: could not create custom field 'Loyalty Tier' (needed by flow things): ")
    assert [(m, p) for m, p, _ in calls(target)] == [("GET", "/v2/fields"), ("POST", "/v2/fields")]
    assert state.id_maps.get_many("things", ["A", "B"]) == {}
    assert state.watermarks.get("things") is None


def test_an_answer_without_the_new_key_fails_the_flow() -> None:
    source = FakeAPI().on("GET", "/v2/things", 200, THINGS)
    target = FakeAPI().on("GET", "/v2/fields", 200, {"data": [ERP_ID]}).on("POST", "/v2/fields", 200, {"ok": True})
    summary = run_flow(State(":memory:"), source, target)
    assert summary.status == "failed"
    assert summary.error == ("dst.item: could not create custom field 'Loyalty Tier' (needed by flow things): "
                             "the answer has no key at data.key")


CONNECTOR = """\
connector: crm
base_url: https://api.example.com
auth: {key: {type: api_key, header: x-key, value: "{{ secrets.key }}"}}
connection: {secrets: {key: {required: true}}}
entities:
  account:
    key: id
    custom_fields:
      object: props
      catalog: {path: /fields, key: name, label: label}
    write: {strategy: create_only, create: {method: POST, path: /accounts}}
  contact:
    key: id
    write: {strategy: create_only, create: {method: POST, path: /contacts}}
  thing:
    key: id
    read: {path: /things}
"""
INTEGRATION = "integration: pair\nconnections: {a: {connector: crm}}\n"
FLOWS = {
    "accounts.yaml": """\
flow: accounts
from: {connection: a, entity: thing}
to: {connection: a, entity: account}
key: id
fields: {props.Tier: tier}
ensure_fields: {Tier: enum}
""",
    "contacts.yaml": """\
flow: contacts
from: {connection: a, entity: thing}
to: {connection: a, entity: contact}
key: id
fields: {name: name}
ensure_fields: {Tier: enum}
""",
}


def test_validate_names_ensured_fields_that_cannot_be_created(tmp_path: Path) -> None:
    (tmp_path / "crm.yaml").write_text(CONNECTOR)
    (tmp_path / "pair").mkdir()
    (tmp_path / "pair" / "integration.yaml").write_text(INTEGRATION)
    for name, text in FLOWS.items():
        (tmp_path / "pair" / name).write_text(text)
    _, problems = load_specs([tmp_path])
    assert sorted((Path(p.file).name, p.line, p.field, p.message) for p in problems) == [
        ("accounts.yaml", 6, "ensure_fields",
         "entity 'account' of connector 'crm' declares no custom_fields.create: it cannot create fields"),
        ("contacts.yaml", 6, "ensure_fields",
         "entity 'contact' of connector 'crm' has no custom_fields: only custom fields can be ensured"),
    ]


def test_validate_names_an_ensured_field_the_flow_does_not_write(tmp_path: Path) -> None:
    connector = CONNECTOR.replace("catalog: {path: /fields, key: name, label: label}",
                                  "catalog: {path: /fields, key: name, label: label}\n"
                                  "      create: {method: POST, path: /fields, key: name, body: {label: x}}")
    (tmp_path / "crm.yaml").write_text(connector)
    (tmp_path / "pair").mkdir()
    (tmp_path / "pair" / "integration.yaml").write_text(INTEGRATION)
    (tmp_path / "pair" / "accounts.yaml").write_text(FLOWS["accounts.yaml"].replace(
        "ensure_fields: {Tier: enum}", "ensure_fields:\n  Tier: enum\n  Region: text"))
    _, problems = load_specs([tmp_path])
    assert [(Path(p.file).name, p.line, p.field, p.message) for p in problems] == [
        ("accounts.yaml", 8, "ensure_fields.Region", "the flow writes no field 'props.Region' (it writes: props.Tier)"),
    ]
