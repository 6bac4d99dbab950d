"""`ml-connector new connector NAME` and `new mapping SOURCE TARGET` write commented starting specs that validate,
and never overwrite a file."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from ml_connector.cli import main

REPO = Path(__file__).resolve().parents[2]


def cli(*args: str) -> Result:
    return CliRunner().invoke(main, list(args))


def validated(*paths: str) -> str:
    result = cli("validate", *paths)
    assert result.exit_code == 0, result.output
    return result.output.splitlines()[-1]


def test_a_new_connector_validates_and_is_commented(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    result = cli("new", "connector", "my_crm")
    assert result.exit_code == 0, result.output
    text = (tmp_path / "connectors" / "my_crm.yaml").read_text()
    assert "connector: my_crm" in text and text.count("#") >= 10
    assert validated("connectors/my_crm.yaml") == "1 file, 0 problems"


def test_a_new_mapping_between_two_new_connectors_validates(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert cli("new", "connector", "erp").exit_code == 0
    assert cli("new", "connector", "crm").exit_code == 0
    result = cli("new", "mapping", "erp.record", "crm.record")
    assert result.exit_code == 0, result.output
    mapping = (tmp_path / "mappings" / "erp-crm" / "record_to_record.yaml").read_text()
    assert "from: {connection: erp, entity: record}" in mapping and "  name: name" in mapping
    assert (tmp_path / "mappings" / "erp-crm" / "integration.yaml").is_file()
    assert validated() == "4 files, 0 problems"


def test_a_new_mapping_between_shipped_connectors_maps_same_named_fields(tmp_path: Path,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    shutil.copytree(REPO / "connectors", tmp_path / "connectors")
    monkeypatch.chdir(tmp_path)
    (tmp_path / "workspace.yaml").write_text("connections: {erp: {connector: qad}, crm: {connector: pipedrive}}\n")
    result = cli("new", "mapping", "erp.customer", "crm.organization")  # connection names from the workspace
    assert result.exit_code == 0, result.output
    mapping = (tmp_path / "mappings" / "qad-pipedrive" / "customer_to_organization.yaml").read_text()
    assert "from: {connection: erp, entity: customer}" in mapping
    assert "key: customerCode" in mapping
    assert "match: {target: name}" in mapping  # organizations are searched before they are written
    assert "  # website: ...  # string" in mapping  # a writable field with no same-named source field
    assert "update_time" not in mapping  # not writable
    # a second flow joins the same integration's flows
    assert cli("new", "mapping", "qad.item", "pipedrive.product").exit_code == 0
    assert "  - item_to_product.yaml" in (tmp_path / "mappings" / "qad-pipedrive" / "integration.yaml").read_text()
    assert validated("connectors", "mappings").endswith(", 0 problems")


def test_new_never_overwrites_a_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "connectors").mkdir()
    (tmp_path / "connectors" / "mine.yaml").write_text("connector: mine  # my work\n")
    result = cli("new", "connector", "mine")
    assert result.exit_code == 2
    assert "connectors/mine.yaml exists already; nothing was written" in result.stderr
    assert (tmp_path / "connectors" / "mine.yaml").read_text() == "connector: mine  # my work\n"


def test_new_mapping_names_an_unknown_end(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert cli("new", "connector", "erp").exit_code == 0
    result = cli("new", "mapping", "erp.nothing", "erp.record")
    assert result.exit_code == 2
    assert "connector erp has no entity 'nothing' (entities: record)" in result.output
    assert not (tmp_path / "mappings").exists()
