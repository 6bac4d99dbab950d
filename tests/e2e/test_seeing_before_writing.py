"""Seeing before writing, against the sandboxes over real HTTP: `ping` says what works and what does not, `preview`
shows a hand-made edit in the target as a field diff and writes nothing."""

from __future__ import annotations

import os
import subprocess
import sys

from ml_connector.sandbox.workspace import SANDBOX_ENV
from tests.e2e.conftest import REPO, Env


def test_ping_passes_against_both_sandboxes_and_names_refused_credentials(env: Env) -> None:
    for connection in ("qad", "pipedrive"):
        result = env.cli("ping", connection)
        assert result.returncode == 0, result.stdout + result.stderr
        assert result.stdout.splitlines()[-1].endswith("ok, 0 failed")
    wrong = subprocess.run([sys.executable, "-m", "ml_connector.cli", "ping", "pipedrive", "-w", str(env.workspace)],
                           capture_output=True, text=True, timeout=120, cwd=REPO,
                           env={**os.environ, **SANDBOX_ENV, "ML_SANDBOX_PIPEDRIVE_TOKEN": "not-the-token-0000"})
    assert wrong.returncode == 3
    assert "FAIL  auth: the credentials were refused (GET /api/v2/products -> HTTP 401)" in wrong.stdout
    assert env.crm_writes() == {}


def test_preview_shows_an_edit_made_in_the_target_and_writes_nothing(env: Env) -> None:
    code, _ = env.run_json("--flow", "items_to_products")
    assert code == 0
    product = env.crm.store.all("products")[0]
    env.crm.store.patch("products", product["id"], {"name": "Edited by hand"})
    writes = env.crm_writes()
    result = env.cli("preview", "items_to_products", "--limit", "200")
    assert result.returncode == 0, result.stderr
    assert '    name: "Edited by hand" -> ' in result.stdout
    assert result.stdout.count("    name: ") == 1  # the one edited record; the others carry what would be sent
    assert env.crm_writes() == writes
