"""One broken spec per kind of problem: `ml-connector validate` exits 1 and names file, line and field."""

from __future__ import annotations

from collections.abc import Callable

from click.testing import Result

from ml_connector.spec import load_schema
from tests.spec.conftest import WORKSPACE, SpecCopy

PIPEDRIVE = "connectors/pipedrive.yaml"
QAD = "connectors/qad.yaml"
INTEGRATION = "mappings/qad-pipedrive/integration.yaml"
ITEMS = "mappings/qad-pipedrive/items_to_products.yaml"
CUSTOMERS = "mappings/qad-pipedrive/customers_to_organizations.yaml"
CONTACTS = "mappings/qad-pipedrive/contacts_to_persons.yaml"
DEALS = "mappings/qad-pipedrive/won_deals_to_sales_orders.yaml"


def problems_of(result: Result) -> list[str]:
    assert result.exit_code == 1, result.output
    *lines, summary = result.output.splitlines()
    assert summary.endswith(f"{len(lines)} problem{'' if len(lines) == 1 else 's'}")
    return lines


def reported(result: Result, prefix: str) -> str:
    """The one problem line starting with `prefix` (file:line: field)."""
    lines = problems_of(result)
    found = [line for line in lines if line.startswith(prefix + ": ")]
    assert len(found) == 1, f"{prefix!r} not reported once in:\n" + "\n".join(lines)
    return found[0]


def test_unknown_key(specs: SpecCopy, cli: Callable[..., Result]) -> None:
    specs.edit(
        PIPEDRIVE,
        "path: /api/v2/deals\n      params: {sort_by: update_time, sort_direction: asc}\n"
        "      records: data\n      paginator: cursor",
        "path: /api/v2/deals\n      params: {sort_by: update_time, sort_direction: asc}\n"
        "      records: data\n      paginater: cursor",
    )
    result = cli("validate")
    line = specs.line(PIPEDRIVE, "paginater")
    message = reported(result, f"{PIPEDRIVE}:{line}: entities.deal.read.paginater")
    assert message.endswith("unknown key 'paginater' (did you mean 'paginator'?)")
    assert len(problems_of(result)) == 1


def test_unknown_top_level_key_but_x_annotations_allowed(specs: SpecCopy, cli: Callable[..., Result]) -> None:
    specs.edit(ITEMS, "schedule: every 30m", "schedule: every 30m\nx-owner: sales-ops\nowner: sales-ops")
    result = cli("validate")
    allowed = ", ".join(load_schema("mapping")["properties"])  # the message lists the schema's keys, in order
    assert problems_of(result) == [f"{ITEMS}:8: owner: unknown key 'owner' (allowed: {allowed})"]
    assert "flow, title" in allowed and "x-owner" not in allowed


def test_wrong_type(specs: SpecCopy, cli: Callable[..., Result]) -> None:
    specs.edit(QAD, "refresh_ahead: 120", "refresh_ahead: two minutes")
    result = cli("validate")
    line = specs.line(QAD, "refresh_ahead")
    message = reported(result, f"{QAD}:{line}: auth.password.refresh_ahead")
    assert message.endswith("expected integer, got string")


def test_missing_required_key_is_reported_on_the_parent(specs: SpecCopy, cli: Callable[..., Result]) -> None:
    specs.edit(PIPEDRIVE, "    grant: refresh_token\n", "")
    result = cli("validate")
    line = specs.line(PIPEDRIVE, "  oauth2:")
    message = reported(result, f"{PIPEDRIVE}:{line}: auth.oauth2")
    assert message.endswith("missing required key 'grant'")


def test_missing_required_top_level_key(specs: SpecCopy, cli: Callable[..., Result]) -> None:
    specs.edit(ITEMS, "key: itemCode\n", "")
    result = cli("validate")
    assert reported(result, f"{ITEMS}:2: (root)").endswith("missing required key 'key'")


def test_invalid_jmespath(specs: SpecCopy, cli: Callable[..., Result]) -> None:
    specs.edit(ITEMS, "filter: \"itemStatus == 'ACTIVE'\"", "filter: \"itemStatus == == 'ACTIVE'\"")
    result = cli("validate")
    line = specs.line(ITEMS, "filter:")
    assert "invalid JMESPath" in reported(result, f"{ITEMS}:{line}: filter")


