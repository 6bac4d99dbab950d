"""A tiny scriptable API for engine tests: each route answers from a queue of canned responses."""

from __future__ import annotations

from collections import defaultdict, deque
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route


class FakeAPI:
    """Routes answer with queued (status, body, headers); the last answer repeats. Every request is kept.

    Strict: ``verify()`` (run after every engine test by the conftest) fails on a request nobody expected and on
    a queued answer that was never asked for.

    A route is a decoded path (``/v2/things/5``) or, to pin percent-encoding, the raw path as sent
    (``/v2/things/a%2Fb``); a raw route wins. Each kept request has ``path`` (decoded) and ``raw_path`` (as sent).
    """

    instances: list[FakeAPI] = []

    def __init__(self) -> None:
        self.answers: dict[tuple[str, str], deque[tuple[int, Any, dict[str, str]]]] = defaultdict(deque)
        self.queued: dict[tuple[str, str], int] = defaultdict(int)
        self.served: dict[tuple[str, str], int] = defaultdict(int)
        self.unexpected: list[str] = []
        self.requests: list[dict[str, Any]] = []
        FakeAPI.instances.append(self)
        self.app = Starlette(routes=[Route("/{path:path}", self._handle, methods=["GET", "POST", "PATCH", "PUT",
                                                                                  "DELETE"])])

    def on(self, method: str, path: str, status: int = 200, body: Any = None,
           headers: dict[str, str] | None = None) -> FakeAPI:
        self.answers[(method, path)].append((status, body, headers or {}))
        self.queued[(method, path)] += 1
        return self

    def verify(self) -> None:
        assert self.unexpected == [], f"unexpected calls: {self.unexpected}"
        unused = {f"{m} {p}": n - self.served[(m, p)] for (m, p), n in self.queued.items() if self.served[(m, p)] < n}
        assert unused == {}, f"expected calls that never happened: {unused}"

    def calls(self, method: str | None = None, path: str | None = None) -> list[dict[str, Any]]:
        return [r for r in self.requests if (method is None or r["method"] == method)
                and (path is None or path in (r["path"], r["raw_path"]))]

    async def _handle(self, request: Request) -> Response:
        body = await request.body()
        path: str = request.scope["path"]  # decoded (request.url.path re-encodes "?", "#" and "\\")
        raw_path = (request.scope.get("raw_path") or path.encode()).decode("ascii", "replace")
        self.requests.append({"method": request.method, "path": path, "raw_path": raw_path,
                              "params": dict(request.query_params), "headers": dict(request.headers),
                              "body": body.decode()})
        route = (request.method, raw_path if (request.method, raw_path) in self.queued else path)
        queue = self.answers.get(route)
        if not queue:
            self.unexpected.append(f"{request.method} {raw_path}")
            return JSONResponse({"error": "no such route"}, status_code=404)
        self.served[route] += 1
        status, payload, headers = queue[0] if len(queue) == 1 else queue.popleft()
        if isinstance(payload, bytes):  # a file (a CSV, a ZIP): sent as given
            return Response(payload, status_code=status, headers=headers)
        return JSONResponse(payload, status_code=status, headers=headers)
