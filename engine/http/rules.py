"""Response rules: status, headers and body decide what a response means."""

from __future__ import annotations

import email.utils
import json
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import httpx
import jmespath

from engine.transform.expressions import compile_template

OK = "ok"
RETRY = "retry"
REAUTH = "reauth"
RATE_LIMITED = "rate_limited"
RECORD_ERROR = "record_error"
FATAL = "fatal"


@dataclass(frozen=True)
class Decision:
    action: str
    wait: float | None = None
    message: str | None = None


def parse_body(response: httpx.Response) -> Any:
    """The JSON body, or the text when the body is not JSON."""
    if not response.content:
        return None
    try:
        return response.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        return response.text


def _wait_seconds(raw: Any, unit: str) -> float | None:
    if raw is None or raw == "":
        return None
    if unit == "http_date":
        parsed = email.utils.parsedate_to_datetime(str(raw))
        return max(0.0, parsed.timestamp() - time.time())
    value = float(raw)
    if unit == "epoch":
        return max(0.0, value - time.time())
    if unit == "epoch_ms":
        return max(0.0, value / 1000 - time.time())
    if unit == "ms":
        return value / 1000
    return max(0.0, value)


class Rule:
    """One compiled ``when``/``do`` rule."""

    def __init__(self, spec: Mapping[str, Any]) -> None:
        when = spec.get("when", {})
        status = when.get("status")
        self.statuses = None if status is None else {int(s) for s in (status if isinstance(status, list) else [status])}
        self.headers = {k.lower(): str(v).lower() for k, v in (when.get("header") or {}).items()}
        self.body = jmespath.compile(when["body"]) if when.get("body") else None
        self.action: str = spec["do"]
        self.wait = spec.get("wait") or {}
        self.wait_body = jmespath.compile(self.wait["body"]) if self.wait.get("body") else None
        self.message = compile_template(spec["message"]) if spec.get("message") else None

    def matches(self, response: httpx.Response, body: Any) -> bool:
        if self.statuses is not None and response.status_code not in self.statuses:
            return False
        for name, expected in self.headers.items():
            if expected not in response.headers.get(name, "").lower():
                return False
        return not (self.body is not None and not (isinstance(body, (dict, list)) and self.body.search(body)))

    def decide(self, response: httpx.Response, body: Any) -> Decision:
        wait: float | None = None
        unit = self.wait.get("unit", "seconds")
        if "seconds" in self.wait:
            wait = float(self.wait["seconds"])
        elif self.wait.get("header"):
            wait = _wait_seconds(response.headers.get(self.wait["header"]), unit)
        elif self.wait_body is not None and isinstance(body, (dict, list)):
            wait = _wait_seconds(self.wait_body.search(body), unit)
        if wait is None and self.action == RATE_LIMITED:
            wait = _wait_seconds(response.headers.get("retry-after"), "seconds")
        message = None
        if self.message is not None:
            try:
                message = str(self.message.evaluate(
                    {"body": body, "status": response.status_code, "headers": dict(response.headers)}))
            except Exception:  # a message template must never hide the real outcome
                message = None
        return Decision(self.action, wait, message)


def _default_decision(response: httpx.Response, body: Any) -> Decision:
    status = response.status_code
    if 200 <= status < 300:
        return Decision(OK)
    if status == 401:
        return Decision(REAUTH)
    if status == 429:
        return Decision(RATE_LIMITED, _wait_seconds(response.headers.get("retry-after"), "seconds"))
    if status == 408 or status >= 500:
        return Decision(RETRY)
    return Decision(RECORD_ERROR)


class ResponseRules:
    """The connector's rules in order, then the built-in defaults."""

    def __init__(self, specs: list[Mapping[str, Any]]) -> None:
        self.rules = [Rule(spec) for spec in specs]

    def classify(self, response: httpx.Response, body: Any) -> Decision:
        for rule in self.rules:
            if rule.matches(response, body):
                return rule.decide(response, body)
        return _default_decision(response, body)
