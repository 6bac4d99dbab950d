"""Pipedrive rate limiting: per-token rolling burst windows, a company-wide daily token budget, abuse blocks.

Config keys read on every request (patchable at run time): ``burst_limit``, ``burst_limit_oauth``,
``search_burst_limit``, ``burst_window_seconds``, ``daily_budget``, ``daily_reset_seconds``,
``abuse_block_after``, ``token_costs``. ``None`` disables a limit.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from ml_connector.sandbox.core import Clock

DEFAULT_COSTS: dict[str, int] = {
    "get": 1,
    "list": 10,
    "create": 5,
    "update": 5,
    "delete": 3,
    "search": 20,
    "bulk_add": 25,
    "bulk_delete": 15,
    "archived": 20,
    "pipelines": 5,
    "field_get": 1,
    "field_list": 10,
    "field_create": 5,
    "v1_get": 2,
    "v1_list": 20,
    "v1_create": 10,
    "oauth": 0,
    "unknown": 1,
}
CLOUDFLARE_PAGE = """<!DOCTYPE html>
<html lang="en-US"><head><title>Attention Required! | Cloudflare</title></head>
<body><div id="cf-wrapper"><h1>Sorry, you have been blocked</h1>
<h2>You are unable to access pipedrive.com</h2>
<p>This website is using a security service to protect itself from online attacks.</p>
<p>Cloudflare Ray ID: 8c0ffee000000000 &bull; Performance &amp; security by Cloudflare</p></div></body></html>
"""


@dataclass
class Decision:
    """Outcome of a rate-limit check: ``status`` 0 = go ahead, else 429 or 403 (abuse block)."""

    status: int
    headers: dict[str, str] = field(default_factory=dict)


class RateLimiter:
    """Burst windows per principal (token or OAuth user) and one daily budget for the company."""

    def __init__(self, config: dict[str, Any], clock: Clock = time.time) -> None:
        self.config = config
        self.clock = clock
        self.lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        """Forget every window, block and the daily usage."""
        self.windows: dict[str, deque[float]] = {}
        self.used = 0
        self.reset_at: float | None = None
        self.day = int(self.clock() // 86_400)
        self.limited: dict[str, int] = {}
        self.blocked_until: dict[str, float] = {}
        self.rejections = {"burst": 0, "daily": 0}

    def cost(self, op: str) -> int:
        """Token cost of an operation (config ``token_costs`` overrides the sheet's values)."""
        costs = self.config.get("token_costs") or {}
        return int(costs.get(op, DEFAULT_COSTS.get(op, 1)))

    def snapshot(self) -> dict[str, Any]:
        """State for ``GET /_admin/limits``."""
        with self.lock:
            return {
                "daily_used": self.used,
                "daily_reset_at": self.reset_at,
                "windows": {k: len(v) for k, v in self.windows.items()},
                "limited": dict(self.limited),
                "blocked_until": dict(self.blocked_until),
                "rejections": dict(self.rejections),
            }

    def check(self, principal: str, oauth: bool, search: bool, op: str) -> Decision:
        """Admit or reject one request; admitted requests are counted and charged."""
        with self.lock:
            now = self.clock()
            if self.blocked_until.get(principal, 0.0) > now:
                return Decision(403)
            self._refill(now)
            buckets = self._buckets(principal, oauth, search, now)
            cost = self.cost(op)
            shown_limit, shown = buckets[-1]
            for limit, window in buckets:
                if limit is not None and len(window) >= limit:
                    self.rejections["burst"] += 1
                    return self._reject(principal, now, limit, window, self._window_end(window, now))
            budget = self.config.get("daily_budget")
            if budget is not None and self.used + cost > budget:
                if self.reset_at is None:
                    self.reset_at = now + self._daily_period(now)
                self.rejections["daily"] += 1
                return self._reject(principal, now, shown_limit, shown, None)
            for _, window in buckets:
                window.append(now)
            self.used += cost
            self.limited[principal] = 0
            return Decision(0, self._headers(shown_limit, shown, self._window_end(shown, now) - now))

    def _buckets(
        self, principal: str, oauth: bool, search: bool, now: float
    ) -> list[tuple[int | None, deque[float]]]:
        """The general window, plus the search window last when the request is a search."""
        limit = self.config.get("burst_limit_oauth" if oauth else "burst_limit")
        names = [(f"{principal}|all", limit)]
        if search:
            names.append((f"{principal}|search", self.config.get("search_burst_limit")))
        span = float(self.config.get("burst_window_seconds") or 2.0)
        out = []
        for name, lim in names:
            window = self.windows.setdefault(name, deque())
            while window and window[0] <= now - span:
                window.popleft()
            out.append((lim, window))
        return out

    def _window_end(self, window: deque[float], now: float) -> float:
        """When the oldest request of a window ages out (``now + span`` for an empty window)."""
        span = float(self.config.get("burst_window_seconds") or 2.0)
        return (window[0] if window else now) + span

    def _reject(
        self, principal: str, now: float, limit: int | None, window: deque[float], free_at: float | None
    ) -> Decision:
        """429, or the Cloudflare 403 once ``abuse_block_after`` rejections in a row were ignored."""
        wait = (free_at if free_at is not None else (self.reset_at or now)) - now
        abuse_after = self.config.get("abuse_block_after")
        strikes = self.limited.get(principal, 0)
        if abuse_after and strikes >= abuse_after:
            span = float(self.config.get("burst_window_seconds") or 2.0)
            self.blocked_until[principal] = free_at if free_at is not None else now + span
            self.limited[principal] = 0
            return Decision(403)
        self.limited[principal] = strikes + 1
        headers = self._headers(limit, window, wait)
        if free_at is not None:
            headers["x-ratelimit-remaining"] = "0"
        return Decision(429, headers)

    def _headers(self, limit: int | None, window: deque[float], wait: float) -> dict[str, str]:
        headers: dict[str, str] = {}
        if limit is not None:
            headers["x-ratelimit-limit"] = str(limit)
            headers["x-ratelimit-remaining"] = str(max(0, limit - len(window)))
        headers["x-ratelimit-reset"] = str(max(1, math.ceil(wait)))
        budget = self.config.get("daily_budget")
        if budget is not None:
            headers["x-daily-ratelimit-token-limit"] = str(budget)
            headers["x-daily-ratelimit-token-remaining"] = str(max(0, budget - self.used))
        return headers

    def _refill(self, now: float) -> None:
        """Refill the daily budget at ``reset_at`` (set on exhaustion) or at UTC midnight."""
        if self.reset_at is not None and now >= self.reset_at:
            self.used, self.reset_at = 0, None
        day = int(now // 86_400)
        if self.config.get("daily_reset_seconds") is None and day != self.day:
            self.used, self.reset_at = 0, None
        self.day = day

    def _daily_period(self, now: float) -> float:
        configured = self.config.get("daily_reset_seconds")
        if configured is not None:
            return float(configured)
        return 86_400 - (now % 86_400)
