"""Every test: the process-wide redactor is put back as it was, so secrets one test registers (a sandbox's client
id that happens to read "ml-connector") do not mask another test's output."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from ml_connector.http.redact import REDACTOR


@pytest.fixture(autouse=True)
def isolated_redactor() -> Iterator[None]:
    with REDACTOR._lock:
        saved = set(REDACTOR._values)
    yield
    with REDACTOR._lock:
        REDACTOR._values = saved
        REDACTOR._pattern = None
