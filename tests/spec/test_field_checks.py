"""Declared entity fields: validate checks every field a mapping reads or writes (issue 19, the silent misses)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any

import pytest
from click.testing import Result

from ml_connector.config import ConnectorConfig, MappingConfig, compile_expr
from ml_connector.config.entity import EntityConfig
from ml_connector.errors import MlConnectorError
from ml_connector.spec import load_specs
from ml_connector.spec.field_shapes import globals_as_fields, object_shape, read_jinja, read_jmespath
from ml_connector.transform.mapping import CompiledMapping, UndeclaredField
from tests.spec.conftest import REPO, SpecCopy
from tests.spec.test_broken_specs import CONTACTS, CUSTOMERS, DEALS, ITEMS, QAD, problems_of, reported


def test_misspelt_name_in_a_template(specs: SpecCopy, cli: Callable[..., Result]) -> None:
    """`{{ firstNam }} {{ lastName }}` turned 23 person names into " Johnson"."""
    specs.edit(CONTACTS, "\"{{ [firstName, lastName] | select | join(' ') or none }}\"",
               '"{{ firstNam }} {{ lastName }}"')
    result = cli("validate")
    line = specs.line(CONTACTS, "firstNam }}")
    message = reported(result, f"{CONTACTS}:{line}: fields.name")
    assert message.endswith("'firstNam' is not a field of qad.customer.contacts[] (did you mean 'firstName'?)")
    assert len(problems_of(result)) == 1


def test_misspelt_source_field(specs: SpecCopy, cli: Callable[..., Result]) -> None:
    """`unit: unitOfMesure` set 20 units to null."""
    specs.edit(ITEMS, "unit: unitOfMeasure", "unit: unitOfMesure")
    result = cli("validate")
    line = specs.line(ITEMS, "unitOfMesure")
    message = reported(result, f"{ITEMS}:{line}: fields.unit")
    assert message.endswith("'unitOfMesure' is not a field of qad.item (did you mean 'unitOfMeasure'?)")
    assert len(problems_of(result)) == 1


def test_bare_name_compared_in_a_filter(specs: SpecCopy, cli: Callable[..., Result]) -> None:
    """`filter: "itemStatus == ACTIVE"` compared with a field named ACTIVE and filtered everything."""
    specs.edit(ITEMS, "filter: \"itemStatus == 'ACTIVE'\"", 'filter: "itemStatus == ACTIVE"')
    result = cli("validate")
    message = reported(result, f"{ITEMS}:{specs.line(ITEMS, 'filter:')}: filter")
    assert message.endswith("'ACTIVE' is not a field of qad.item; to compare with the text, quote it: 'ACTIVE'")
    assert len(problems_of(result)) == 1


def test_key_naming_a_missing_field(specs: SpecCopy, cli: Callable[..., Result]) -> None:
    specs.edit(ITEMS, "key: itemCode", "key: itemKode")
    result = cli("validate")
    message = reported(result, f"{ITEMS}:{specs.line(ITEMS, 'key: itemKode')}: key")
    assert message.endswith("'itemKode' is not a field of qad.item (did you mean 'itemCode'?)")
    assert len(problems_of(result)) == 1


def test_lookup_argument_and_from_each(specs: SpecCopy, cli: Callable[..., Result]) -> None:
    """A lookup's argument is read from the record too; `from.each` names a declared array."""
    specs.edit(CONTACTS, "_parent.customerCode)", "_parent.customerCod)")
    specs.edit(CONTACTS, "each: contacts}", "each: contact}")
    result = cli("validate")
    lookup = reported(result, f"{CONTACTS}:{specs.line(CONTACTS, 'customerCod)')}: fields.org_id")
    assert lookup.endswith("'customerCod' is not a field of qad.customer (did you mean 'customerCode'?)")
    each = reported(result, f"{CONTACTS}:{specs.line(CONTACTS, 'each: contact}')}: from.each")
    assert each.endswith("'contact' is not a field of qad.customer (did you mean 'contacts'?)")
    assert len(problems_of(result)) == 2  # an unknown `each`: the items are not checked, no cascade


