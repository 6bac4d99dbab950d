"""validate: keyed reads (`read.keys` with a flow's `from.keys`) and children by a reference field (`parent_field`).

The shipped Pipedrive organization is made a keyed entity, read back by organizations_to_customers with the
target ids of customers_to_organizations.
"""

from __future__ import annotations

from collections.abc import Callable

from click.testing import Result

from tests.spec.conftest import SpecCopy
from tests.spec.test_broken_specs import PIPEDRIVE, reported

ORGS = "mappings/qad-pipedrive/organizations_to_customers.yaml"
FROM = "from: {connection: pipedrive, entity: organization}"
KEYED_FROM = ("from: {connection: pipedrive, entity: organization, "
              "keys: {flow: customers_to_organizations, side: target}}")
READ = "      incremental: {param: updated_since, field: update_time, format: \"%Y-%m-%dT%H:%M:%SZ\"}\n" \
       "    get: {path: \"/api/v2/organizations/{{ id }}\", record: data}\n"
LISTING = ("      prefetch: {min: 25}     # many unknown records: list the entity (500/call) "
           "instead of searching each\n"
           "      search_lag: 300         # search index lag is unconfirmed: trust an empty search "
           "only after a list read\n"
           "      search:\n        path: /api/v2/organizations/search\n")


def ours(result: Result) -> list[str]:
    """The problems in the two files these tests edit (the other shipped specs may be mid-edit elsewhere)."""
    *lines, _summary = result.output.splitlines()
    return [line for line in lines if line.startswith((f"{PIPEDRIVE}:", f"{ORGS}:"))]


def keyed_organization(specs: SpecCopy) -> None:
    """Organizations read by keys (and not listed by the writer: no prefetch, no search lag)."""
    specs.edit(PIPEDRIVE, READ, READ.replace("      incremental:", "      keys: {batch: 100}\n      incremental:"))
    specs.edit(PIPEDRIVE, LISTING, LISTING[LISTING.index("      search:"):])


def test_a_keyed_read_with_from_keys_validates(specs: SpecCopy, cli: Callable[..., Result]) -> None:
    keyed_organization(specs)
    specs.edit(ORGS, FROM, KEYED_FROM)
    result = cli("validate")
    assert ours(result) == [], result.output


def test_a_keyed_entity_read_by_a_flow_without_from_keys(specs: SpecCopy, cli: Callable[..., Result]) -> None:
    keyed_organization(specs)
    result = cli("validate")
    line = specs.line(ORGS, FROM)
    assert reported(result, f"{ORGS}:{line}: from.entity").endswith(
        "entity 'organization' of connector 'pipedrive' is read by keys (read.keys): the flow needs from.keys "
        "(the flow whose id map holds them)")
    assert len(ours(result)) == 1


def test_from_keys_on_an_entity_that_is_listed(specs: SpecCopy, cli: Callable[..., Result]) -> None:
    specs.edit(ORGS, FROM, KEYED_FROM)
    result = cli("validate")
    line = specs.line(ORGS, "keys: {flow")
    assert reported(result, f"{ORGS}:{line}: from.keys").endswith(
        "entity 'organization' of connector 'pipedrive' has no read.keys: it is listed, not read by keys")
    assert len(ours(result)) == 1


def test_from_keys_flow_outside_the_integration(specs: SpecCopy, cli: Callable[..., Result]) -> None:
    keyed_organization(specs)
    specs.edit(ORGS, FROM, KEYED_FROM.replace("customers_to_organizations", "customers_to_accounts"))
    result = cli("validate")
    line = specs.line(ORGS, "keys: {flow")
    assert reported(result, f"{ORGS}:{line}: from.keys.flow").endswith(
        "'customers_to_accounts' is not a flow of integration 'qad-pipedrive' (its flows: items_to_products, "
        "customers_to_organizations, contacts_to_persons, won_deals_to_sales_orders, sales_orders_to_deals, "
        "organizations_to_customers)")
    assert len(ours(result)) == 1


def test_from_keys_flow_must_be_in_depends_on(specs: SpecCopy, cli: Callable[..., Result]) -> None:
    keyed_organization(specs)
    specs.edit(ORGS, FROM, KEYED_FROM.replace("customers_to_organizations", "contacts_to_persons"))
    result = cli("validate")
    line = specs.line(ORGS, "keys: {flow")
    assert reported(result, f"{ORGS}:{line}: from.keys.flow").endswith(
        "the keys come from flow 'contacts_to_persons': list it in depends_on (it must run first)")
    assert len(ours(result)) == 1


def test_a_keyed_flow_cannot_infer_deletes(specs: SpecCopy, cli: Callable[..., Result]) -> None:
    keyed_organization(specs)
    specs.edit(PIPEDRIVE, READ, READ + "    deletes: {flag: is_deleted}\n")
    specs.edit(ORGS, FROM, KEYED_FROM)
    specs.edit(ORGS, "on_delete: ignore", "on_delete: clear")
    result = cli("validate")
    line = specs.line(ORGS, "on_delete")
    assert reported(result, f"{ORGS}:{line}: on_delete").endswith(
        "'clear' is not supported with from.keys: a keyed read sees only the keys it asks for (a key set that "
        "shrank is not a deletion); use on_delete: ignore")
    assert len(ours(result)) == 1


def test_a_keyed_entity_cannot_be_listed_by_its_writer(specs: SpecCopy, cli: Callable[..., Result]) -> None:
    specs.edit(PIPEDRIVE, READ, READ.replace("      incremental:", "      keys: {batch: 100}\n      incremental:"))
    specs.edit(ORGS, FROM, KEYED_FROM)
    result = cli("validate")
    lines = ours(result)
    search = specs.line(PIPEDRIVE, "path: /api/v2/organizations/search")
    prefetch, lag = search - 3, search - 2
    assert lines == [
        f"{PIPEDRIVE}:{prefetch}: entities.organization.write.prefetch: the entity is read by keys (read.keys) "
        "and cannot be listed; drop write.prefetch",
        f"{PIPEDRIVE}:{lag}: entities.organization.write.search_lag: the entity is read by keys (read.keys) "
        "and cannot be listed; drop write.search_lag",
    ]


def test_keys_batch_is_at_least_one(specs: SpecCopy, cli: Callable[..., Result]) -> None:
    keyed_organization(specs)
    specs.edit(PIPEDRIVE, "keys: {batch: 100}", "keys: {batch: 0}")
    specs.edit(ORGS, FROM, KEYED_FROM)
    result = cli("validate")
    line = specs.line(PIPEDRIVE, "keys: {batch: 0}")
    assert reported(result, f"{PIPEDRIVE}:{line}: entities.organization.read.keys.batch")
    assert len(ours(result)) == 1


def test_parent_field_needs_parent_key(specs: SpecCopy, cli: Callable[..., Result]) -> None:
    products = "        records: data\n        paginator: cursor\n"
    specs.edit(PIPEDRIVE, f"        batch: 100\n{products}        parent_key: deal_id\n",
               f"{products}        parent_field: id\n")
    result = cli("validate")
    line = specs.line(PIPEDRIVE, "parent_field: id")
    assert ours(result) == [f"{PIPEDRIVE}:{line}: entities.deal.expand.products.parent_field: 'parent_key' "
                                   "is required when 'parent_field' is given"]
