"""Shared machinery of every sandbox: request log, fault injection, admin API, app assembly.

A sandbox is a Starlette app made of vendor routes plus the admin routes below (under ``/_admin``).
The admin API is for tests and the demo only; it is never counted in the request log.

Admin API (JSON):
  GET    /_admin/requests            -> {"total": n, "reads": n, "writes": n, "counts": {"GET /path": n}, "log": [...]}
  POST   /_admin/requests/reset      -> clears the log
  POST   /_admin/faults              -> body {"method": "POST"|null, "path": "/prefix"|null, "status": 500,
                                        "body": {...}|null, "headers": {...}, "delay": 0.0, "times": 1,
                                        "drop": false, "after": false, "raw": null, "content_type": ...};
                                        the next ``times`` matching requests get the fault (``after``:
                                        processed first, then the answer is lost; ``status: 0`` with a delay:
                                        slow but otherwise normal; ``drop``: the connection closes mid-answer;
                                        ``raw``: this text is the body, as is — an HTML page, truncated JSON)
  DELETE /_admin/faults              -> clears faults
  POST   /_admin/chaos               -> body {"rate": 0.1, "seed": 1, "kinds": ["rate_limited", ...]|null,
                                        "stall": 1.0}: that share of requests, drawn at random, gets a fault
                                        (a timed-out write may be applied late: ``late`` seconds after)
                                        of one of the ``CHAOS_KINDS`` (a soak); rate 0 switches chaos off
  GET    /_admin/config              -> the sandbox's tunable settings
  PATCH  /_admin/config              -> merge settings (budgets, lag, ...)
  plus whatever ``admin_routes`` the concrete sandbox adds (mutate a record, dump a collection).
"""

from __future__ import annotations

import asyncio
import random
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
    raw: str | None = None  # a body sent as is, not as JSON (a malformed answer)
    content_type: str = "application/json"
    revoke: bool = False  # the sandbox's tokens are revoked first (``Chaos.revoke_tokens``), then the request runs
    late: float = 0.0  # the request is applied this many seconds later, whatever its client was told meanwhile

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


_MALFORMED = (("<html><body><h1>502 Bad Gateway</h1></body></html>", "text/html"),  # a proxy's page, as a 200
              ('{"success": true, "data": [{"id": 1, "na', "application/json"),  # truncated JSON
              ('{"success": true}', "application/json"))  # valid JSON, records missing


def _chaos_fault(kind: str, rng: random.Random, stall: float) -> Fault:
    """One fault of a kind; ``stall`` is how long a timed-out answer hangs before its connection closes."""
    if kind == "rate_limited":
        return Fault(status=429, headers={"Retry-After": "1"}, body={"error": "injected: too many requests"})
    if kind == "server_error":
        return Fault(status=rng.choice((500, 502, 503)))
    if kind == "timeout":  # processed before, not at all, or after the client gave up: the answer never comes
        when = rng.choice(("before", "never", "late"))
        return Fault(status=0, delay=stall, drop=True, after=when == "before", late=3 * stall if when == "late" else 0)
    if kind == "dropped":
        return Fault(status=0, drop=True)
    if kind == "lost_answer":  # processed, then the client sees a gateway error or a closed connection
        return Fault(status=rng.choice((502, 504)), drop=rng.random() < 0.5, after=True)
    if kind == "malformed":
        raw, content_type = rng.choice(_MALFORMED)
        return Fault(status=200, raw=raw, content_type=content_type)
    if kind == "revoked_token":
        return Fault(status=0, revoke=True)
    raise ValueError(f"unknown chaos kind {kind!r}; known: {', '.join(CHAOS_KINDS)}")


CHAOS_KINDS = ("rate_limited", "server_error", "timeout", "dropped", "lost_answer", "malformed", "revoked_token")


class Chaos:
    """Random faults on a share of requests, reproducible from a seed (for soaks, not for exact tests).

    ``revoke_tokens`` is the concrete sandbox's way to revoke every access token it issued; without it the
    ``revoked_token`` kind is never drawn.
    """

    def __init__(self) -> None:
        self.rate = 0.0
        self.kinds: tuple[str, ...] = CHAOS_KINDS
        self.stall = 1.0
        self.injected: Counter[str] = Counter()
        self.injected_on_writes: Counter[str] = Counter()  # of those, on POST/PUT/PATCH/DELETE
        self.revoke_tokens: Callable[[], Any] | None = None
        self._rng = random.Random(0)
        self._lock = threading.Lock()

    def configure(self, rate: float, seed: int = 0, kinds: list[str] | None = None, stall: float = 1.0) -> None:
        for kind in kinds or ():
            _chaos_fault(kind, random.Random(0), stall)  # an unknown kind fails here, not mid-soak
        with self._lock:
            self.rate, self.stall, self._rng = rate, stall, random.Random(seed)
            self.kinds = tuple(kinds or CHAOS_KINDS)

    def draw(self, method: str) -> Fault | None:
        with self._lock:
            kinds = [k for k in self.kinds if k != "revoked_token" or self.revoke_tokens is not None]
            if not kinds or self._rng.random() >= self.rate:
                return None
            kind = self._rng.choice(kinds)
            self.injected[kind] += 1
            if method in WRITE_METHODS:
                self.injected_on_writes[kind] += 1
            return _chaos_fault(kind, self._rng, self.stall)


