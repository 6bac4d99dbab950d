"""Every test: the process-wide redactor is put back as it was, so secrets one test registers (a sandbox's client
id that happens to read "ml-connector") do not mask another test's output. The spec cache of the whole session (and
of the CLIs it starts) is a directory of its own, never the user's."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator

import pytest

from ml_connector.http.redact import REDACTOR
from ml_connector.spec.cache import ENV as SPEC_CACHE

os.environ[SPEC_CACHE] = tempfile.mkdtemp(prefix="ml-connector-test-cache-")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "duckdb_only: checks the DuckDB file itself (its lock, log, checkpoints, "
                                       "size, key file beside it); skipped when the suite runs on PostgreSQL")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    from ml_connector.store import redirect

    if os.environ.get(redirect.MODE_ENV) != "postgresql":
        return
    skip = pytest.mark.skip(reason="DuckDB file behaviour: the state runs on PostgreSQL (ML_CONNECTOR_TEST_STATE)")
    for item in items:
        if item.get_closest_marker("duckdb_only"):
            item.add_marker(skip)


@pytest.fixture(scope="session", autouse=True)
def state_backend() -> Iterator[None]:
    """``ML_CONNECTOR_TEST_STATE=postgresql``: every DuckDB state of the session (and of the CLIs it starts) runs on
    a PostgreSQL server started here instead (engine/store/redirect.py)."""
    from ml_connector.store import redirect

    if os.environ.get(redirect.MODE_ENV) != "postgresql" or os.environ.get(redirect.URL_ENV):
        yield
        return
    from tests.pg import start_server

    server = start_server()
    os.environ[redirect.URL_ENV] = server.url
    try:
        yield
    finally:
        del os.environ[redirect.URL_ENV]
        server.stop()


@pytest.fixture(autouse=True)
def isolated_redactor() -> Iterator[None]:
    with REDACTOR._lock:
        saved = set(REDACTOR._values)
    yield
    with REDACTOR._lock:
        REDACTOR._values = saved
        REDACTOR._pattern = None
