"""The workspace's `state:`: a DuckDB path (as always) or a PostgreSQL database with a password reference."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import Result

from ml_connector.errors import SetupError
from ml_connector.store import PostgresTarget
from ml_connector.workspace import Workspace
from tests.pg import fresh_schema, postgres_url
from tests.spec.conftest import WORKSPACE, SpecCopy
from tests.spec.test_broken_specs import reported

__all__ = ["postgres_url"]  # the session's PostgreSQL server, for the test at the end

DUCKDB_STATE = "state: ./state/ml-connector.duckdb\n"


def with_state(state: str) -> str:
    assert WORKSPACE.startswith(DUCKDB_STATE)
    return state + WORKSPACE.removeprefix(DUCKDB_STATE)


POSTGRES = "state:\n  postgresql: postgresql://ml@db.example.com:5432/ml\n  password: env:PG_PASS\n  schema: tenant_a\n"


def test_a_postgresql_state_validates_and_opens_as_a_target(specs: SpecCopy, cli: Callable[..., Result],
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    specs.write("workspace.yaml", with_state(POSTGRES))
    result = cli("validate", "--workspace", "workspace.yaml")
    assert result.exit_code == 0, result.output
    monkeypatch.setenv("PG_PASS", "pw-secret-42")
    workspace = Workspace.open("workspace.yaml")
    target = workspace.state_target
    assert target == PostgresTarget("postgresql://ml@db.example.com:5432/ml", schema="tenant_a",
                                    password="pw-secret-42",
                                    key_file=Path("workspace.yaml").resolve().parent / "state" / "tenant_a.key")


def test_the_schema_defaults_to_public(specs: SpecCopy, monkeypatch: pytest.MonkeyPatch) -> None:
    specs.write("workspace.yaml", with_state("state: {postgresql: 'postgresql://ml@db/ml'}\n"))
    target = Workspace.open("workspace.yaml").state_target
    assert isinstance(target, PostgresTarget) and (target.schema, target.password) == ("public", None)


def test_a_missing_password_variable_is_a_setup_error_naming_it(specs: SpecCopy,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    specs.write("workspace.yaml", with_state(POSTGRES))
    monkeypatch.delenv("PG_PASS", raising=False)
    with pytest.raises(SetupError, match="environment variable PG_PASS is not set"):
        _ = Workspace.open("workspace.yaml").state_target


def test_a_clear_text_password_is_an_error_and_never_printed(specs: SpecCopy, cli: Callable[..., Result]) -> None:
    specs.write("workspace.yaml", with_state(POSTGRES.replace("env:PG_PASS", "Hunter2-s3cret")))
    result = cli("validate", "--workspace", "workspace.yaml")
    assert "write env:NAME" in reported(result, "workspace.yaml:3: state.password")
    assert "Hunter2-s3cret" not in result.output


def test_a_password_in_the_url_is_an_error_and_never_printed(specs: SpecCopy, cli: Callable[..., Result]) -> None:
    specs.write("workspace.yaml", with_state(POSTGRES.replace("ml@db", "ml:Hunter2-s3cret@db")))
    result = cli("validate", "--workspace", "workspace.yaml")
    assert "password: env:NAME" in reported(result, "workspace.yaml:2: state.postgresql")
    assert "Hunter2-s3cret" not in result.output


def test_a_bad_schema_name_is_reported_at_its_line(specs: SpecCopy, cli: Callable[..., Result]) -> None:
    specs.write("workspace.yaml", with_state(POSTGRES.replace("tenant_a", "Tenant-A")))
    result = cli("validate", "--workspace", "workspace.yaml")
    assert reported(result, "workspace.yaml:4: state.schema")


def test_a_duckdb_path_is_unchanged(specs: SpecCopy) -> None:
    specs.write("workspace.yaml", WORKSPACE)
    workspace = Workspace.open("workspace.yaml")
    assert workspace.state_target == workspace.state_path == Path("workspace.yaml").resolve().parent / "state" / \
        "ml-connector.duckdb"


def test_a_workspace_opens_its_postgresql_state_in_its_schema(specs: SpecCopy, postgres_url: str) -> None:
    import psycopg

    schema = "tenant_" + fresh_schema(postgres_url)
    specs.write("workspace.yaml", with_state(f"state: {{postgresql: '{postgres_url}', schema: {schema}}}\n"))
    state = Workspace.open("workspace.yaml").state()
    try:
        state.watermarks.set("f", "2026-02-01")
    finally:
        state.close()
    with psycopg.connect(postgres_url) as conn:
        assert conn.execute(f"SELECT flow, value FROM {schema}.watermarks").fetchall() == [("f", "2026-02-01")]
    assert (Path("state") / f"{schema}.key").exists(), "the key file lives beside the workspace"
