"""`demo` and `sandbox up` never destroy what a user has (issue 19, CLI consistency).

`demo --dir DIR` keeps an existing state unless `--force`; `sandbox up --write-workspace DIR` never replaces a
workspace file; both refuse before any sandbox is started.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner, Result

import ml_connector.sandbox.demo
import ml_connector.sandbox.up
from ml_connector.cli import main

README = Path(__file__).resolve().parents[2] / "README.md"


class NoServer:
    """Stands in for the sandbox server: starting one means the command went past its safety check."""

    started = 0

    def __init__(self, *args: object, **kwargs: object) -> None:
        pass

    def start(self, *args: object, **kwargs: object) -> object:
        NoServer.started += 1
        raise SystemExit(42)

    def stop(self) -> None:
        pass


@pytest.fixture(autouse=True)
def no_servers(monkeypatch: pytest.MonkeyPatch) -> None:
    NoServer.started = 0
    monkeypatch.setattr(ml_connector.sandbox.demo, "SandboxServer", NoServer)
    monkeypatch.setattr(ml_connector.sandbox.up, "SandboxServer", NoServer)


def cli(*args: str) -> Result:
    return CliRunner().invoke(main, list(args))


def earlier_demo(directory: Path) -> Path:
    (directory / "state").mkdir(parents=True)
    (directory / "state" / "ml-connector.duckdb").write_bytes(b"the user's id maps and audit")
    (directory / "workspace.yaml").write_text("# an earlier demo's workspace\n")
    return directory


def test_demo_keeps_an_existing_state_without_force(tmp_path: Path) -> None:
    directory = earlier_demo(tmp_path / "demo")
    result = cli("demo", "--dir", str(directory))
    assert result.exit_code == 2, result.output
    assert result.stderr == (f"ml-connector: {directory} already holds a state or workspace (state, "
                             "workspace.yaml); pass --force to replace them, or choose another --dir\n")
    assert (directory / "state" / "ml-connector.duckdb").read_bytes() == b"the user's id maps and audit"
    assert NoServer.started == 0


def test_demo_with_force_starts_over(tmp_path: Path) -> None:
    directory = earlier_demo(tmp_path / "demo")
    result = cli("demo", "--dir", str(directory), "--force")
    assert result.exit_code == 42  # went past the check, to starting the sandboxes
    assert not (directory / "state").exists() and not (directory / "workspace.yaml").exists()


def test_sandbox_up_never_overwrites_a_workspace(tmp_path: Path) -> None:
    (tmp_path / "workspace.yaml").write_text("# mine\n")
    result = cli("sandbox", "up", "--write-workspace", str(tmp_path))
    assert result.exit_code == 2, result.output
    assert result.stderr == (f"ml-connector: {tmp_path / 'workspace.yaml'} exists; sandbox up never replaces a "
                             "workspace: remove it or choose another --write-workspace folder\n")
    assert (tmp_path / "workspace.yaml").read_text() == "# mine\n"
    assert NoServer.started == 0


def test_the_readme_says_to_keep_the_key_out_of_version_control() -> None:
    text = " ".join(README.read_text().replace("**", "").split()).lower()
    assert "keep the key file out of version control" in text
    assert "`.gitignore`" in text
