"""`audit` shows what was sent for a record (its payload, secrets masked), not only its hash, and exports the rows
to CSV or Parquet."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import duckdb
import pytest
from click.testing import CliRunner, Result

from ml_connector.cli import main
from ml_connector.http.redact import REDACTOR
from ml_connector.store import AuditRow, State
from ml_connector.workspace import Workspace
from tests.engine.fakeapi import FakeAPI
from tests.engine.flowkit import flow_spec, run_flow
from tests.engine.tiny_workspace import write_workspace

SECRET = "tok-9f8e7d6c5b"


@pytest.fixture(autouse=True)
def key_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAKE_KEY", "k-123456")
    monkeypatch.delenv("ML_CONNECTOR_KEY", raising=False)


def cli(*args: str) -> Result:
    return CliRunner().invoke(main, list(args))


def test_a_written_record_leaves_its_payload_in_the_audit_with_secrets_masked() -> None:
    REDACTOR.add(SECRET)  # a secret in use (as a connection registers its own)
    state = State(":memory:")
    source = FakeAPI().on("GET", "/v2/things", 200, {"data": [
        {"code": "A-1", "name": "Anvil", "updated": "2026-03-01T10:00:00Z", "note": f"ref {SECRET}"}]})
    target = FakeAPI().on("POST", "/v2/items", 201, {"data": {"id": 42}})
    summary = run_flow(state, flow_spec({"name": "name", "memo": "note", "size": "`3`"}), source, target)
    assert summary.created == 1
    [row] = state.audit.query(flow="things")
    assert row["payload"] == {"name": "Anvil", "memo": "ref ***", "size": 3}
    assert SECRET not in str(state.db.fetchall("SELECT payload FROM audit"))


def stored(tmp_path: Path) -> str:
    workspace = write_workspace(tmp_path)
    state = Workspace.open(workspace).state()
    try:
        state.audit.add([
            AuditRow("r1", "things", "A-1", "42", "create", "ok", payload_hash="h1", payload={"name": "Anvil"}),
            AuditRow("r1", "things", "B-2", None, "park", "failed", error="422: name is required",
                     payload={"name": None}),
            AuditRow("r1", "other", "C-3", "7", "skip", "unchanged", payload_hash="h3")])
    finally:
        state.close()
    return str(workspace)


def test_audit_payload_shows_what_was_sent(tmp_path: Path) -> None:
    result = cli("audit", "-w", stored(tmp_path), "--key", "A-1", "--payload")
    assert result.exit_code == 0, result.output
    assert "things  A-1 -> 42  create ok" in result.output
    assert '"name": "Anvil"' in result.output
    as_json = json.loads(cli("audit", "-w", stored(tmp_path / "j"), "--key", "B-2", "--json").output)
    assert as_json[0]["payload"] == {"name": None}


def test_audit_exports_the_selected_rows_to_csv(tmp_path: Path) -> None:
    output = tmp_path / "audit.csv"
    result = cli("audit", "-w", stored(tmp_path), "--flow", "things", "--format", "csv", "--output", str(output))
    assert result.exit_code == 0, result.output
    assert result.output.strip() == f"wrote 2 audit rows to {output} (csv)"
    rows = {row["source_key"]: row for row in csv.DictReader(output.open())}
    assert set(rows) == {"A-1", "B-2"}
    assert json.loads(rows["A-1"]["payload"]) == {"name": "Anvil"}
    assert rows["B-2"]["error"] == "422: name is required"


def test_audit_exports_to_parquet_by_the_file_suffix(tmp_path: Path) -> None:
    output = tmp_path / "audit.parquet"
    result = cli("audit", "-w", stored(tmp_path), "--output", str(output))
    assert result.exit_code == 0, result.output
    rows = duckdb.sql(f"SELECT source_key, outcome, payload FROM '{output}' ORDER BY source_key").fetchall()
    assert [(key, outcome) for key, outcome, _ in rows] == [("A-1", "ok"), ("B-2", "failed"), ("C-3", "unchanged")]
    assert rows[2][2] is None


def test_an_export_needs_a_format_it_can_tell(tmp_path: Path) -> None:
    result = cli("audit", "-w", stored(tmp_path), "--output", str(tmp_path / "audit.txt"))
    assert result.exit_code == 2
    assert "say --format csv|parquet" in result.output
    assert not (tmp_path / "audit.txt").exists()
