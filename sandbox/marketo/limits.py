"""Request-level limits (facts §2.2): 100 calls / 20 s (606), 10 in flight (615), 50,000 calls a day reset at
midnight US Central (607). A call refused with a response-level code is not counted, so a call is admitted
tentatively and ``settle`` takes it back when its answer was such a refusal.
"""

from __future__ import annotations

import contextlib
import threading
from collections import Counter, deque
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from ml_connector.sandbox.core import Clock
from ml_connector.sandbox.marketo.envelope import MESSAGES, Refusal

CENTRAL = ZoneInfo("America/Chicago")


def quota_day(epoch: float) -> str:
    """The quota day a moment belongs to: the calendar date in US Central time."""
    return datetime.fromtimestamp(epoch, CENTRAL).strftime("%Y-%m-%d")


@dataclass
class Ticket:
    at: float
    day: str


class Limits:
    def __init__(self, clock: Clock, config: dict[str, Any]) -> None:
        self.clock = clock
        self.config = config
        self._window: deque[float] = deque()
        self._daily: Counter[str] = Counter()
        self._in_flight = 0
        self._errors: Counter[tuple[str, str]] = Counter()  # (quota day, code) -> response-level refusals
        self._lock = threading.Lock()

    def admit(self) -> Ticket:
        """Count the call now, or raise a Refusal (607, 606, 615) without counting it."""
        now = self.clock()
        day = quota_day(now)
        with self._lock:
            seconds = float(self.config["rate_seconds"])
            while self._window and self._window[0] <= now - seconds:
                self._window.popleft()
            if self._daily[day] >= int(self.config["daily_quota"]):
                raise Refusal("607")
            if len(self._window) >= int(self.config["rate_calls"]):
                raise Refusal("606", MESSAGES["606"] % (self.config["rate_calls"], self.config["rate_seconds"]))
            if self._in_flight >= int(self.config["concurrency"]):
                raise Refusal("615")
            self._in_flight += 1
            self._window.append(now)
            self._daily[day] += 1
            return Ticket(now, day)

    def settle(self, ticket: Ticket, refused: bool) -> None:
        """The call finished; a response-level refusal gives its counts back."""
        with self._lock:
            self._in_flight -= 1
            if refused:
                self._daily[ticket.day] -= 1
                with contextlib.suppress(ValueError):  # the window may have moved past it already
                    self._window.remove(ticket.at)

    def note_error(self, code: str) -> None:
        """A call refused with a response-level code (for ``stats/errors``; not counted as usage)."""
        day = quota_day(self.clock())
        with self._lock:
            self._errors[(day, code)] += 1

    def errors(self, day: str) -> dict[str, int]:
        """Response-level refusals of one quota day by code."""
        with self._lock:
            return {code: n for (d, code), n in sorted(self._errors.items()) if d == day}

    def usage(self) -> dict[str, int]:
        """Counted calls per quota day."""
        with self._lock:
            return {day: n for day, n in sorted(self._daily.items()) if n}

    def state(self) -> dict[str, Any]:
        now = self.clock()
        with self._lock:
            in_window = sum(1 for at in self._window if at > now - float(self.config["rate_seconds"]))
            return {"today": self._daily[quota_day(now)], "window": in_window, "in_flight": self._in_flight}

    def reset(self) -> None:
        with self._lock:
            self._window.clear()
            self._daily.clear()
