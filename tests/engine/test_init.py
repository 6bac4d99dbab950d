"""The shipped specs travel with the package: found installed or in a checkout, copied by `init`, used by the demo."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

import ml_connector
import ml_connector.resources
from ml_connector.cli import main
from ml_connector.resources import shipped_specs
from ml_connector.sandbox.workspace import write_workspace
from ml_connector.spec import load_specs

REPO = Path(__file__).resolve().parents[2]


def spec_files(root: Path) -> dict[str, str]:
    """Every shipped spec file below ``root`` (connectors/, mappings/), by relative path, with its text."""
    return {str(path.relative_to(root)): path.read_text() for folder in ("connectors", "mappings")
            for path in sorted((root / folder).rglob("*.yaml"))}


@pytest.fixture
def installed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """As in a wheel installed into site-packages: no checkout beside the code, the specs as a data package."""
    site = tmp_path / "site-packages"
    for folder in ("connectors", "mappings"):
        shutil.copytree(REPO / folder, site / "ml_connector_specs" / folder)
    monkeypatch.setattr(ml_connector.resources, "CHECKOUT", None)
    # An editable install maps the data package to the checkout (a finder, and a hook entry on sys.path): an
    # installed wheel has neither.
    monkeypatch.setattr(sys, "meta_path", [finder for finder in sys.meta_path
                                           if not str(getattr(finder, "__module__", "")).startswith("__editable__")])
    monkeypatch.setattr(sys, "path", [str(site), *(entry for entry in sys.path
                                                    if not entry.startswith("__editable__"))])
    for name in [name for name in sys.modules if name.startswith("ml_connector_specs")]:
        monkeypatch.delitem(sys.modules, name)
    return site / "ml_connector_specs"


def test_a_checkout_uses_its_own_spec_folders() -> None:
    assert shipped_specs() == REPO


def test_installed_the_specs_come_from_the_data_package(installed: Path) -> None:
    assert shipped_specs() == installed
    assert spec_files(installed) == spec_files(REPO)


def test_the_demo_workspace_points_at_the_installed_specs(installed: Path, tmp_path: Path) -> None:
    document = yaml.safe_load(write_workspace(tmp_path / "demo", {"qad": "http://127.0.0.1:1"}).read_text())
    assert document["connectors"] == [str(installed / "connectors")]
    assert document["integrations"] == [str(installed / "mappings" / "qad-pipedrive")]


def test_missing_shipped_specs_are_one_clear_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ml_connector.resources, "CHECKOUT", None)
    monkeypatch.setattr(ml_connector.resources, "SPECS_PACKAGE", "ml_connector_specs_not_installed")
    result = CliRunner().invoke(main, ["init", str(tmp_path / "project")])
    assert result.exit_code == 2, result.output
    assert result.stderr.splitlines() == [
        "ml-connector: the shipped specs (the data package ml_connector_specs_not_installed) are not installed: "
        "reinstall ml-connector"]


def test_init_copies_the_shipped_specs_into_a_project_that_validates(tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    project = tmp_path / "project"
    result = CliRunner().invoke(main, ["init", str(project)])
    assert result.exit_code == 0, result.output
    assert spec_files(project) == spec_files(REPO)
    assert "copied connectors/qad.yaml" in result.output
    _, problems = load_specs([project / "connectors", project / "mappings"])
    assert problems == []
    monkeypatch.chdir(project)
    validated = CliRunner().invoke(main, ["validate"])
    assert validated.exit_code == 0, validated.output


def test_init_never_overwrites_a_spec_that_is_there(tmp_path: Path) -> None:
    project = tmp_path / "project"
    (project / "connectors").mkdir(parents=True)
    (project / "connectors" / "qad.yaml").write_text("# my edits\n")
    result = CliRunner().invoke(main, ["init", str(project)])
    assert result.exit_code == 0, result.output
    assert (project / "connectors" / "qad.yaml").read_text() == "# my edits\n"
    assert "kept connectors/qad.yaml (already there; not overwritten)" in result.output
    copied = spec_files(project)
    assert copied.pop("connectors/qad.yaml") == "# my edits\n"
    shipped = spec_files(REPO)
    del shipped["connectors/qad.yaml"]
    assert copied == shipped
    again = CliRunner().invoke(main, ["init", str(project)])
    assert again.exit_code == 0
    assert "copied " not in again.output
    assert f"0 copied, {len(spec_files(REPO))} kept" in again.output


def test_the_demo_without_the_sandbox_extra_names_it_in_one_line(tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    import ml_connector.sandbox.workspace

    monkeypatch.setattr(ml_connector, "sandbox", ml_connector.sandbox)  # the failed import below rebinds it
    for name in [name for name in sys.modules if name.startswith("ml_connector.sandbox")]:
        monkeypatch.delitem(sys.modules, name)
    for name in [name for name in sys.modules if name.split(".")[0] == "sortedcontainers"] or ["sortedcontainers"]:
        monkeypatch.setitem(sys.modules, name, None)  # importing it now raises ModuleNotFoundError
    result = CliRunner().invoke(main, ["demo", "--dir", str(tmp_path / "demo")])
    assert result.exit_code == 2, result.output
    assert result.stderr.splitlines() == [
        "ml-connector: the sandboxes need the optional extra 'sandbox' (missing module sortedcontainers): "
        "pip install 'ml-connector[sandbox]'"]
    assert not (tmp_path / "demo").exists()