def test_invalid_jmespath_in_connector(specs: SpecCopy, cli: Callable[..., Result]) -> None:
    specs.edit(PIPEDRIVE, "next: additional_data.next_cursor", "next: additional_data.[next_cursor")
    result = cli("validate")
    line = specs.line(PIPEDRIVE, "next: additional_data")
    assert "invalid JMESPath" in reported(result, f"{PIPEDRIVE}:{line}: paginators.cursor.next")


def test_invalid_jinja(specs: SpecCopy, cli: Callable[..., Result]) -> None:
    specs.write(CRM, CRM_SPEC)
    specs.write(LOOSE, LOOSE_SPEC.replace('"{{ title }}"', '"{{ title }"'))
    assert problems_of(cli("validate")) == [f"{LOOSE}:6: fields.title: invalid Jinja template: unexpected '}}'"]


def test_invalid_jinja_in_connector(specs: SpecCopy, cli: Callable[..., Result]) -> None:
    specs.edit(
        QAD,
        'base_url: "{{ connection.tenant_url }}/clouderp"',
        'base_url: "{{ connection.tenant_url }/clouderp"',
    )
    result = cli("validate")
    line = specs.line(QAD, "base_url:")
    assert "invalid Jinja template" in reported(result, f"{QAD}:{line}: base_url")


def test_unknown_connector(specs: SpecCopy, cli: Callable[..., Result]) -> None:
    specs.edit(INTEGRATION, "pipedrive: {connector: pipedrive}", "pipedrive: {connector: pipedrve}")
    result = cli("validate")
    line = specs.line(INTEGRATION, "pipedrve")
    message = reported(result, f"{INTEGRATION}:{line}: connections.pipedrive.connector")
    assert message.endswith(
        "unknown connector 'pipedrve' (known: adobe-commerce, marketo, pipedrive, qad, salesforce, zoho-crm)")


def test_unknown_entity(specs: SpecCopy, cli: Callable[..., Result]) -> None:
    specs.edit(CONTACTS, "entity: person}", "entity: persons}")
    result = cli("validate")
    message = reported(result, f"{CONTACTS}:5: to.entity")
    assert message.endswith(
        "connector 'pipedrive' has no entity 'persons' (known: organization, person, product, deal)"
    )


def test_unknown_connection_and_unwritable_target(specs: SpecCopy, cli: Callable[..., Result]) -> None:
    specs.edit(ITEMS, "from: {connection: qad, entity: item}", "from: {connection: erp, entity: item}")
    # QAD payments are read-only (no `write`)
    specs.edit(ITEMS, "to: {connection: pipedrive, entity: product}", "to: {connection: qad, entity: payment}")
    result = cli("validate")
    assert "connection 'erp' is not declared by integration 'qad-pipedrive'" in reported(
        result, f"{ITEMS}:4: from.connection"
    )
    assert "cannot be written (no 'write')" in reported(result, f"{ITEMS}:5: to.entity")


def test_unknown_expand(specs: SpecCopy, cli: Callable[..., Result]) -> None:
    specs.edit(DEALS, "expand: [products]", "expand: [product]")
    result = cli("validate")
    line = specs.line(DEALS, "expand:")
    assert "has no expand 'product'" in reported(result, f"{DEALS}:{line}: from.expand[0]")


def test_unknown_paginator(specs: SpecCopy, cli: Callable[..., Result]) -> None:
    specs.edit(QAD, "paginators:\n  pages:", "paginators:\n  page:")
    result = cli("validate")
    lines = problems_of(result)
    text = (specs.root / QAD).read_text().splitlines()
    uses = [n for n, line in enumerate(text, 1) if "paginator: pages" in line]
    assert [line.split(": ")[0] for line in lines] == [f"{QAD}:{n}" for n in uses]
    # customers, items, sales orders, suppliers, purchase orders, receipts, supplier invoices, customer invoices,
    # credit notes, payments, customer activities
    assert len(uses) == 11
    assert (
        lines[0]
        == f"{QAD}:{uses[0]}: entities.customer.read.paginator: unknown paginator 'pages' (known: page)"
    )


def test_match_required_by_strategy(specs: SpecCopy, cli: Callable[..., Result]) -> None:
    specs.edit(ITEMS, "match: {target: code}\n", "")
    result = cli("validate")
    assert (
        "required: entity 'product' of connector 'pipedrive' is written with strategy search_then_write"
        in (reported(result, f"{ITEMS}:5: match"))
    )


