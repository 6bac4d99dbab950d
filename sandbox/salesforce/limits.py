"""Daily API requests: a rolling 24 h count per org (facts §6); spent -> 403 REQUEST_LIMIT_EXCEEDED, never 429."""

from __future__ import annotations

import threading
from collections import deque
from typing import Any

from ml_connector.sandbox.core import Clock
from ml_connector.sandbox.salesforce.common import sf_error

WINDOW = 86_400.0


class ApiUsage:
    def __init__(self, clock: Clock, config: dict[str, Any]) -> None:
        self.clock = clock
        self.config = config
        self._calls: deque[float] = deque()
        self._lock = threading.Lock()

    @property
    def maximum(self) -> int:
        return int(self.config["daily_api_requests"])

    def used(self) -> int:
        with self._lock:
            self._expire()
            return len(self._calls)

    def charge(self) -> None:
        """Count one call, or refuse it (a refused call is not counted)."""
        with self._lock:
            self._expire()
            if len(self._calls) >= self.maximum:
                raise sf_error("REQUEST_LIMIT_EXCEEDED", "TotalRequests Limit exceeded.", 403)
            self._calls.append(self.clock())

    def header(self) -> str:
        return f"api-usage={self.used()}/{self.maximum}"

    def reset(self) -> None:
        with self._lock:
            self._calls.clear()

    def _expire(self) -> None:
        floor = self.clock() - WINDOW
        while self._calls and self._calls[0] <= floor:
            self._calls.popleft()
