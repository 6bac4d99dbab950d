"""Keys a read or an expansion sends: distinct, non-empty, sorted, in batches.

Sorted so that the requests of a read are the same whatever order the keys were known in (a request log, a
replay, a retried batch); distinct and non-empty because an API filtering by a list of values gains nothing
from a repeat and may refuse an empty value.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any


def key_text(value: Any) -> str | None:
    """A value as a key, or None for a missing one (null, empty text)."""
    if value is None:
        return None
    text = str(value)
    return text or None


def distinct_keys(values: Iterable[Any]) -> list[str]:
    """The distinct non-empty keys among ``values``, sorted."""
    return sorted({text for text in map(key_text, values) if text is not None})


def batches(keys: list[str], size: int) -> Iterator[list[str]]:
    """``keys`` in consecutive batches of up to ``size``."""
    for start in range(0, len(keys), size):
        yield keys[start:start + size]
