"""The workspace key: never replaced while encrypted values need it; state kept owner-only (issue 17, case 10)."""

from __future__ import annotations

import asyncio
import json
import stat
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner
from cryptography.fernet import Fernet

from ml_connector.cli import main
from ml_connector.connection import Connection
from ml_connector.http.client import ConnectorClient
from ml_connector.store import CredentialError, State
from tests.engine import configs
from tests.engine.fakeapi import FakeAPI
from tests.engine.tiny_workspace import write_workspace


@pytest.fixture(autouse=True)
def no_key_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ML_CONNECTOR_KEY", raising=False)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.mark.duckdb_only  # the message names the .duckdb path
def test_a_deleted_key_file_is_not_replaced_while_encrypted_values_exist(tmp_path: Path) -> None:
    state_path = tmp_path / "state" / "s.duckdb"
    state = State(state_path)
    state.credentials.put("crm_token", "t-123456")
    state.credentials.put("crm.refresh_token", "r-123456")
    state.close()
    key_file = tmp_path / "state" / "s.key"
    key = key_file.read_bytes()
    key_file.unlink()

    with pytest.raises(CredentialError) as caught:
        State(state_path)
    assert str(caught.value) == (
        f"the key file {key_file} is missing, but the state database {state_path} holds 2 encrypted values "
        "(crm.refresh_token, crm_token) that only that key can read, so no new key was made. Restore the key file "
        "from a backup, or set ML_CONNECTOR_KEY to the key they were stored with. To start over instead, set "
        "ML_CONNECTOR_KEY to a new key (Fernet.generate_key()), store each store: secret again with "
        "`ml-connector secret set NAME` and re-authorise OAuth connections")
    assert not key_file.exists()

    key_file.write_bytes(key)  # restored from a backup: everything reads again
    state = State(state_path)
    assert state.credentials.get("crm_token") == "t-123456"
    state.close()


@pytest.mark.duckdb_only  # the message names the .duckdb path
def test_a_missing_key_file_is_one_line_from_the_cli(tmp_path: Path) -> None:
    workspace = write_workspace(tmp_path)
    runner = CliRunner()
    assert runner.invoke(main, ["secret", "set", "x_token", "--value", "t-123456", "-w", str(workspace)]).exit_code == 0
    (tmp_path / "state" / "state.key").unlink()
    result = runner.invoke(main, ["secret", "list", "-w", str(workspace)])
    assert result.exit_code == 3
    assert "Traceback" not in result.output
    assert result.stderr.splitlines() == [
        f"ml-connector: the key file {tmp_path / 'state' / 'state.key'} is missing, but the state database "
        f"{tmp_path / 'state' / 'state.duckdb'} holds 1 encrypted value (x_token) that only that key can read, so "
        "no new key was made. Restore the key file from a backup, or set ML_CONNECTOR_KEY to the key they were "
        "stored with. To start over instead, set ML_CONNECTOR_KEY to a new key (Fernet.generate_key()), store "
        "each store: secret again with `ml-connector secret set NAME` and re-authorise OAuth connections"]
    assert not (tmp_path / "state" / "state.key").exists()


@pytest.mark.duckdb_only  # checks the .duckdb file's mode
def test_a_new_state_makes_its_key_and_keeps_file_and_folder_owner_only(tmp_path: Path) -> None:
    state = State(tmp_path / "state" / "s.duckdb")
    state.credentials.put("a_token", "t-123456")
    state.close()
    assert (mode(tmp_path / "state"), mode(tmp_path / "state" / "s.duckdb"), mode(tmp_path / "state" / "s.key")) \
        == (0o700, 0o600, 0o600)


def test_a_cached_access_token_the_key_cannot_read_is_fetched_again(tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ML_CONNECTOR_KEY", Fernet.generate_key().decode())
    state = State(tmp_path / "s.duckdb")
    state.credentials.put("fake.access_token", json.dumps({"token": "a-old", "expires_at": 4e9, "lifetime": 3600}))
    state.close()
    monkeypatch.setenv("ML_CONNECTOR_KEY", Fernet.generate_key().decode())  # another key: the cache is unreadable
    state = State(tmp_path / "s.duckdb")
    api = FakeAPI().on("POST", "/token", 200, {"access_token": "a-new", "expires_in": 3600}) \
                   .on("GET", "/v2/things", 200, {"data": []})
    config = configs.connector({"connector": "fake", "base_url": "http://api.test/v2", "auth": {"oauth": {
        "type": "oauth2", "grant": "client_credentials", "token_url": "http://api.test/token",
        "client_id": "app", "client_secret": "s-123456"}}})
    client = ConnectorClient(Connection("fake", config), state.credentials, transport=httpx.ASGITransport(app=api.app))
    assert asyncio.run(client.request("GET", "/things")).body == {"data": []}
    assert api.calls("GET", "/v2/things")[0]["headers"]["authorization"] == "Bearer a-new"
    assert json.loads(state.credentials.get("fake.access_token") or "{}")["token"] == "a-new"
    state.close()
