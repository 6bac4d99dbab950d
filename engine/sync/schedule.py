"""Per-flow cadence: ``every <n>s|m|h|d`` (the grammar `validate` enforces)."""

from __future__ import annotations

from datetime import datetime, timedelta

from ml_connector.spec.flow_checks import schedule_seconds


def parse_schedule(text: str) -> timedelta:
    """The interval a schedule string names; ValueError when it is not ``every <n><unit>``."""
    seconds = schedule_seconds(text.strip())
    if seconds is None:
        raise ValueError(f"schedule {text!r} is not 'every <n>s|m|h|d'")
    return timedelta(seconds=seconds)


def is_due(schedule: str | None, last_finished: datetime | None, now: datetime) -> bool:
    """A flow with no schedule is run only on demand; one never run is due at once."""
    if not schedule:
        return False
    if last_finished is None:
        return True
    return now - last_finished >= parse_schedule(schedule)
