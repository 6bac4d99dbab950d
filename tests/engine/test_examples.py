"""Specs are testable as data: every shipped mapping's examples pass, and a wrong expectation is reported."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from ml_connector.cli import main
from ml_connector.config import MappingConfig
from ml_connector.spec import load_specs
from ml_connector.transform.examples import run_examples

REPO = Path(__file__).resolve().parents[2]
PROJECT, _ = load_specs([REPO / "connectors", REPO / "mappings"])


@pytest.mark.parametrize("flow", sorted(PROJECT.flows))
def test_shipped_examples_pass(flow: str) -> None:
    config = PROJECT.flows[flow].config
    assert isinstance(config, MappingConfig)
    results = run_examples(config)
    assert results, f"{flow} has no examples"
    assert [r.message for r in results if not r.ok] == []


def test_a_wrong_expectation_is_reported_with_file_and_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    source = (REPO / "mappings" / "qad-pipedrive" / "items_to_products.yaml").read_text()
    target = tmp_path / "mappings" / "items_to_products.yaml"
    target.parent.mkdir()
    target.write_text(source.replace("name: Hex bolt M8", "name: Hex bolt M10"))
    (tmp_path / "connectors").symlink_to(REPO / "connectors")
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(main, ["test"])
    assert result.exit_code == 1
    assert "mappings/items_to_products.yaml:" in result.output and "expected" in result.output
    assert "1 failure" in result.output
