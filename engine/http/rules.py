"""Response rules: status, headers and body decide what a response means."""

from __future__ import annotations

import json
import random
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import httpx

from ml_connector.config.connector import RuleConfig
from ml_connector.http.waits import Clock, Growth, wait_seconds

OK = "ok"
RETRY = "retry"
REAUTH = "reauth"
RATE_LIMITED = "rate_limited"
RECORD_ERROR = "record_error"
REQUEST_ERROR = "request_error"  # the request itself is wrong (not one record): the flow fails once, no split
FATAL = "fatal"
QUOTA_EXHAUSTED = "quota_exhausted"  # the API's allowance is spent: no new call this run (http/usage.py)
SKIP_FLOW = "skip_flow"  # the flow cannot apply to this account: skipped, not failed (http/skips.py)


@dataclass(frozen=True)
class Decision:
    action: str
    wait: float | None = None
    message: str | None = None


def parse_body(response: httpx.Response, content: bytes | None = None) -> Any:
    """The JSON body, or the text when the body is not JSON (``content``: the body when it was streamed)."""
    if content is None:
        content = response.content
    if not content:
        return None
    try:
        return json.loads(content)
    except (json.JSONDecodeError, UnicodeDecodeError):
        return content.decode(response.charset_encoding or "utf-8", errors="replace")


class Rule:
    """One ``when``/``do`` rule of the connector config (its expressions compiled at load)."""

    def __init__(self, config: RuleConfig) -> None:
        when = config.when
        self.statuses = None if when.status is None else frozenset(when.status)
        self.headers = {k.lower(): str(v).lower() for k, v in when.header.items()}
        self.body = when.body
        self.action: str = config.do
        self.wait = config.wait
        self.message = config.message
        self.growth = Growth(config.wait) if config.wait is not None else None

    def matches(self, response: httpx.Response, body: Any) -> bool:
        if self.statuses is not None and response.status_code not in self.statuses:
            return False
        for name, expected in self.headers.items():
            if expected not in response.headers.get(name, "").lower():
                return False
        return not (self.body is not None and not (isinstance(body, (dict, list)) and self.body.evaluate(body)))

    def decide(self, response: httpx.Response, body: Any, now: Clock = time.time,
               draw: Callable[[], float] = random.random) -> Decision:
        """``draw``: a random number in [0, 1) for the wait's jitter."""
        wait: float | None = None
        spec = self.wait
        if spec is not None and spec.seconds is not None:
            wait = wait_seconds(spec.seconds, "seconds", now)
        elif spec is not None and spec.unit is not None and spec.header:
            wait = wait_seconds(response.headers.get(spec.header), spec.unit, now)
        elif spec is not None and spec.unit is not None and spec.body is not None and isinstance(body, (dict, list)):
            wait = wait_seconds(spec.body.evaluate(body), spec.unit, now)
        if wait is None and self.action == RATE_LIMITED:
            wait = wait_seconds(response.headers.get("retry-after"), "seconds", now)
        if wait is not None and self.growth is not None:
            wait = self.growth.next(wait, draw)
        message = None
        if self.message is not None:
            try:
                message = str(self.message.evaluate(
                    {"body": body, "status": response.status_code, "headers": dict(response.headers)}))
            except Exception:  # a message template must never hide the real outcome
                message = None
        return Decision(self.action, wait, message)


def _default_decision(response: httpx.Response, body: Any, now: Clock) -> Decision:
    status = response.status_code
    if 200 <= status < 300:
        return Decision(OK)
    if status == 401:
        return Decision(REAUTH)
    if status == 429:
        return Decision(RATE_LIMITED, wait_seconds(response.headers.get("retry-after"), "seconds", now))
    if status == 408 or status >= 500:
        return Decision(RETRY)
    return Decision(RECORD_ERROR)


class ResponseRules:
    """The connector's rules in order, then the built-in defaults."""

    def __init__(self, configs: Iterable[RuleConfig], clock: Clock = time.time,
                 random: Callable[[], float] = random.random) -> None:
        """``clock``: the wall time that waits given as a moment (a Unix time, an HTTP date) count from;
        ``random``: numbers in [0, 1) for the jitter of growing waits (injectable for tests)."""
        self.rules = [Rule(config) for config in configs]
        self._clock = clock
        self._random = random

    def classify(self, response: httpx.Response, body: Any) -> Decision:
        decision = self._classify(response, body)
        if decision.action == OK:  # a success: every rule's waits start over
            for rule in self.rules:
                if rule.growth is not None:
                    rule.growth.reset()
        return decision

    def _classify(self, response: httpx.Response, body: Any) -> Decision:
        for rule in self.rules:
            if rule.matches(response, body):
                return rule.decide(response, body, self._clock, self._random)
        return _default_decision(response, body, self._clock)
