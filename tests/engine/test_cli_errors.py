"""Errors a person sees: one clear line on stderr, never a traceback (unless -vv), and documented exit codes."""

from __future__ import annotations

import functools
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner, Result
from cryptography.fernet import Fernet

import ml_connector.cli
from ml_connector.cli import main
from ml_connector.sync.runner import Runner
from tests.engine.fakeapi import FakeAPI
from tests.engine.tiny_workspace import CONNECTOR, write_workspace


@pytest.fixture(autouse=True)
def key_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAKE_KEY", "k-123456")
    monkeypatch.delenv("ML_CONNECTOR_KEY", raising=False)


def cli(*args: str) -> Result:
    return CliRunner().invoke(main, list(args))


def against(monkeypatch: pytest.MonkeyPatch, api: FakeAPI) -> None:
    """Runs started by the CLI call ``api`` in process."""
    monkeypatch.setattr(ml_connector.cli, "Runner",
                        functools.partial(Runner, transport=httpx.ASGITransport(app=api.app)))


def one_line(result: Result) -> str:
    """The single line the command wrote on stderr; never a traceback."""
    assert "Traceback" not in result.output
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


def test_help_lists_the_exit_codes() -> None:
    result = cli("--help")
    assert result.exit_code == 0
    for line in ("0  ok", "1  some records failed", "2  specs, workspace or state invalid",
                 "3  a flow failed", "4  unexpected error"):
        assert line in result.output


def test_a_secret_stored_with_another_key_is_one_clear_line(tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    workspace = str(write_workspace(tmp_path, secret="store:fake_key"))
    monkeypatch.setenv("ML_CONNECTOR_KEY", Fernet.generate_key().decode())
    assert cli("secret", "set", "fake_key", "--value", "k-123456", "-w", workspace).exit_code == 0
    monkeypatch.setenv("ML_CONNECTOR_KEY", Fernet.generate_key().decode())
    against(monkeypatch, FakeAPI())  # strict: no call may happen
    result = cli("run", "-w", workspace)
    assert result.exit_code == 3, result.output
    assert "Traceback" not in result.output
    assert ("credential 'fake_key' cannot be decrypted with this workspace key (ML_CONNECTOR_KEY, or the .key file "
            "beside the state database): set the key it was stored with, or store it again with "
            "`ml-connector secret set fake_key`") in result.output


def test_a_workspace_key_that_is_not_a_key_is_one_clear_line(tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    workspace = str(write_workspace(tmp_path))
    monkeypatch.setenv("ML_CONNECTOR_KEY", "not-a-key")
    result = cli("secret", "list", "-w", workspace)
    assert result.exit_code == 3
    assert one_line(result) == ("ml-connector: the workspace key (ML_CONNECTOR_KEY, or the .key file beside the "
                                "state database) is not a Fernet key (32 url-safe base64-encoded bytes)")


def test_a_template_that_fails_at_run_time_fails_its_flow_with_one_clear_line(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    connector = CONNECTOR.replace("auth:\n", "headers: {x-tenant: \"{{ connection.tenant + 1 }}\"}\nauth:\n")
    workspace = str(write_workspace(tmp_path, connector=connector))
    against(monkeypatch, FakeAPI())
    result = cli("run", "-w", workspace)
    assert result.exit_code == 3, result.output
    assert "Traceback" not in result.output
    assert ("things: connection api: headers.x-tenant: the template failed: 'dict object' has no attribute "
            "'tenant'") in result.stdout


def test_an_unexpected_error_is_one_line_and_vv_shows_the_traceback(tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    workspace = str(write_workspace(tmp_path))

    async def broken(self: Runner, *args: object, **kwargs: object) -> None:
        raise KeyError("surprise")

    monkeypatch.setattr(Runner, "run", broken)
    result = cli("run", "-w", workspace)
    assert result.exit_code == 4
    assert one_line(result) == "ml-connector: unexpected error: KeyError: 'surprise' (run with -vv for details)"
    detailed = cli("-vv", "run", "-w", workspace)
    assert detailed.exit_code == 4
    assert "Traceback (most recent call last)" in detailed.stderr and "KeyError: 'surprise'" in detailed.stderr


def test_test_without_mapping_specs_says_where_it_looked(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    result = cli("test")
    assert result.exit_code == 2
    assert one_line(result) == "ml-connector: no mapping specs (files with `flow:`) found in mappings"
    (tmp_path / "specs").mkdir()
    result = cli("test", "specs", "more")
    assert result.exit_code == 2
    assert one_line(result) == "ml-connector: no mapping specs (files with `flow:`) found in specs, more"


def test_a_missing_workspace_file_is_one_line_exit_2(tmp_path: Path) -> None:
    result = cli("status", "-w", str(tmp_path / "nope.yaml"))
    assert result.exit_code == 2
    assert one_line(result) == f"ml-connector: no workspace file at {tmp_path / 'nope.yaml'} (see README: Workspace)"


def test_an_invalid_workspace_lists_its_problems_exit_2(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    workspace = write_workspace(tmp_path)
    workspace.write_text(workspace.read_text().replace("connector: fake", "connector: nope"))
    monkeypatch.chdir(tmp_path)
    result = cli("run", "-w", str(workspace))
    assert result.exit_code == 2
    assert result.stderr.splitlines() == [
        "workspace.yaml:4: connections.api.connector: integration 'pair' needs connector 'fake' for connection "
        "'api', not 'nope'",
        "workspace.yaml:4: connections.api.connector: unknown connector 'nope' (known: fake)"]


def test_an_unknown_flow_is_a_usage_error_exit_2(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    workspace = str(write_workspace(tmp_path))
    against(monkeypatch, FakeAPI())
    result = cli("run", "-w", workspace, "--flow", "nope")
    assert result.exit_code == 2
    assert "Traceback" not in result.output
    assert "unknown flow 'nope' (flows: things)" in result.stderr


def test_a_failed_flow_exits_3_and_an_ok_run_0(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    workspace = str(write_workspace(tmp_path))
    api = FakeAPI().on("GET", "/v2/things", 429, {"error": "quota"}, {"retry-after": "7200"})
    against(monkeypatch, api)
    result = cli("run", "-w", workspace)
    assert result.exit_code == 3, result.output
    assert "Traceback" not in result.output
    assert ("things: connection api: the API asks to wait 7200 s, more than max_wait 900 s; the flow stops and "
            "resumes next run") in result.stdout
    against(monkeypatch, FakeAPI().on("GET", "/v2/things", 200, {"data": []}))
    result = cli("run", "-w", workspace)
    assert result.exit_code == 0, result.output