class _Observed:
    """ASGI middleware: applies queued faults (then random ones) and logs every non-admin request."""

    def __init__(self, app: ASGIApp, log: RequestLog, faults: FaultBook, clock: Clock, chaos: Chaos) -> None:
        self.app = app
        self.log = log
        self.faults = faults
        self.clock = clock
        self.chaos = chaos
        self._late: set[asyncio.Task[None]] = set()  # writes still to be applied (referenced until they ran)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"].startswith("/_admin"):
            await self.app(scope, receive, send)
            return
        method, path = scope["method"], scope["path"]
        query = scope.get("query_string", b"").decode()
        status_box = [0]
        logged = [False]

        def log_once() -> None:
            if not logged[0]:
                logged[0] = True
                self.log.add(LoggedRequest(method, path, query, status_box[0], self.clock()))

        async def send_logged(message: Any) -> None:
            if message["type"] == "http.response.start":
                status_box[0] = message["status"]
            elif message["type"] == "http.response.body" and not message.get("more_body"):
                log_once()  # before the client can see the end of the answer: a test reading the log after it
            await send(message)  # never misses the request

        fault = self.faults.take(method, path) or self.chaos.draw(method)
        try:
            if fault is not None and fault.revoke and self.chaos.revoke_tokens is not None:
                self.chaos.revoke_tokens()
            if fault is not None and fault.late:
                await self._apply_late(scope, receive, fault.late)
            elif fault is not None and fault.after:
                async def discard(message: Any) -> None:
                    return None

                await self.app(scope, receive, discard)
            if fault is not None:
                if fault.delay:
                    await asyncio.sleep(fault.delay)
                if fault.drop:  # the answer starts, then the connection closes (an unfinished response)
                    await send({"type": "http.response.start", "status": 200,
                                "headers": [(b"content-type", b"application/json"), (b"content-length", b"4096")]})
                    raise ConnectionResetError("sandbox fault: connection dropped")
                if fault.raw is not None:
                    response = Response(fault.raw, status_code=fault.status or 200, headers=fault.headers,
                                        media_type=fault.content_type)
                    await response(scope, receive, send_logged)
                    return
                if fault.status:
                    body = fault.body if fault.body is not None else {"error": "injected fault"}
                    response = JSONResponse(body, status_code=fault.status, headers=fault.headers)
                    await response(scope, receive, send_logged)
                    return
            await self.app(scope, receive, send_logged)
        finally:
            log_once()

    async def _apply_late(self, scope: Scope, receive: Receive, seconds: float) -> None:
        """Read the request now and apply it ``seconds`` later (a write a slow backend applies after a timeout)."""
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break

        async def replayed() -> Any:
            return {"type": "http.request", "body": body, "more_body": False}

        async def discard(message: Any) -> None:
            return None

        async def later() -> None:
            await asyncio.sleep(seconds)
            await self.app(dict(scope), replayed, discard)

        task = asyncio.get_running_loop().create_task(later())
        self._late.add(task)
        task.add_done_callback(self._late.discard)


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
        self.chaos = Chaos()
        admin = [
            Route("/_admin/requests", self._requests, methods=["GET"]),
            Route("/_admin/requests/reset", self._reset, methods=["POST"]),
            Route("/_admin/faults", self._add_fault, methods=["POST"]),
            Route("/_admin/faults", self._clear_faults, methods=["DELETE"]),
            Route("/_admin/chaos", self._chaos, methods=["POST"]),
            Route("/_admin/config", self._get_config, methods=["GET"]),
            Route("/_admin/config", self._patch_config, methods=["PATCH"]),
        ]
        self._starlette = Starlette(routes=admin + list(admin_routes or []) + routes)
        self.app: ASGIApp = _Observed(self._starlette, self.log, self.faults, clock, self.chaos)

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

    async def _chaos(self, request: Request) -> Response:
        data = await request.json()
        try:
            self.chaos.configure(**data)
        except (TypeError, ValueError) as exc:
            return JSONResponse({"error": str(exc)}, status_code=400)
        return JSONResponse({"rate": self.chaos.rate, "kinds": list(self.chaos.kinds),
                             "injected": dict(self.chaos.injected),
                             "injected_on_writes": dict(self.chaos.injected_on_writes)})

    async def _get_config(self, request: Request) -> Response:
        return JSONResponse(self.config)

    async def _patch_config(self, request: Request) -> Response:
        patch = await request.json()
        unknown = sorted(set(patch) - set(self.config))
        if unknown:
            return JSONResponse({"error": f"unknown config keys: {unknown}"}, status_code=400)
        self.config.update(patch)
        return JSONResponse(self.config)
