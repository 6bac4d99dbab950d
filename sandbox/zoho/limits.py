"""API credits over a rolling 24 h window and concurrency caps, per org (facts §6).

Both answer 429 ``TOO_MANY_REQUESTS`` without ``Retry-After``. From 50 % of the day's credits on, responses
carry ``X-API-CREDITS-REMAINING`` (``app.py`` adds it after the route ran).
"""

from __future__ import annotations

import asyncio
import threading
from collections import deque
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

from ml_connector.sandbox.core import Clock
from ml_connector.sandbox.zoho.common import ApiError, Org, zoho_error

DAY = 86_400.0
EDITION_CONCURRENCY = {"free": 5, "standard": 10, "professional": 15, "enterprise": 20, "ultimate": 25}
SUB_CONCURRENCY = 10


def write_cost(records: int) -> int:
    """Insert/update/upsert: 1 credit per 10 records."""
    return max(1, -(-records // 10))


class Limits:
    def __init__(self, clock: Clock, config: dict[str, Any]) -> None:
        self.clock = clock
        self.config = config
        self._spent: dict[str, deque[tuple[float, int]]] = {}
        self._active: dict[str, int] = {}
        self._complex: dict[str, int] = {}
        self._lock = threading.Lock()

    def _too_many(self) -> ApiError:
        return ApiError(zoho_error("TOO_MANY_REQUESTS", str(self.config["too_many_message"]), 429))

    def used(self, org: Org) -> int:
        now = self.clock()
        with self._lock:
            spent = self._spent.setdefault(org.org_id, deque())
            while spent and spent[0][0] <= now - DAY:
                spent.popleft()
            return sum(credits for _, credits in spent)

    def remaining(self, org: Org) -> int:
        return max(0, org.credits_per_day - self.used(org))

    def charge(self, org: Org, credits: int) -> None:
        if self.used(org) + credits > org.credits_per_day:
            raise self._too_many()
        with self._lock:
            self._spent.setdefault(org.org_id, deque()).append((self.clock(), credits))

    def headers(self, org: Org) -> dict[str, str]:
        used = self.used(org)
        if used * 2 >= org.credits_per_day:
            return {"X-API-CREDITS-REMAINING": str(max(0, org.credits_per_day - used))}
        return {}

    def reset(self) -> None:
        with self._lock:
            self._spent.clear()

    def state(self, org: Org) -> dict[str, Any]:
        return {"used": self.used(org), "remaining": self.remaining(org), "active": self._active.get(org.org_id, 0),
                "complex_active": self._complex.get(org.org_id, 0)}

    def slot(self, org: Org, complex_api: bool = False) -> AbstractAsyncContextManager[None]:
        return self._slot(org, complex_api)

    @asynccontextmanager
    async def _slot(self, org: Org, complex_api: bool) -> AsyncIterator[None]:
        with self._lock:
            active = self._active.get(org.org_id, 0)
            complex_active = self._complex.get(org.org_id, 0)
            if active >= org.concurrency or (complex_api and complex_active >= int(self.config["sub_concurrency"])):
                raise self._too_many()
            self._active[org.org_id] = active + 1
            if complex_api:
                self._complex[org.org_id] = complex_active + 1
        try:
            latency = float(self.config.get("request_latency") or 0)
            if latency:
                await asyncio.sleep(latency)
            yield
        finally:
            with self._lock:
                self._active[org.org_id] -= 1
                if complex_api:
                    self._complex[org.org_id] -= 1