def test_nested_field_through_a_let(specs: SpecCopy, cli: Callable[..., Result]) -> None:
    """`let: addr` is an address (a JMESPath over declared fields): `addr.cty` is no field of it."""
    specs.edit(CUSTOMERS, "'locality': addr.city", "'locality': addr.cty")
    result = cli("validate")
    message = reported(result, f"{CUSTOMERS}:{specs.line(CUSTOMERS, 'address: >-')}: fields.address")
    assert message.endswith("'cty' is not a field of qad.customer.addresses[] (did you mean 'city'?)")


def test_child_list_reads_and_writes(specs: SpecCopy, cli: Callable[..., Result]) -> None:
    specs.edit(DEALS, "quantityOrdered: quantity", "quantityOrderd: quantiy")
    result = cli("validate")
    prefix = f"{DEALS}:{specs.line(DEALS, 'quantityOrderd')}: fields.lines.fields.quantityOrderd"
    lines = [line for line in problems_of(result) if line.startswith(prefix + ": ")]
    assert sorted(line.removeprefix(prefix + ": ") for line in lines) == [
        "'quantityOrderd' is not a field of qad.sales_order.lines[] (did you mean 'quantityOrdered'?)",
        "'quantiy' is not a field of pipedrive.deal.products[] (did you mean 'quantity'?)",
    ]


def test_write_to_undeclared_and_read_only_fields(specs: SpecCopy, cli: Callable[..., Result]) -> None:
    specs.edit(ITEMS, "  code: itemCode\n", "  code: itemCode\n  update_time: lastModifiedDate\n  units: itemCode\n")
    result = cli("validate")
    read_only = reported(result, f"{ITEMS}:{specs.line(ITEMS, 'update_time:')}: fields.update_time")
    assert read_only.endswith("'update_time' of pipedrive.product is read only (writable: false): "
                              "mappings cannot write it")
    unknown = reported(result, f"{ITEMS}:{specs.line(ITEMS, 'units:')}: fields.units")
    assert unknown.endswith("'units' is not a field of pipedrive.product (did you mean 'unit'?)")
    assert len(problems_of(result)) == 2


def test_connector_key_is_a_declared_field(specs: SpecCopy, cli: Callable[..., Result]) -> None:
    specs.edit(QAD, "  item:\n    key: itemCode\n", "  item:\n    key: itemKode\n")
    result = cli("validate")
    message = reported(result, f"{QAD}:{specs.line(QAD, 'key: itemKode')}: entities.item.key")
    assert message.endswith("'itemKode' is not a field of qad.item (did you mean 'itemCode'?)")


def test_connector_delete_flag_reads_declared_fields(specs: SpecCopy, cli: Callable[..., Result]) -> None:
    specs.edit(QAD, "deletes: {flag: \"itemStatus == 'OBSOLETE'\"}", "deletes: {flag: \"itemStat == 'OBSOLETE'\"}")
    result = cli("validate")
    message = reported(result, f"{QAD}:{specs.line(QAD, 'itemStat ==')}: entities.item.deletes.flag")
    assert message.endswith("'itemStat' is not a field of qad.item (did you mean 'itemStatus'?)")


SHAPE = object_shape("sys.thing", {
    "code": {"type": "string"},
    "lines": {"type": "array", "fields": {"qty": {"type": "number"}, "sku": {"type": "string"}}},
    "extra": {"type": "object"},
})


def _jmespath(expression: str) -> list[str]:
    found: list[str] = []
    read_jmespath(expression, SHAPE, found.append)
    return found


def _jinja(template: str) -> list[str]:
    found: list[str] = []
    read_jinja(template, SHAPE.with_fields(globals_as_fields()), found.append)
    return found


