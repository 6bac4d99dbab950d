"""Marketo's response envelope (facts §2.2): every answer is HTTP 200 with ``success`` and quoted-string codes.

``fail`` marks its response as refused at the response level (a header the guard in ``app.py`` strips before the
client sees it, carrying the code), because such calls are not counted against the daily quota or the rate
window, but are counted in the error statistics.
"""

from __future__ import annotations

import itertools
import threading
from typing import Any

from starlette.responses import JSONResponse

REFUSED_HEADER = "x-sandbox-marketo-refused"
MESSAGES = {
    "601": "Access token invalid",
    "602": "Access token expired",
    "606": "Max rate limit '%s' exceeded with in '%s' secs",
    "607": "Daily quota reached",
    "609": "Invalid JSON",
    "610": "Requested resource not found",
    "612": "Invalid Content Type",
    "615": "Concurrent access limit reached",
    "701": "%s cannot be blank",
    "1001": "Invalid value",
    "1002": "Missing value for required parameter",
    "1003": "Invalid data",
    "1004": "Lead not found",
    "1005": "Lead already exists",
    "1006": "Field not found",
    "1007": "Multiple lead match lookup criteria",
    "1013": "Record not found",
    "1017": "Record already exists",
    "1018": "CRM Enabled",
    "1021": "Company update not allowed",
    "1022": "Object in use",
    "1036": "Duplicate lead in input",
}
_counter = itertools.count(0x14272D07D78)
_lock = threading.Lock()


def request_id() -> str:
    """``e42b#14272d07d78`` style: a pod tag, then a number that grows per request."""
    with _lock:
        return f"e42b#{next(_counter):x}"


def ok(result: list[Any] | None = None, **extra: Any) -> JSONResponse:
    """A successful answer: ``{"requestId", "result", "success": true, ...extra}`` (``result`` left out if None)."""
    body: dict[str, Any] = {"requestId": request_id()}
    if result is not None:
        body["result"] = result
    body["success"] = True
    body.update(extra)
    return JSONResponse(body)


def fail(code: int | str, message: str | None = None) -> JSONResponse:
    """A response-level failure: HTTP 200, ``success: false``, one error; not counted against the limits."""
    code = str(code)
    body = {"requestId": request_id(), "success": False,
            "errors": [{"code": code, "message": message or MESSAGES.get(code, "Error")}]}
    return JSONResponse(body, headers={REFUSED_HEADER: code})


def reason(code: int | str, message: str | None = None) -> dict[str, str]:
    """One record-level reason: ``{"code": "1005", "message": "..."}``."""
    code = str(code)
    return {"code": code, "message": message or MESSAGES.get(code, "Error")}


def skipped(code: int | str, message: str | None = None, **extra: Any) -> dict[str, Any]:
    """A record-level ``skipped`` result with one reason."""
    return {**extra, "status": "skipped", "reasons": [reason(code, message)]}


class Refusal(Exception):
    """Raised anywhere in a handler to answer with a response-level failure."""

    def __init__(self, code: int | str, message: str | None = None) -> None:
        super().__init__(f"{code}: {message}")
        self.code = str(code)
        self.message = message

    def response(self) -> JSONResponse:
        return fail(self.code, self.message)
