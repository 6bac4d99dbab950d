"""`validate` on two-way flows: a flow's `reverse` runs the other way in the same integration and names it back."""

from __future__ import annotations

from collections.abc import Callable

from click.testing import Result

from tests.spec.conftest import SpecCopy
from tests.spec.test_broken_specs import CONTACTS, CUSTOMERS, problems_of

ORGS = "mappings/qad-pipedrive/organizations_to_customers.yaml"
REVERSE = "reverse: organizations_to_customers"


def test_the_shipped_pair_names_each_other(specs: SpecCopy, cli: Callable[..., Result]) -> None:
    result = cli("validate")
    assert result.exit_code == 0, result.output


def test_an_unknown_reverse_flow(specs: SpecCopy, cli: Callable[..., Result]) -> None:
    specs.edit(CUSTOMERS, REVERSE, "reverse: organisations_to_customers")
    line = specs.line(CUSTOMERS, "reverse:")
    [first, second] = problems_of(cli("validate"))
    assert first.startswith(f"{CUSTOMERS}:{line}: reverse: unknown flow 'organisations_to_customers' (")
    assert second == (f"{ORGS}:{specs.line(ORGS, 'reverse:')}: reverse: flow 'customers_to_organizations' must "
                      "name this flow back (reverse: organizations_to_customers)")


def test_a_reverse_flow_that_does_not_run_the_other_way(specs: SpecCopy, cli: Callable[..., Result]) -> None:
    specs.edit(CUSTOMERS, REVERSE, "reverse: contacts_to_persons")
    specs.edit(CONTACTS, "depends_on: [customers_to_organizations]",
               "depends_on: [customers_to_organizations]\nreverse: customers_to_organizations")
    problems = problems_of(cli("validate"))
    assert f"{CUSTOMERS}:{specs.line(CUSTOMERS, 'reverse:')}: reverse: flow 'contacts_to_persons' must run the " \
           "other way: from pipedrive.organization to qad.customer (it runs from qad.customer to " \
           "pipedrive.person)" in problems
    assert len(problems) == 3  # contacts_to_persons' own reverse is wrong too; organizations_to_customers is
    # no longer named back


def test_a_flow_cannot_be_its_own_reverse(specs: SpecCopy, cli: Callable[..., Result]) -> None:
    specs.edit(ORGS, "reverse: customers_to_organizations", "reverse: organizations_to_customers")
    problems = problems_of(cli("validate"))
    assert (f"{ORGS}:{specs.line(ORGS, 'reverse:')}: reverse: flow 'organizations_to_customers' cannot be its own "
            "reverse") in problems
