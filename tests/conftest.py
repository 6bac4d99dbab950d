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


@pytest.fixture(autouse=True)
def isolated_redactor() -> Iterator[None]:
    with REDACTOR._lock:
        saved = set(REDACTOR._values)
    yield
    with REDACTOR._lock:
        REDACTOR._values = saved
        REDACTOR._pattern = None
