"""Shared machinery of every sandbox: request log, fault injection, admin API, app assembly.

A sandbox is a Starlette app made of vendor routes plus the admin routes below (under ``/_admin``).
The admin API is for tests and the demo only; it is never counted in the request log.

Admin API (JSON):
  GET    /_admin/requests            -> {"total": n, "reads": n, "writes": n, "counts": {"GET /path": n}, "log": [...]}
  POST   /_admin/requests/reset      -> clears the log
  POST   /_admin/faults              -> body {"method": "POST"|null, "path": "/prefix"|null, "status": 500,
                                        "body": {...}|null, "headers": {...}, "delay": 0.0, "times": 1,
                                        "drop": false, "after": false}; the next ``times`` matching requests
                                        get the fault (``after``: processed first, then the answer is lost;
                                        ``status: 0`` with a delay: slow but otherwise normal)
  DELETE /_admin/faults              -> clears faults
  GET    /_admin/config              -> the sandbox's tunable settings
  PATCH  /_admin/config              -> merge settings (budgets, lag, ...)
  plus whatever ``admin_routes`` the concrete sandbox adds (mutate a record, dump a collection).
"""

from __future__ import annotations

import asyncio
import re
import threading
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route
from starlette.types import ASGIApp, Receive, Scope, Send

WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
Clock = Callable[[], float]
"""Epoch seconds. A sandbox reads time only through its clock (default ``time.time``), so tests can move it."""
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_NUMERIC_SEGMENT = re.compile(r"/\d+(?=/|$)")


class ManualClock:
    """A clock that stands still until a test moves it: time-dependent behaviour is tested without sleeping."""

    def __init__(self, start: float = 1_767_225_600.0) -> None:  # 2026-01-01T00:00:00Z, after all seeded data
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def is_date(value: Any) -> bool:
    """``YYYY-MM-DD`` and a real calendar date (what every simulated API accepts as a date)."""
    if not isinstance(value, str) or not _DATE.match(value):
        return False
    try:
        datetime.strptime(value, "%Y-%m-%d")
    except ValueError:
        return False
    return True


@dataclass
class LoggedRequest:
    method: str
    path: str
    query: str
    status: int
    at: float


@dataclass
class Fault:
    method: str | None = None
    path: str | None = None
    status: int = 500
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0
    times: int = 1
    drop: bool = False
    after: bool = False  # the request IS processed, then its response is replaced (lost write outcome)

    def matches(self, method: str, path: str) -> bool:
        if self.method and self.method.upper() != method:
            return False
        return not self.path or path.startswith(self.path)


class RequestLog:
    """Every vendor request the sandbox answered, in order (thread-safe)."""

    def __init__(self) -> None:
        self._entries: list[LoggedRequest] = []
        self._lock = threading.Lock()

    def add(self, entry: LoggedRequest) -> None:
        with self._lock:
            self._entries.append(entry)

    def reset(self) -> None:
        with self._lock:
            self._entries.clear()

    def entries(self) -> list[LoggedRequest]:
        with self._lock:
            return list(self._entries)

    def summary(self, include_log: bool = False) -> dict[str, Any]:
        entries = self.entries()
        counts = Counter(f"{e.method} {_NUMERIC_SEGMENT.sub('/{id}', e.path)}" for e in entries)
        writes = sum(1 for e in entries if e.method in WRITE_METHODS)
        out: dict[str, Any] = {
            "total": len(entries),
            "writes": writes,
            "reads": len(entries) - writes,
            "counts": dict(sorted(counts.items())),
            "statuses": dict(Counter(str(e.status) for e in entries)),
        }
        if include_log:
            out["log"] = [e.__dict__ for e in entries]
        return out


