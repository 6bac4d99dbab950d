"""Per-flow cadence: ``every <n>s|m|h|d``."""

from __future__ import annotations

import re
from datetime import datetime, timedelta

_EVERY = re.compile(r"^every\s+(\d+)\s*([smhd])$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}


def parse_schedule(text: str) -> timedelta:
    """The interval a schedule string names; ValueError when it is not ``every <n><unit>``."""
    match = _EVERY.match(text.strip())
    if not match or int(match.group(1)) <= 0:
        raise ValueError(f"schedule {text!r} is not 'every <n>s|m|h|d'")
    return timedelta(**{_UNITS[match.group(2)]: int(match.group(1))})


def is_due(schedule: str | None, last_finished: datetime | None, now: datetime) -> bool:
    """A flow with no schedule is run only on demand; one never run is due at once."""
    if not schedule:
        return False
    if last_finished is None:
        return True
    return now - last_finished >= parse_schedule(schedule)
