"""Timestamps on the wire: ISO 8601 UTC with milliseconds, parsed back to epoch ms for the index."""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime, timedelta

_TIMESTAMP = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,9})?(Z|[+-]\d{2}:\d{2})$")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def iso_ms(ms: int) -> str:
    """Epoch milliseconds as ISO 8601 UTC with milliseconds and Z."""
    seconds, rem = divmod(ms, 1000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{rem:03d}Z"


def parse_timestamp_ms(value: str) -> int:
    """ISO 8601 timestamp with an explicit zone -> epoch ms, rounded up (ValueError if malformed)."""
    if not _TIMESTAMP.match(value):
        raise ValueError(value)
    micros = (datetime.fromisoformat(value) - _EPOCH) // timedelta(microseconds=1)
    return -(-micros // 1000)


def is_timestamp(value: object) -> bool:
    """An ISO 8601 timestamp with an explicit zone that names a real moment."""
    if not isinstance(value, str):
        return False
    try:
        parse_timestamp_ms(value)
    except ValueError:
        return False
    return True
