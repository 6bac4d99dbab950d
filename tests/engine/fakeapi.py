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
                and (path is None or r["path"] == path)]

    async def _handle(self, request: Request) -> Response:
        body = await request.body()
        self.requests.append({"method": request.method, "path": request.url.path,
                              "params": dict(request.query_params), "headers": dict(request.headers),
                              "body": body.decode()})
        queue = self.answers.get((request.method, request.url.path))
        if not queue:
            self.unexpected.append(f"{request.method} {request.url.path}")
            return JSONResponse({"error": "no such route"}, status_code=404)
        self.served[(request.method, request.url.path)] += 1
        status, payload, headers = queue[0] if len(queue) == 1 else queue.popleft()
        return JSONResponse(payload, status_code=status, headers=headers)