def test_jmespath_names_in_every_position() -> None:
    assert _jmespath("lines[?qty > `1`].sku | [0]") == []
    assert _jmespath("lines[?qtty > `1`].sku") == ["'qtty' is not a field of sys.thing.lines[] (did you mean 'qty'?)"]
    assert _jmespath("sort_by(lines, &skuu)[0].sku") == [
        "'skuu' is not a field of sys.thing.lines[] (did you mean 'sku'?)"]
    assert _jmespath("{a: cod, b: extra.anything}") == ["'cod' is not a field of sys.thing (did you mean 'code'?)"]
    assert _jmespath("lines[0].sku && starts_with(code, 'x')") == []


def test_jinja_names_bound_by_the_template_are_not_fields() -> None:
    assert _jinja("{% set n = 1 %}{{ n }}{% for line in lines %}{{ line.sku }}{% endfor %}") == []
    assert _jinja("{{ code.startswith('x') }} {{ coalesce(code, extra.x) }} {{ lookup('f', code) }}") == []
    assert _jinja("{{ lines[0].skuu }} {{ extra['x'] }}") == [
        "'skuu' is not a field of sys.thing.lines[] (did you mean 'sku'?)"]
    assert _jinja("{{ nothing }}") == ["'nothing' is not a field of sys.thing (declared: code, extra, lines)"]
    assert _jinja("{{ lookupp('f', code) }}") == ["'lookupp' is not a field of sys.thing (did you mean 'lookup'?)"]


def _shipped(flow: str) -> tuple[MappingConfig, EntityConfig]:
    project, problems = load_specs([REPO / "connectors", REPO / "mappings"])
    assert problems == []
    config = project.flows[flow].config
    assert isinstance(config, MappingConfig)
    connector = project.connectors[project.flow_connector(flow, "from")].config
    assert isinstance(connector, ConnectorConfig)
    return config, connector.entities[config.source.entity]


def _no_lookup(flow: str, value: Any) -> Any:
    raise AssertionError(f"no lookup expected: {flow} {value}")


def test_run_time_a_declared_optional_field_that_is_absent_is_null() -> None:
    config, item = _shipped("items_to_products")
    mapping = CompiledMapping(config, item)
    result = mapping.map({"itemCode": "10-1", "description": "Bolt", "itemStatus": "ACTIVE"}, _no_lookup, _no_lookup)
    assert result.payload == {"name": "Bolt", "code": "10-1", "description": None, "unit": None, "prices": [],
                              "custom_fields": {"ERP Item Code": "10-1", "Product Line": None}}


def test_run_time_an_undeclared_name_is_a_spec_error_never_an_empty_string() -> None:
    config, customer = _shipped("contacts_to_persons")
    fields = dict(config.fields)
    fields["name"] = compile_expr("mapping", "{{ firstNam }} {{ lastName }}")
    broken = replace(config, fields=fields)
    record = {"customerCode": "C1", "isActive": True,
              "contacts": [{"contactId": "CT-1", "firstName": "Ada", "lastName": "Johnson", "isKeyContact": True}]}
    lenient = CompiledMapping(broken)  # no declarations: an unknown name is null, as before
    [unit] = lenient.explode(record)
    assert lenient.map(unit, lambda flow, key: 17, _no_lookup).payload["name"] == " Johnson"  # type: ignore[index]
    strict = CompiledMapping(broken, customer)
    [unit] = strict.explode(record)
    with pytest.raises(UndeclaredField, match="field name: 'firstNam' is not a declared field of the source record"):
        strict.map(unit, lambda flow, key: 17, _no_lookup)
    assert isinstance(UndeclaredField("x"), MlConnectorError)  # stops the flow as a spec error, no record parked
    [unit] = CompiledMapping(config, customer).explode(record)  # the shipped spec maps fine under declarations
    assert CompiledMapping(config, customer).map(unit, lambda flow, key: 17, _no_lookup).payload["name"] == (  # type: ignore[index]
        "Ada Johnson")
