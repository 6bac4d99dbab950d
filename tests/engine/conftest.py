"""Engine tests: every scripted API is strict about the calls it expected."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.engine.fakeapi import FakeAPI


@pytest.fixture(autouse=True)
def strict_fake_apis() -> Iterator[None]:
    FakeAPI.instances.clear()
    yield
    for api in FakeAPI.instances:
        api.verify()
