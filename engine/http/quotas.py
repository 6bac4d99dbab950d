"""Quota pools: a pace of calls per rolling window, a concurrency cap, and pauses announced by rate-limit headers.

A pool spends its quota fully without tripping it: calls are spaced so that no window ever holds more than the
limit (learned from a header when the API tells it), and when a response says nothing remains the next call waits
for the announced reset.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import Mapping
from typing import Any

import httpx


class Quota:
    """One pool of calls shared by a connection's operations that name it."""

    def __init__(self, spec: Mapping[str, Any] | None = None) -> None:
        spec = spec or {}
        self.remaining_header: str | None = spec.get("remaining_header")
        self.reset_header: str | None = spec.get("reset_header")
        self.reset_unit: str = spec.get("reset_unit", "seconds")
        self.limit_header: str | None = spec.get("limit_header")
        self.window: float | None = float(spec["window"]) if spec.get("window") else None
        self.calls: int | None = int(spec["calls"]) if spec.get("calls") else None
        self._slots = asyncio.Semaphore(int(spec.get("concurrency", 8)))
        self._sent: deque[float] = deque()
        self._pace = asyncio.Lock()
        self.blocked_until = 0.0

    async def __aenter__(self) -> Quota:
        await self._slots.acquire()
        async with self._pace:
            await self._wait_for_room()
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._slots.release()

    async def _wait_for_room(self) -> None:
        while True:
            now = time.time()
            delay = self.blocked_until - now
            if self.window and self.calls:
                while self._sent and self._sent[0] <= now - self.window:
                    self._sent.popleft()
                if len(self._sent) >= self.calls:
                    delay = max(delay, self._sent[0] + self.window - now)
            if delay <= 0:
                if self.window:
                    self._sent.append(now)
                return
            await asyncio.sleep(delay)

    def observe(self, response: httpx.Response) -> None:
        """Learn from a response's headers: the real limit, and whether the next call must wait."""
        if self.limit_header:
            with contextlib.suppress(KeyError, ValueError):
                self.calls = max(1, int(float(response.headers[self.limit_header])))
        if not self.remaining_header:
            return
        remaining = response.headers.get(self.remaining_header)
        if remaining is None:
            return
        try:
            empty = float(remaining) <= 0
        except ValueError:
            return
        if not empty:
            return
        reset = response.headers.get(self.reset_header or "", "")
        try:
            seconds = float(reset)
        except ValueError:
            seconds = 1.0
        if self.reset_unit == "epoch":
            seconds -= time.time()
        self.blocked_until = max(self.blocked_until, time.time() + max(0.0, seconds))
