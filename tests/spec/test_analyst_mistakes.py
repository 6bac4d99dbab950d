"""Analysts' typical mistakes (issue 19): each is a broken spec `validate` reports as `file:line: field: message`,
and the ones `run` would have silently ignored stop `run` too."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from click.testing import Result

from ml_connector.cli import EXIT_INVALID
from tests.spec.conftest import WORKSPACE, SpecCopy
from tests.spec.test_broken_specs import problems_of, reported

PIPEDRIVE = "connectors/pipedrive.yaml"
QAD = "connectors/qad.yaml"
FOLDER = "mappings/qad-pipedrive"
INTEGRATION = f"{FOLDER}/integration.yaml"
ITEMS = f"{FOLDER}/items_to_products.yaml"
CUSTOMERS = f"{FOLDER}/customers_to_organizations.yaml"
CONTACTS = f"{FOLDER}/contacts_to_persons.yaml"
DEALS = f"{FOLDER}/won_deals_to_sales_orders.yaml"
NAME = "name: \"{{ [firstName, lastName] | select | join(' ') or none }}\""
ORG_ID = "org_id: \"{{ lookup('customers_to_organizations', _parent.customerCode) | int }}\""


# ---- 1. unknown Jinja filters and functions; undefined names in connector templates -------------------------------

def test_unknown_filter_says_did_you_mean(specs: SpecCopy, cli: Callable[..., Result]) -> None:
    specs.edit(CONTACTS, NAME, 'name: "{{ firstName | uper }}"')
    message = reported(cli("validate"), f"{CONTACTS}:{specs.line(CONTACTS, '| uper')}: fields.name")
    assert message.endswith("invalid Jinja template: no filter named 'uper' (did you mean 'upper'?)")


def test_unknown_function_in_a_mapping(specs: SpecCopy, cli: Callable[..., Result]) -> None:
    specs.edit(CONTACTS, "{{ lookup('customers_to_organizations'", "{{ lookupp('customers_to_organizations'")
    prefix = f"{CONTACTS}:{specs.line(CONTACTS, 'lookupp(')}: fields.org_id: "
    assert prefix + "invalid Jinja template: no function named 'lookupp' (did you mean 'lookup'?)" in problems_of(
        cli("validate"))


def test_lookup_is_not_a_function_of_connector_templates(specs: SpecCopy, cli: Callable[..., Result]) -> None:
    specs.edit(PIPEDRIVE, 'value: "{{ secrets.api_token }}"', "value: \"{{ lookup('x', 1) }}\"")
    message = reported(cli("validate"), f"{PIPEDRIVE}:{specs.line(PIPEDRIVE, 'lookup(')}: auth.api_token.value")
    assert message.endswith("invalid Jinja template: no function named 'lookup' "
                            "(known: coalesce, cycler, dict, joiner, lipsum, namespace, range)")


def test_undeclared_connection_setting_in_a_connector(specs: SpecCopy, cli: Callable[..., Result]) -> None:
    specs.edit(PIPEDRIVE, "{{ connection.api_url or", "{{ connection.api_ur or")
    message = reported(cli("validate"), f"{PIPEDRIVE}:{specs.line(PIPEDRIVE, 'base_url:')}: base_url")
    assert message.endswith("connector 'pipedrive' declares no setting 'api_ur' (did you mean 'api_url'?)")


def test_undeclared_secret_and_unknown_name_in_a_connector(specs: SpecCopy, cli: Callable[..., Result]) -> None:
    specs.edit(PIPEDRIVE, 'client_secret: "{{ secrets.client_secret }}"', 'client_secret: "{{ secrets.clientsecret }}"')
    specs.edit(PIPEDRIVE, 'token_url: "{{ connection.oauth_url }}', 'token_url: "{{ conection.oauth_url }}')
    result = cli("validate")
    assert reported(result, f"{PIPEDRIVE}:{specs.line(PIPEDRIVE, 'clientsecret')}: auth.oauth2.client_secret").endswith(
        "connector 'pipedrive' declares no secret 'clientsecret' (did you mean 'client_secret'?)")
    assert reported(result, f"{PIPEDRIVE}:{specs.line(PIPEDRIVE, 'conection')}: auth.oauth2.token_url").endswith(
        "unknown name 'conection' in a connector template (did you mean 'connection'?)")


# ---- 2. one rule for files in an integration folder ----------------------------------------------------------------

def test_unlisted_mapping_file_is_refused_by_validate_and_run(specs: SpecCopy, cli: Callable[..., Result]) -> None:
    specs.edit(INTEGRATION, "  - contacts_to_persons.yaml\n", "")
    expected = (f"{CONTACTS}:1: (root): not listed in the flows of integration 'qad-pipedrive' (integration.yaml), "
                "so it would never run: add it to flows, or move it out of the folder")
    assert problems_of(cli("validate")) == [expected]
    specs.write("workspace.yaml", WORKSPACE)
    result = cli("run", "-w", "workspace.yaml")
    assert result.exit_code == EXIT_INVALID
    assert expected in result.stderr.splitlines()


def test_stray_copies_are_refused_by_validate_and_run(specs: SpecCopy, cli: Callable[..., Result]) -> None:
    items = (specs.root / ITEMS).read_text()
    specs.write(f"{FOLDER}/items_to_products.yml", items)
    specs.write(f"{FOLDER}/items_to_products copy.yaml", items)
    rule = "not listed in the flows of integration 'qad-pipedrive' (integration.yaml), so it would never run: add it " \
           "to flows, or move it out of the folder"
    expected = [f"{FOLDER}/items_to_products copy.yaml:1: (root): {rule}",
                f"{FOLDER}/items_to_products.yml:1: (root): {rule}"]
    assert problems_of(cli("validate")) == expected
    specs.write("workspace.yaml", WORKSPACE)
    result = cli("run", "-w", "workspace.yaml")
    assert result.exit_code == EXIT_INVALID
    assert [line for line in result.stderr.splitlines() if "not listed" in line] == expected


# ---- 3. a lookup into a flow missing from depends_on --------------------------------------------------------------

def test_lookup_into_a_flow_missing_from_depends_on(specs: SpecCopy, cli: Callable[..., Result]) -> None:
    specs.edit(DEALS, "depends_on: [items_to_products, customers_to_organizations]", "depends_on: [items_to_products]")
    line = specs.line(DEALS, "lookup_source('customers_to_organizations'")
    assert problems_of(cli("validate")) == [
        f"{DEALS}:{line}: fields.customerCode: lookup_source() reads flow 'customers_to_organizations', which is not "
        "in depends_on: add it there, so that flow runs first and records waiting for it are retried after it"
    ]


# ---- 4. one file or one folder is checked with its siblings --------------------------------------------------------

def test_one_mapping_file_is_checked_against_the_real_connectors(specs: SpecCopy, cli: Callable[..., Result]) -> None:
    specs.edit(CONTACTS, "entity: person}", "entity: persons}")
    assert reported(cli("validate", CONTACTS), f"{CONTACTS}:5: to.entity").endswith(
        "connector 'pipedrive' has no entity 'persons' (known: organization, person, product, deal)")


def test_validate_a_folder_finds_the_connectors(specs: SpecCopy, cli: Callable[..., Result]) -> None:
    result = cli("validate", "mappings")
    assert result.exit_code == 0, result.output
    assert result.output.endswith(" 0 problems\n")
    result = cli("validate", FOLDER)
    assert result.exit_code == 0, result.output


def test_one_file_is_checked_from_another_directory(specs: SpecCopy, cli: Callable[..., Result],
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    specs.edit(ITEMS, "entity: product}", "entity: produkt}")
    (specs.root / "elsewhere").mkdir()
    monkeypatch.chdir(specs.root / "elsewhere")
    result = cli("validate", f"../{ITEMS}")
    assert "connector 'pipedrive' has no entity 'produkt'" in result.output, result.output


# ---- 5. YAML errors in plain words, on the right line, without cascades ---------------------------------------------

def test_syntax_error_in_one_mapping_does_not_cascade(specs: SpecCopy, cli: Callable[..., Result]) -> None:
    specs.edit(CUSTOMERS, "filter: isActive", 'filter: "isActive')
    lines = problems_of(cli("validate"))
    assert lines == [f"{CUSTOMERS}:{specs.line(CUSTOMERS, 'filter:')}: (root): YAML syntax error: a quoted text that "
                     "starts on this line is never closed (a missing closing quote)"]


def test_tab_indentation_in_plain_words(specs: SpecCopy, cli: Callable[..., Result]) -> None:
    specs.edit(ITEMS, "  code: itemCode\n", "\tcode: itemCode\n")
    assert problems_of(cli("validate")) == [
        f"{ITEMS}:{specs.line(ITEMS, 'code: itemCode')}: (root): YAML syntax error: a tab character: indent with "
        "spaces (YAML does not allow tabs)"]


def test_missing_colon_is_reported_on_its_line(specs: SpecCopy, cli: Callable[..., Result]) -> None:
    specs.edit(ITEMS, "key: itemCode\n", "key itemCode\n")
    assert problems_of(cli("validate")) == [
        f"{ITEMS}:{specs.line(ITEMS, 'key itemCode')}: (root): YAML syntax error: a key without ':' (write "
        "'key: value')"]


def test_unquoted_template_in_plain_words(specs: SpecCopy, cli: Callable[..., Result]) -> None:
    specs.edit(CONTACTS, NAME, "name: {{ firstName }}")
    assert problems_of(cli("validate")) == [
        f"{CONTACTS}:{specs.line(CONTACTS, 'name: {{')}: (root): YAML syntax error: a value that starts with '{{' is "
        "read as a YAML mapping: quote the Jinja template, e.g. \"{{ name }}\""]


def test_unclosed_brace_is_reported_where_it_opens(specs: SpecCopy, cli: Callable[..., Result]) -> None:
    specs.edit(ITEMS, "to: {connection: pipedrive, entity: product}", "to: {connection: pipedrive, entity: product")
    assert problems_of(cli("validate")) == [
        f"{ITEMS}:{specs.line(ITEMS, 'to: {')}: (root): YAML syntax error: a '{{' that opens on this line is not "
        "closed with '}' before the next key"]


def test_wrong_indentation_in_plain_words(specs: SpecCopy, cli: Callable[..., Result]) -> None:
    specs.edit(ITEMS, "  code: itemCode\n", "   code: itemCode\n")
    assert problems_of(cli("validate")) == [
        f"{ITEMS}:{specs.line(ITEMS, 'code: itemCode')}: (root): YAML syntax error: this line is indented more than "
        "the key above it (or a value with ': ' in it needs quotes)"]



# ---- docs: the filters, tests and functions templates may use --------------------------------------------------

def test_docs_list_the_jinja_filters_tests_and_functions() -> None:
    import re
    from pathlib import Path

    from ml_connector.transform.expressions import ENV

    text = (Path(__file__).resolve().parents[2] / "docs" / "spec-language.md").read_text()

    def listed(label: str) -> set[str]:
        (line,) = [line for line in text.splitlines() if line.startswith(label)]
        return set(re.findall(r"`([^`]+)`", line.split(":", 1)[1].split(";")[0]))

    assert listed("Filters:") == set(ENV.filters)
    assert listed("Tests (") - {"x is none"} == set(ENV.tests)
    assert listed("Functions:") == set(ENV.globals)
