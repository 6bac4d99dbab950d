"""Per-key sliding one-second rate limit (api-facts §3.5: 20 requests/s per client)."""

from __future__ import annotations

import math
import threading
import time
from collections import deque

from ml_connector.sandbox.core import Clock


class RateLimiter:
    """Sliding one-second window of accepted requests per key."""

    def __init__(self, clock: Clock = time.time) -> None:
        self._hits: dict[str, deque[float]] = {}
        self._lock = threading.Lock()
        self.clock = clock

    def retry_after(self, key: str, per_second: int) -> int | None:
        """Seconds to wait if ``key`` is over ``per_second``, else None (and the request is counted)."""
        if not per_second or per_second <= 0:
            return None
        now = self.clock()
        with self._lock:
            hits = self._hits.setdefault(key, deque())
            while hits and hits[0] <= now - 1.0:
                hits.popleft()
            if len(hits) >= per_second:
                return max(1, math.ceil(hits[0] + 1.0 - now))
            hits.append(now)
        return None