def test_unknown_flow_in_depends_on(specs: SpecCopy, cli: Callable[..., Result]) -> None:
    specs.edit(CONTACTS, "depends_on: [customers_to_organizations]", "depends_on: [customers_to_orgs]")
    result = cli("validate")
    message = reported(result, f"{CONTACTS}:6: depends_on[0]")
    assert "unknown flow 'customers_to_orgs'" in message


def test_unknown_flow_in_lookup(specs: SpecCopy, cli: Callable[..., Result]) -> None:
    specs.edit(
        DEALS,
        "lookup_source('items_to_products', product_id)",
        "lookup_source('items_to_product', product_id)",
    )
    result = cli("validate")
    line = specs.line(DEALS, "items_to_product'")
    message = reported(result, f"{DEALS}:{line}: fields.lines.fields.itemCode")
    assert "lookup_source() names unknown flow 'items_to_product'" in message


def test_depends_on_cycle_is_reported_once(specs: SpecCopy, cli: Callable[..., Result]) -> None:
    specs.edit(CUSTOMERS, "schedule: every 15m", "schedule: every 15m\ndepends_on: [contacts_to_persons]")
    result = cli("validate")
    assert problems_of(result) == [
        f"{CUSTOMERS}:7: depends_on: dependency cycle: customers_to_organizations -> contacts_to_persons -> "
        "customers_to_organizations"
    ]


def test_schedule_form(specs: SpecCopy, cli: Callable[..., Result]) -> None:
    specs.edit(ITEMS, "schedule: every 30m", "schedule: every 30 minutes")
    result = cli("validate")
    assert "is not a schedule" in reported(result, f"{ITEMS}:6: schedule")


def test_clear_text_secret_is_an_error_and_never_printed(specs: SpecCopy, cli: Callable[..., Result]) -> None:
    specs.write("workspace.yaml", WORKSPACE.replace("password: env:QAD_PASSWORD", "password: Hunter2-s3cret"))
    result = cli("validate", "--workspace", "workspace.yaml")
    message = reported(result, "workspace.yaml:8: connections.qad.secrets.password")
    assert "clear text" in message
    assert "Hunter2" not in result.output


def test_workspace_missing_setting_and_wrong_connector(specs: SpecCopy, cli: Callable[..., Result]) -> None:
    workspace = WORKSPACE.replace(", domain: 10USA", "").replace("connector: pipedrive", "connector: qad")
    specs.write("workspace.yaml", workspace)
    result = cli("validate", "--workspace", "workspace.yaml")
    assert reported(result, "workspace.yaml:7: connections.qad.settings").endswith(
        "missing required setting 'domain' of connector 'qad'"
    )
    assert "needs connector 'pipedrive' for connection 'pipedrive', not 'qad'" in reported(
        result, "workspace.yaml:10: connections.pipedrive.connector"
    )


def test_yaml_syntax_error(specs: SpecCopy, cli: Callable[..., Result]) -> None:
    specs.edit(
        ITEMS, "to: {connection: pipedrive, entity: product}", "to: {connection: pipedrive, entity: product"
    )
    result = cli("validate")
    assert "YAML syntax error" in reported(result, f"{ITEMS}:5: (root)")


def test_duplicate_key(specs: SpecCopy, cli: Callable[..., Result]) -> None:
    specs.edit(ITEMS, "  unit: unitOfMeasure\n", "  unit: unitOfMeasure\n  unit: itemType\n")
    result = cli("validate")
    line = specs.line(ITEMS, "unit: itemType")
    assert reported(result, f"{ITEMS}:{line}: fields.unit").endswith(
        f"duplicate key 'unit' (first written at line {line - 1})"
    )


def test_duplicate_flow_name(specs: SpecCopy, cli: Callable[..., Result]) -> None:
    specs.edit(CONTACTS, "flow: contacts_to_persons", "flow: customers_to_organizations")
    result = cli("validate")
    assert "flow 'customers_to_organizations' is already defined in" in reported(
        result, f"{CONTACTS}:2: flow"
    )


def test_not_a_spec_file_and_missing_path(specs: SpecCopy, cli: Callable[..., Result]) -> None:
    specs.write("mappings/notes.yaml", "just: notes\n")
    result = cli("validate", "connectors", "mappings", "nowhere")
    assert "not a spec file" in reported(result, "mappings/notes.yaml:1: (root)")
    assert reported(result, "nowhere:1: (root)").endswith("no such file or directory")


