"""Run a test session's DuckDB states on PostgreSQL instead, so the whole suite checks the second backend.

Off unless ``ML_CONNECTOR_TEST_STATE=postgresql`` and ``ML_CONNECTOR_TEST_POSTGRES_URL`` are set (tests/conftest.py
sets the URL of the server it started; the CLI processes a test starts inherit both). A state file's path names its
schema (one test's CLI run and its checks in process meet in the same rows); ":memory:" gets a new schema each time.
The key file stays where DuckDB's would be, beside the path.
"""

from __future__ import annotations

import hashlib
import os
import uuid
from pathlib import Path

from ml_connector.store.postgres import PostgresTarget

MODE_ENV = "ML_CONNECTOR_TEST_STATE"
URL_ENV = "ML_CONNECTOR_TEST_POSTGRES_URL"


def postgres_target(path: str | Path) -> PostgresTarget | None:
    """Where the DuckDB state at ``path`` lives in this test session (None: in DuckDB, as always)."""
    url = os.environ.get(URL_ENV)
    if os.environ.get(MODE_ENV) != "postgresql" or not url:
        return None
    if str(path) == ":memory:":
        return PostgresTarget(url, schema="m_" + uuid.uuid4().hex[:20])
    resolved = os.path.realpath(path)
    schema = "f_" + hashlib.sha256(resolved.encode()).hexdigest()[:24]
    return PostgresTarget(url, schema=schema, key_file=Path(resolved).with_suffix(".key"))
