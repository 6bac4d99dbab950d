"""Waits an API announces, read one way, and the longest wait a connection accepts before its flow stops.

Every wait value (a response rule's `wait`, a quota's reset header, the Retry-After default) goes through
`wait_seconds`, so a unit is read the same way everywhere. A wait longer than the connection's `max_wait` is not
slept through: the flow stops with `WaitTooLong` (its watermark has not moved) and the next run resumes it.
"""

from __future__ import annotations

import email.utils
import math
import time
from collections.abc import Callable
from datetime import UTC
from typing import Any

from ml_connector.config.connector import WaitConfig
from ml_connector.http.errors import FatalError

Clock = Callable[[], float]

#: How a wait value is read: a delay in seconds (or, as Retry-After allows, an HTTP date), a delay in
#: milliseconds, a Unix time in seconds or milliseconds, or an HTTP date. The schema's `unit` enums list the same.
UNITS = ("seconds", "ms", "epoch", "epoch_ms", "http_date")


def wait_seconds(raw: Any, unit: str = "seconds", now: Clock = time.time) -> float | None:
    """Seconds to wait from ``raw`` read in ``unit`` (``now`` for the units that name a moment); past moments are 0.

    None when there is no value or it cannot be read (the caller then falls back to its own backoff).
    """
    if unit not in UNITS:
        raise ValueError(f"unknown wait unit {unit!r} (one of {', '.join(UNITS)})")
    if raw is None or isinstance(raw, bool) or not isinstance(raw, (str, int, float)):
        return None
    if unit == "http_date":
        return _until_date(str(raw), now)
    try:
        value = float(raw)
    except ValueError:
        return _until_date(str(raw), now) if unit == "seconds" else None
    if not math.isfinite(value):
        return None
    if unit == "ms":
        value /= 1000
    elif unit == "epoch":
        value -= now()
    elif unit == "epoch_ms":
        value = value / 1000 - now()
    return max(0.0, value)


def _until_date(text: str, now: Clock) -> float | None:
    try:
        moment = email.utils.parsedate_to_datetime(text.strip())
    except (TypeError, ValueError, IndexError):
        return None
    if moment.tzinfo is None:  # "-0000": a UTC time from a source that does not say so
        moment = moment.replace(tzinfo=UTC)
    return max(0.0, moment.timestamp() - now())


class Growth:
    """A rule's waits growing while the API keeps refusing: the n-th consecutive wait is the announced one times
    ``backoff`` to the n-1, at most ``max``, plus a random share up to ``jitter`` of it (still at most ``max``), so
    that clients refused together do not all come back at the same moment. ``reset`` after a success."""

    def __init__(self, config: WaitConfig) -> None:
        self.factor = config.backoff or 1.0
        self.most = config.max
        self.jitter = config.jitter or 0.0
        self.streak = 0

    def next(self, seconds: float, draw: Callable[[], float]) -> float:
        """The wait to make now for an announced ``seconds``; ``draw``: a random number in [0, 1)."""
        self.streak += 1
        try:
            wait = seconds * self.factor ** (self.streak - 1)
        except OverflowError:  # grown past any float: the connection's max_wait stops it
            wait = math.inf
        if self.most is not None:
            wait = min(wait, self.most)
        if self.jitter and math.isfinite(wait):
            wait += wait * self.jitter * draw()
        return min(wait, self.most) if self.most is not None else wait

    def reset(self) -> None:
        self.streak = 0


class WaitTooLong(FatalError):
    """The API asks for a longer pause than the connection's ``max_wait``: the flow stops; the next run resumes."""

    def __init__(self, who: str, seconds: float, max_wait: float) -> None:
        super().__init__(f"{who}: the API asks to wait {seconds:.0f} s, more than max_wait {max_wait:g} s; "
                         "the flow stops and resumes next run")
        self.seconds = seconds
        self.max_wait = max_wait


def within_max_wait(seconds: float, max_wait: float, who: str) -> float:
    """``seconds`` when the connection accepts such a wait; raises WaitTooLong when it does not."""
    if seconds > max_wait:
        raise WaitTooLong(who, seconds, max_wait)
    return seconds
