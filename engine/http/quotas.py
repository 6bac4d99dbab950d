"""Quota pools: a pace of calls per rolling window, a concurrency cap, and pauses announced by rate-limit headers.

A pool spends its quota fully without tripping it: calls are spaced so that no window ever holds more than the
limit (learned from a header when the API tells it), and when a response says nothing remains the next call waits
for the announced reset. A pause longer than the connection's ``max_wait`` is not slept through: the call raises
WaitTooLong, which stops the flow (the next run resumes it).
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections import deque

import httpx

from engine.config.connector import QuotaConfig
from engine.http.waits import wait_seconds, within_max_wait


class Quota:
    """One pool of calls shared by a connection's operations that name it."""

    def __init__(self, config: QuotaConfig, *, max_wait: float = math.inf, label: str = "quota") -> None:
        """``label`` names the pool in the message of a wait longer than ``max_wait``."""
        self.max_wait = max_wait
        self.label = label
        self.remaining_header = config.remaining_header
        self.reset_header = config.reset_header
        self.reset_unit: str = config.reset_unit
        self.limit_header = config.limit_header
        self.window = config.window or None
        self.calls = config.calls or None
        self._slots = asyncio.Semaphore(config.concurrency)
        self._sent: deque[float] = deque()
        self._pace = asyncio.Lock()
        self.blocked_until = 0.0

    async def __aenter__(self) -> Quota:
        await self._slots.acquire()
        try:
            async with self._pace:
                await self._wait_for_room()
        except BaseException:
            self._slots.release()
            raise
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
            await asyncio.sleep(within_max_wait(delay, self.max_wait, self.label))

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
        seconds = wait_seconds(response.headers.get(self.reset_header or ""), self.reset_unit, time.time)
        if seconds is None:  # nothing left and no readable reset: a short pause, then the API's answer decides
            seconds = 1.0
        self.blocked_until = max(self.blocked_until, time.time() + seconds)