class FaultBook:
    """Faults queued by tests; each fires for its next ``times`` matching requests."""

    def __init__(self) -> None:
        self._faults: list[Fault] = []
        self._lock = threading.Lock()

    def add(self, fault: Fault) -> None:
        with self._lock:
            self._faults.append(fault)

    def clear(self) -> None:
        with self._lock:
            self._faults.clear()

    def take(self, method: str, path: str) -> Fault | None:
        with self._lock:
            for fault in self._faults:
                if fault.matches(method, path):
                    fault.times -= 1
                    if fault.times <= 0:
                        self._faults.remove(fault)
                    return fault
        return None


class _Observed:
    """ASGI middleware: applies queued faults and logs every non-admin request."""

    def __init__(self, app: ASGIApp, log: RequestLog, faults: FaultBook, clock: Clock) -> None:
        self.app = app
        self.log = log
        self.faults = faults
        self.clock = clock

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"].startswith("/_admin"):
            await self.app(scope, receive, send)
            return
        method, path = scope["method"], scope["path"]
        query = scope.get("query_string", b"").decode()
        status_box = [0]

        async def send_logged(message: Any) -> None:
            if message["type"] == "http.response.start":
                status_box[0] = message["status"]
            await send(message)

        fault = self.faults.take(method, path)
        try:
            if fault is not None and fault.after:
                async def discard(message: Any) -> None:
                    return None

                await self.app(scope, receive, discard)
            if fault is not None:
                if fault.delay:
                    await asyncio.sleep(fault.delay)
                if fault.drop:
                    raise ConnectionResetError("sandbox fault: connection dropped")
                if fault.status:
                    body = fault.body if fault.body is not None else {"error": "injected fault"}
                    response = JSONResponse(body, status_code=fault.status, headers=fault.headers)
                    await response(scope, receive, send_logged)
                    return
            await self.app(scope, receive, send_logged)
        finally:
            self.log.add(LoggedRequest(method, path, query, status_box[0], self.clock()))


Handler = Callable[[Request], Awaitable[Response]]


class Sandbox:
    """A vendor simulator: its routes, its tunable config, and the shared observation tools."""

    def __init__(self, name: str, routes: list[BaseRoute], config: dict[str, Any],
                 admin_routes: list[BaseRoute] | None = None, clock: Clock = time.time) -> None:
        self.name = name
        self.config = config
        self.clock = clock
        self.log = RequestLog()
        self.faults = FaultBook()
        admin = [
            Route("/_admin/requests", self._requests, methods=["GET"]),
            Route("/_admin/requests/reset", self._reset, methods=["POST"]),
            Route("/_admin/faults", self._add_fault, methods=["POST"]),
            Route("/_admin/faults", self._clear_faults, methods=["DELETE"]),
            Route("/_admin/config", self._get_config, methods=["GET"]),
            Route("/_admin/config", self._patch_config, methods=["PATCH"]),
        ]
        self._starlette = Starlette(routes=admin + list(admin_routes or []) + routes)
        self.app: ASGIApp = _Observed(self._starlette, self.log, self.faults, clock)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.app(scope, receive, send)

    async def _requests(self, request: Request) -> Response:
        include = request.query_params.get("log") in {"1", "true"}
        return JSONResponse(self.log.summary(include_log=include))

    async def _reset(self, request: Request) -> Response:
        self.log.reset()
        return JSONResponse({"ok": True})

    async def _add_fault(self, request: Request) -> Response:
        data = await request.json()
        self.faults.add(Fault(**data))
        return JSONResponse({"ok": True})

    async def _clear_faults(self, request: Request) -> Response:
        self.faults.clear()
        return JSONResponse({"ok": True})

    async def _get_config(self, request: Request) -> Response:
        return JSONResponse(self.config)

    async def _patch_config(self, request: Request) -> Response:
        patch = await request.json()
        unknown = sorted(set(patch) - set(self.config))
        if unknown:
            return JSONResponse({"error": f"unknown config keys: {unknown}"}, status_code=400)
        self.config.update(patch)
        return JSONResponse(self.config)
