"""Fixtures for spec tests: a private copy of the shipped specs to break, and a CLI runner."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from ml_connector.cli import main

REPO = Path(__file__).resolve().parents[2]
WORKSPACE = """\
state: ./state/ml-connector.duckdb
integrations: [mappings/qad-pipedrive]
connections:
  qad:
    connector: qad
    auth: password
    settings: {tenant_url: https://acme.adaptive.qad.com, domain: 10USA}
    secrets: {client_id: env:QAD_CLIENT_ID, username: env:QAD_USER, password: env:QAD_PASSWORD}
  pipedrive:
    connector: pipedrive
    auth: api_token
    settings: {company_domain: acme}
    secrets: {api_token: store:pipedrive_api_token}
"""


class SpecCopy:
    """The shipped connectors and mappings copied into a temporary directory (the current directory)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        shutil.copytree(REPO / "connectors", root / "connectors")
        shutil.copytree(REPO / "mappings", root / "mappings")

    def edit(self, relative: str, old: str, new: str) -> None:
        """Replace the one occurrence of `old` in a file."""
        path = self.root / relative
        text = path.read_text()
        assert text.count(old) == 1, f"{old!r} occurs {text.count(old)} times in {relative}"
        path.write_text(text.replace(old, new))

    def write(self, relative: str, text: str) -> Path:
        path = self.root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        return path

    def line(self, relative: str, marker: str) -> int:
        """1-based number of the only line of a file that contains `marker`."""
        found = [
            n for n, text in enumerate((self.root / relative).read_text().splitlines(), 1) if marker in text
        ]
        assert len(found) == 1, f"{marker!r} is on lines {found} of {relative}"
        return found[0]


@pytest.fixture
def specs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> SpecCopy:
    monkeypatch.chdir(tmp_path)
    return SpecCopy(tmp_path)


@pytest.fixture
def cli() -> Callable[..., Result]:
    def run(*args: str) -> Result:
        return CliRunner().invoke(main, list(args), catch_exceptions=False)

    return run
