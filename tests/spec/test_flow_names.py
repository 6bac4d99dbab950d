"""Issue 18 case 9: flow names are global in a workspace, and a clash names both integrations."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from click.testing import Result

from tests.spec.conftest import SpecCopy

CUSTOMERS = "mappings/qad-pipedrive/customers_to_organizations.yaml"


def test_a_flow_name_used_by_two_integrations_is_reported_naming_both(specs: SpecCopy,
                                                                      cli: Callable[..., Result]) -> None:
    specs.write("mappings/qad-other/integration.yaml",
                "integration: qad-other\nconnections: {qad: {connector: qad}, pipedrive: {connector: pipedrive}}\n"
                "flows: [customers.yaml]\n")
    specs.write("mappings/qad-other/customers.yaml", (Path(specs.root) / CUSTOMERS).read_text())
    result = cli("validate")
    assert result.exit_code == 1, result.output
    assert result.output.splitlines()[:-1] == [
        f"{CUSTOMERS}:2: flow: flow 'customers_to_organizations' of integration 'qad-pipedrive' "
        "is already defined by integration 'qad-other' in mappings/qad-other/customers.yaml"
        "; flow names are global in a workspace (the state, --flow, depends_on and lookups name a flow by its "
        "name): rename one"]
