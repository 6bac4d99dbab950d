"""The entity field tables in docs/spec-language.md are generated from the connectors' declarations."""

from __future__ import annotations

import shutil
from pathlib import Path

from ml_connector.spec.field_tables import between_markers, render, update

REPO = Path(__file__).resolve().parents[2]
DOC = REPO / "docs" / "spec-language.md"


def test_doc_tables_match_the_declarations() -> None:
    """Run `python -m ml_connector.spec.field_tables` after changing a connector's `fields`."""
    assert between_markers(DOC.read_text()) == render(REPO / "connectors")


def test_every_shipped_entity_has_a_table() -> None:
    tables = render(REPO / "connectors")
    for entity in ("qad.customer", "qad.item", "qad.sales_order", "pipedrive.organization", "pipedrive.person",
                   "pipedrive.product", "pipedrive.deal"):
        assert f"#### `{entity}`" in tables
    assert "| `contacts[].firstName` | string |  | yes |  |" in tables
    assert "| `products[].quantity` | number |  | yes | (with `expand: [products]`) |" in tables
    assert "| `update_time` | datetime | yes |  | Last change (the watermark) |" in tables


def test_a_changed_declaration_is_drift_until_regenerated(tmp_path: Path) -> None:
    shutil.copytree(REPO / "connectors", tmp_path / "connectors")
    doc = tmp_path / "doc.md"
    doc.write_text(DOC.read_text())
    qad = tmp_path / "connectors" / "qad.yaml"
    qad.write_text(qad.read_text().replace("      siteCode: {type: string, description: Default site}\n",
                                           "      siteCode: {type: string, description: Default site}\n"
                                           "      buyer: {type: string, description: Buyer code}\n"))
    assert between_markers(doc.read_text()) != render(tmp_path / "connectors")
    assert update(doc, tmp_path / "connectors") is True
    assert "| `buyer` | string |  | yes | Buyer code |" in doc.read_text()
    assert between_markers(doc.read_text()) == render(tmp_path / "connectors")
    assert update(doc, tmp_path / "connectors") is False