def test_on_delete_needs_a_source_that_tells_deletions(specs: SpecCopy, cli: Callable[..., Result]) -> None:
    specs.edit(CUSTOMERS, "on_delete: ignore", "on_delete: clear")
    result = cli("validate")
    line = specs.line(CUSTOMERS, "on_delete")
    assert reported(result, f"{CUSTOMERS}:{line}: on_delete").endswith(
        "'clear' needs a source that tells deletions: entity 'customer' of connector 'qad' declares no 'deletes' "
        "(flag, read or absent)")


def test_on_delete_delete_needs_a_target_delete_operation(specs: SpecCopy, cli: Callable[..., Result]) -> None:
    specs.edit(PIPEDRIVE, '      delete: {method: DELETE, path: "/api/v2/products/{{ target_id }}"}\n', "")
    result = cli("validate")
    line = specs.line(ITEMS, "on_delete")
    assert reported(result, f"{ITEMS}:{line}: on_delete").endswith(
        "'delete' needs a delete operation: entity 'product' of connector 'pipedrive' has no write.delete")


def test_deletes_by_endpoint_need_the_flow_keyed_by_the_entity_key(specs: SpecCopy, cli: Callable[..., Result]) -> None:
    specs.edit(QAD, """deletes: {flag: "itemStatus == 'OBSOLETE'"}""",
               "deletes: {read: {path: /api/erp/deletedItems, key: itemCode}}")
    specs.edit(ITEMS, "key: itemCode", "key: description")
    result = cli("validate")
    assert reported(result, f"{ITEMS}:{specs.line(ITEMS, 'key: description')}: key").endswith(
        "entity 'item' of connector 'qad' names deleted records by its key 'itemCode' (deletes.read): with "
        "on_delete 'delete' the flow's key must be that field")


def test_deletes_by_absence_refuse_a_filtered_read(specs: SpecCopy, cli: Callable[..., Result]) -> None:
    specs.edit(QAD, """deletes: {flag: "itemStatus == 'OBSOLETE'"}""", "deletes: {absent: {max_share: 0.05}}")
    specs.edit(ITEMS, "from: {connection: qad, entity: item}",
               "from: {connection: qad, entity: item, params: {productLine: PLX}}")
    result = cli("validate")
    assert "a read filtered by from.params cannot show" in reported(
        result, f"{ITEMS}:{specs.line(ITEMS, 'productLine: PLX')}: from.params")


CRM = "connectors/crm.yaml"
CRM_SPEC = """\
connector: crm
base_url: https://api.example.com
auth:
  key: {type: api_key, header: X-Key, value: "{{ secrets.key }}"}
responses:
  - when: {status: 422}
    do: record_error
    message: "{{ body.error }}"
entities:
  deal:
    key: id
    write:
      strategy: create_only
      create:
        method: POST
        path: /deals
        batch: {size: 10, body: {deals: "{{ records }}"}}
        results: {items: saved, id: id, match: position}
"""
LOOSE = "mappings/extra/deals.yaml"
LOOSE_SPEC = """\
flow: deals
from: {connection: crm, entity: deal}
to: {connection: crm, entity: deal}
key: id
fields:
  title: "{{ title }}"
"""


def test_unknown_jinja_filter_in_connector_and_mapping(specs: SpecCopy, cli: Callable[..., Result]) -> None:
    specs.write(CRM, CRM_SPEC.replace("{{ body.error }}", "{{ body.error | nosuchfilter }}"))
    specs.write(LOOSE, LOOSE_SPEC.replace("{{ title }}", "{% if title %}{{ title | nosuchfilter }}{% endif %}"))
    assert problems_of(cli("validate")) == [
        f"{CRM}:8: responses[0].message: invalid Jinja template: no filter named 'nosuchfilter'",
        f"{LOOSE}:6: fields.title: invalid Jinja template: no filter named 'nosuchfilter'",
    ]


def test_invalid_jmespath_in_batch_result_key(specs: SpecCopy, cli: Callable[..., Result]) -> None:
    specs.write(CRM, CRM_SPEC.replace("id: id, match: position}", 'id: id, match: key, key: "saved[?"}'))
    line = specs.line(CRM, "saved[?")
    assert problems_of(cli("validate")) == [
        f"{CRM}:{line}: entities.deal.write.create.results.key: invalid JMESPath: incomplete expression",
    ]
