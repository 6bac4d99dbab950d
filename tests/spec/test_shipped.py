"""The shipped specs are valid, and the schemas themselves are valid JSON Schema 2020-12."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import Result
from jsonschema import Draft202012Validator

from ml_connector.spec import SCHEMA_DIR, SpecError, load_specs, load_workspace
from tests.spec.conftest import REPO, WORKSPACE, SpecCopy

FLOWS = [
    "items_to_products",
    "customers_to_organizations",
    "contacts_to_persons",
    "won_deals_to_sales_orders",
    "sales_orders_to_deals",
    "organizations_to_customers",
]
ZOHO_FLOWS = [
    "suppliers_to_vendors",
    "items_to_zoho_products",
    "purchase_orders_to_purchase_orders",
    "supplier_invoices_to_vendor_invoices",
    "customers_to_accounts",
    "accounts_to_customers",
    "approved_sales_orders_to_sales_orders",
]
COMMERCE_FLOWS = [
    "skus_to_items",
    "customers_to_customers",
    "companies_to_customers",
    "orders_to_sales_orders",
    "invoices_to_customer_invoices",
    "creditmemos_to_credit_notes",
]
MARKETO_FLOWS = ["customers_to_companies", "customers_to_named_accounts", "contacts_to_leads",
                 "account_context_to_customers", "lead_activities_to_customer_activities"]
SALESFORCE_FLOWS = [
    "customers_to_sf_accounts",
    "suppliers_to_sf_accounts",
    "items_to_sf_products",
    "contacts_to_sf_contacts",
    "sf_accounts_to_customers",
    "activated_orders_to_sales_orders",
    "sf_invoices_to_sales_orders",
]


@pytest.mark.parametrize("kind", ["connector", "mapping", "integration", "workspace"])
def test_schema_is_valid_draft_2020_12(kind: str) -> None:
    schema = json.loads((SCHEMA_DIR / f"{kind}.schema.json").read_text())
    Draft202012Validator.check_schema(schema)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"


def test_shipped_specs_load_without_problems() -> None:
    project, problems = load_specs([REPO / "connectors", REPO / "mappings"])
    assert [str(p) for p in problems] == []
    assert set(project.connectors) == {"qad", "pipedrive", "zoho-crm", "salesforce", "adobe-commerce", "marketo"}
    assert set(project.integrations) == {"adobe-commerce-qad", "qad-marketo", "qad-pipedrive", "qad-salesforce",
                                         "qad-zoho"}
    assert list(project.flows) == COMMERCE_FLOWS + MARKETO_FLOWS + FLOWS + SALESFORCE_FLOWS + ZOHO_FLOWS
    assert set(project.flow_integration.values()) == {"adobe-commerce-qad", "qad-marketo", "qad-pipedrive",
                                                      "qad-salesforce", "qad-zoho"}
    assert len(project.files) == 42


def test_merge_keys_are_resolved() -> None:
    project, _ = load_specs([REPO / "connectors"])
    write = project.entity("qad", "sales_order")["write"]
    assert write["update"]["batch"] == write["create"]["batch"]
    assert write["update"]["fetch_existing"] is True
    assert "<<" not in write["update"]


def test_cli_validate_defaults_to_connectors_and_mappings(
    monkeypatch: pytest.MonkeyPatch, cli: Callable[..., Result]
) -> None:
    monkeypatch.chdir(REPO)
    result = cli("validate")
    assert result.exit_code == 0, result.output
    assert result.output == "42 files, 0 problems\n"


def test_workspace_loads_and_orders_flows(specs: SpecCopy, cli: Callable[..., Result]) -> None:
    specs.write("workspace.yaml", WORKSPACE)
    project = load_workspace(Path("workspace.yaml"))
    assert project.workspace is not None and project.workspace.name == "workspace"
    assert project.flow_order() == FLOWS
    assert project.flow_order(["won_deals_to_sales_orders", "items_to_products"]) == [
        "items_to_products",
        "won_deals_to_sales_orders",
    ]
    assert project.flow_connector("won_deals_to_sales_orders", "to") == "qad"
    assert project.entity("pipedrive", "deal")["key"] == "id"
    result = cli("validate", "--workspace", "workspace.yaml")
    assert result.exit_code == 0, result.output
    assert result.output == "43 files, 0 problems\n"


def test_flow_order_breaks_ties_by_listed_order(specs: SpecCopy) -> None:
    specs.edit("mappings/qad-pipedrive/integration.yaml", "  - items_to_products.yaml\n", "")
    specs.edit(
        "mappings/qad-pipedrive/integration.yaml",
        "  - won_deals_to_sales_orders.yaml\n",
        "  - won_deals_to_sales_orders.yaml\n  - items_to_products.yaml\n",
    )
    project, problems = load_specs([Path("connectors"), Path("mappings")])
    assert problems == []
    assert project.flow_order() == [
        *COMMERCE_FLOWS,
        *MARKETO_FLOWS,
        "customers_to_organizations",
        "contacts_to_persons",
        "items_to_products",
        "won_deals_to_sales_orders",
        "sales_orders_to_deals",
        "organizations_to_customers",
        *SALESFORCE_FLOWS,
        *ZOHO_FLOWS,
    ]


def test_load_workspace_raises_spec_error(specs: SpecCopy) -> None:
    specs.write("workspace.yaml", WORKSPACE.replace("auth: api_token", "auth: token"))
    with pytest.raises(SpecError) as raised:
        load_workspace(Path("workspace.yaml"))
    assert [p.field for p in raised.value.problems] == ["connections.pipedrive.auth"]
    assert "workspace.yaml:11: connections.pipedrive.auth: connector 'pipedrive' has no auth method" in str(
        raised.value
    )
