"""`secret delete`, `secret list` (the user's secrets only), validated names, and `secret rotate-key` that loses
nothing when it is interrupted at any step (issue 19, CLI consistency)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from cryptography.fernet import Fernet, InvalidToken

from ml_connector.cli import main
from ml_connector.store import State
from tests.engine.tiny_workspace import write_workspace

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def no_key_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ML_CONNECTOR_KEY", raising=False)


def cli(*args: str) -> Result:
    return CliRunner().invoke(main, list(args))


def stored(tmp_path: Path) -> Path:
    """A workspace whose state holds two user secrets and an OAuth connection's cached tokens."""
    workspace = write_workspace(tmp_path)
    state = State(tmp_path / "state" / "state.duckdb")
    state.credentials.put("crm_token", "t-123456")
    state.credentials.put("erp.password", "p-123456")
    state.credentials.put("api.access_token", json.dumps({"token": "a-123456", "expires_at": 4e9}))
    state.credentials.put("api.refresh_token", "r-123456")
    state.close()
    return workspace


def values(tmp_path: Path) -> dict[str, str | None]:
    state = State(tmp_path / "state" / "state.duckdb")
    try:
        return {name: state.credentials.get(name) for name in state.credentials.names()}
    finally:
        state.close()


EXPECTED = {"api.access_token": json.dumps({"token": "a-123456", "expires_at": 4e9}),
            "api.refresh_token": "r-123456", "crm_token": "t-123456", "erp.password": "p-123456"}


def test_secret_list_shows_the_users_secrets_not_cached_tokens(tmp_path: Path) -> None:
    workspace = str(stored(tmp_path))
    result = cli("secret", "list", "-w", workspace)
    assert result.exit_code == 0, result.output
    assert result.stdout.split() == ["crm_token", "erp.password"]
    as_json = cli("secret", "list", "-w", workspace, "--json")
    assert json.loads(as_json.stdout) == {"secrets": ["crm_token", "erp.password"]}


def test_secret_delete_removes_one_secret_and_refuses_an_unknown_name(tmp_path: Path) -> None:
    workspace = str(stored(tmp_path))
    result = cli("secret", "delete", "crm_token", "-w", workspace)
    assert result.exit_code == 0, result.output
    assert result.stdout == "deleted crm_token\n"
    assert "crm_token" not in values(tmp_path)
    again = cli("secret", "delete", "crm_token", "-w", workspace)
    assert again.exit_code == 2
    assert again.stderr == "ml-connector: no secret named crm_token in the credential store (secret list shows them)\n"


@pytest.mark.parametrize("name", ["bad name", "-x", "a;b", "ünïcode", "api.access_token", "x.refresh_token"])
def test_secret_names_follow_the_workspace_reference_rule(tmp_path: Path, name: str) -> None:
    workspace = str(write_workspace(tmp_path))
    result = cli("secret", "set", "-w", workspace, "--value", "v-123456", "--", name)
    assert result.exit_code == 2, result.output
    assert f"{name!r}" in result.stderr
    assert ("letters, digits and _ . : / - , starting with a letter, digit or _" in result.stderr
            or "kept for cached tokens" in result.stderr)
    assert not (tmp_path / "state").exists() or "v-123456" not in json.dumps(values(tmp_path))


def test_rotate_key_re_encrypts_every_secret_and_token_under_a_new_key(tmp_path: Path) -> None:
    workspace = str(stored(tmp_path))
    key_file = tmp_path / "state" / "state.key"
    old_key = key_file.read_bytes()
    result = cli("secret", "rotate-key", "-w", workspace)
    assert result.exit_code == 0, result.output
    assert result.stdout == f"re-encrypted 4 stored values under a new key in {key_file}\n"
    new_key = key_file.read_bytes()
    assert new_key != old_key
    assert values(tmp_path) == EXPECTED
    state = State(tmp_path / "state" / "state.duckdb")
    ciphertext = state.db.fetchone("SELECT ciphertext FROM credentials WHERE name = 'crm_token'")
    state.close()
    assert ciphertext is not None
    with pytest.raises(InvalidToken):
        Fernet(old_key).decrypt(ciphertext[0].encode())
    assert [p.name for p in sorted((tmp_path / "state").iterdir()) if "key" in p.name] == ["state.key"]


