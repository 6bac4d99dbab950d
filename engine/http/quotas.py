"""Quota pools: a pace of calls per rolling window, a concurrency cap, and pauses announced by rate-limit headers.

A pool spends its quota fully without tripping it: calls are spaced so that no window ever holds more than the
limit (learned from a header when the API tells it), and when a response says nothing remains the next call waits
for the announced reset, or, when the API announces none, until the declared ``window`` has passed since the window
began (see ``RemainingCount``). A pause longer than the connection's ``max_wait`` is not slept through: the call
raises WaitTooLong, which stops the flow (the next run resumes it).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections import deque
from collections.abc import Awaitable, Callable

import httpx

from ml_connector.config.connector import QuotaConfig
from ml_connector.http.shared_quota import SharedPool, SharedQuotaUnavailable
from ml_connector.http.usage import UsageLimit
from ml_connector.http.waits import Clock, wait_seconds, within_max_wait

Sleep = Callable[[float], Awaitable[None]]
log = logging.getLogger("ml_connector.http")


class RemainingCount:
    """When a window the API counts in began, from the calls-remaining header alone (no reset header).

    A window is taken to begin at the answer to the first call after the count last rose (or stayed level): a
    fresh fixed window, a rolling window freeing calls, a pause, or the run's first call. An answer comes after the
    API counted its call, so while this pool alone spends the window "that answer + window" is never early, for a
    fixed window or a rolling one (for a rolling one it may be later than needed: it waits for the window to renew,
    not for its oldest call to leave). A window that began more than ``window`` ago cannot explain the zero (other
    clients spent it, starting when we cannot tell): then a whole window from now.
    """

    def __init__(self, window: float) -> None:
        self.window = window
        self._last: float | None = None
        self._began = 0.0

    def count(self, remaining: float, now: float) -> None:
        """An answer at ``now`` said ``remaining`` calls are left."""
        if self._last is None or remaining >= self._last:
            self._began = now
        self._last = remaining

    def ends(self, now: float) -> float:
        """When the window that holds no call any more has passed."""
        end = self._began + self.window
        return end if end > now else now + self.window


class Quota:
    """One pool of calls shared by a connection's operations that name it."""

    def __init__(self, config: QuotaConfig, *, max_wait: float = math.inf, label: str = "quota",
                 clock: Clock | None = None, sleep: Sleep | None = None, shared: SharedPool | None = None) -> None:
        """``label`` names the pool in the message of a wait longer than ``max_wait``; ``clock`` (wall time) and
        ``sleep`` are injectable for tests; ``shared``: the window and pauses live in a store every worker on this
        credential consults (http/shared_quota.py), not in this object."""
        self.max_wait = max_wait
        self.label = label
        self.remaining_header = config.remaining_header
        self.reset_header = config.reset_header
        self.reset_unit: str = config.reset_unit
        self.limit_header = config.limit_header
        self.window = config.window or None
        self.within = config.within  # the pool whose window a call through this one also spends (client.py)
        self.calls = config.calls or None
        self._clock = clock or time.time
        self._sleep = sleep or asyncio.sleep
        self._counted = RemainingCount(self.window) if self.window and self.remaining_header else None
        self._slots = asyncio.Semaphore(config.concurrency)
        self._sent: deque[float] = deque()
        self._pace = asyncio.Lock()
        self.blocked_until = 0.0
        self.usage = UsageLimit.of(config)  # a longer allowance (daily calls): spent, the connection stops
        self.shared = shared
        self._told = 0.0  # the end of the last pause this pool passed on to the shared store

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
        if self.shared is not None:
            await self._wait_for_shared_room(self.shared)
            return
        while True:
            now = self._clock()
            delay = self.blocked_until - now
            if self.window:
                while self._sent and self._sent[0] <= now - self.window:
                    self._sent.popleft()
                if self.calls and len(self._sent) >= self.calls:
                    delay = max(delay, self._sent[0] + self.window - now)
            if delay <= 0:
                if self.window:
                    self._sent.append(now)
                return
            await self._sleep(within_max_wait(delay, self.max_wait, self.label))

    async def _wait_for_shared_room(self, shared: SharedPool) -> None:
        """The store admits (and counts) the call, or says how long until every worker's window has room."""
        while True:
            delay = self.blocked_until - self._clock()
            if delay <= 0:
                delay = await shared.admit(self.window, self.calls)
                if delay <= 0:
                    return
            await self._sleep(within_max_wait(delay, self.max_wait, self.label))

    async def tell_others(self, rate_limited: float | None = None) -> None:
        """Pass a pause on to the other workers of this credential: the one the last answer's headers announced
        (``observe``) and, after a 429, the wait its rule read (``rate_limited``). Nothing without a shared store."""
        if self.shared is None:
            return
        now = self._clock()
        ends = self.blocked_until if rate_limited is None else max(self.blocked_until, now + rate_limited)
        if ends > now and ends > self._told:
            try:
                await self.shared.block(ends - now)
            except SharedQuotaUnavailable as exc:  # the answer in hand still counts; the next call cannot start
                log.warning("%s: %s", self.label, exc)
                return
            self._told = ends

    def observe(self, response: httpx.Response) -> None:
        """Learn from a response's headers: the real limit, whether the next call must wait, the allowance used."""
        if self.usage is not None:
            self.usage.observe(response.headers)
        if self.limit_header:
            with contextlib.suppress(KeyError, ValueError):
                self.calls = max(1, int(float(response.headers[self.limit_header])))
        if not self.remaining_header:
            return
        remaining = response.headers.get(self.remaining_header)
        if remaining is None:
            return
        try:
            left = float(remaining)
        except ValueError:
            return
        now = self._clock()
        if self._counted is not None:
            self._counted.count(left, now)
        if left > 0:
            return
        seconds = wait_seconds(response.headers.get(self.reset_header or ""), self.reset_unit, self._clock)
        if seconds is not None:
            until = now + seconds
        elif self._counted is not None:
            until = self._counted.ends(now)
        else:  # nothing left and no readable reset: a short pause, then the API's answer decides
            until = now + 1.0
        self.blocked_until = max(self.blocked_until, until)
