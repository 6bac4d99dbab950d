"""Issue 24 target 2 (flat memory): a state file's DuckDB cache is bounded, not 80% of the machine."""

from __future__ import annotations

from pathlib import Path

import pytest

from ml_connector.store import State
from ml_connector.store.database import MEMORY_ENV

pytestmark = pytest.mark.duckdb_only


def limit(state: State) -> str:
    row = state.db.fetchone("SELECT current_setting('memory_limit')")
    assert row is not None
    return str(row[0])


def test_a_state_file_caps_duckdbs_memory_at_256_mb(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(MEMORY_ENV, raising=False)
    state = State(tmp_path / "state.duckdb")
    try:
        assert limit(state) == "244.1 MiB"  # 256 MB as DuckDB prints it
    finally:
        state.close()


def test_the_cap_can_be_raised(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(MEMORY_ENV, "1GB")
    state = State(tmp_path / "state.duckdb")
    try:
        assert limit(state) == "953.6 MiB"
    finally:
        state.close()