@pytest.mark.duckdb_only  # the message names the .duckdb path
def test_an_old_key_file_put_back_after_a_rotation_is_named_as_such(tmp_path: Path) -> None:
    workspace = str(stored(tmp_path))
    key_file = tmp_path / "state" / "state.key"
    old_key = key_file.read_bytes()
    assert cli("secret", "rotate-key", "-w", workspace).exit_code == 0
    key_file.write_bytes(old_key)  # a backup from before the rotation
    result = cli("secret", "list", "-w", workspace)
    assert result.exit_code == 3
    assert result.stderr == (
        f"ml-connector: the key file {key_file} is not the key the state database {tmp_path / 'state' / 'state.duckdb'}"
        " was re-encrypted with by its last `ml-connector secret rotate-key`: restore the key file backed up after "
        "that rotation\n")


def test_a_bad_name_is_refused_before_the_value_is_asked_for(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["secret", "set", "bad name", "-w", str(write_workspace(tmp_path))],
                                input="v-123456\n")
    assert result.exit_code == 2
    assert "Value:" not in result.output


def test_rotate_key_refuses_a_key_from_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ML_CONNECTOR_KEY", Fernet.generate_key().decode())
    workspace = str(stored(tmp_path))
    result = cli("secret", "rotate-key", "-w", workspace)
    assert result.exit_code == 3
    assert result.stderr.startswith("ml-connector: the key comes from ML_CONNECTOR_KEY")


CRASHING = """\
import os, sys
import ml_connector.store.credentials as credentials
from ml_connector.store import State

def crash(step):
    if step == sys.argv[2]:
        os._exit(9)

credentials.rotation_step = crash
state = State(sys.argv[1])
state.credentials.rotate_key()
"""


@pytest.mark.parametrize("step", ["new key written aside", "values re-encrypted", "state committed",
                                  "key file replaced"])
def test_an_interrupted_rotation_loses_nothing(tmp_path: Path, step: str) -> None:
    stored(tmp_path)
    state_path = tmp_path / "state" / "state.duckdb"
    key_file = tmp_path / "state" / "state.key"
    old_key = key_file.read_bytes()
    env = {k: v for k, v in os.environ.items() if k != "ML_CONNECTOR_KEY"}
    done = subprocess.run([sys.executable, "-c", textwrap.dedent(CRASHING), str(state_path), step], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 9, done.stderr
    assert values(tmp_path) == EXPECTED  # the next open sees a consistent key and state
    rotated = step in ("state committed", "key file replaced")
    assert (key_file.read_bytes() != old_key) is rotated
    assert [p.name for p in sorted((tmp_path / "state").iterdir()) if "key" in p.name] == ["state.key"]
    assert cli("secret", "rotate-key", "-w", str(tmp_path / "workspace.yaml")).exit_code == 0  # and it can go on
    assert values(tmp_path) == EXPECTED


@pytest.mark.duckdb_only  # the .gitignore lists the .duckdb files, made beside a DuckDB state
def test_a_new_key_file_gets_a_gitignore_beside_it(tmp_path: Path) -> None:
    workspace = str(write_workspace(tmp_path))
    assert cli("secret", "set", "x_token", "--value", "t-123456", "-w", workspace).exit_code == 0
    ignore = (tmp_path / "state" / ".gitignore").read_text()
    assert ignore.splitlines()[1:] == ["state.key", "state.duckdb", "state.duckdb.*"]
    other = tmp_path / "other"
    write_workspace(other)
    (other / "state").mkdir()
    (other / "state" / ".gitignore").write_text("mine\n")  # a user's own file is never replaced
    assert cli("secret", "set", "x_token", "--value", "t-123456", "-w", str(other / "workspace.yaml")).exit_code == 0
    assert (other / "state" / ".gitignore").read_text() == "mine\n"
