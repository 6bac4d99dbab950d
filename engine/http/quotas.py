"""Quota pools: concurrency caps and pauses announced by rate-limit headers, shared by a connection's calls."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from typing import Any

import httpx


class Quota:
    """Waits before a call when the last response said the pool is empty; caps calls in flight."""

    def __init__(self, spec: Mapping[str, Any] | None = None) -> None:
        spec = spec or {}
        self.remaining_header: str | None = spec.get("remaining_header")
        self.reset_header: str | None = spec.get("reset_header")
        self.reset_unit: str = spec.get("reset_unit", "seconds")
        self._slots = asyncio.Semaphore(int(spec.get("concurrency", 8)))
        self.blocked_until = 0.0

    async def __aenter__(self) -> Quota:
        await self._slots.acquire()
        delay = self.blocked_until - time.time()
        if delay > 0:
            await asyncio.sleep(delay)
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._slots.release()

    def observe(self, response: httpx.Response) -> None:
        """Learn from the headers of a response whether the next call must wait."""
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
