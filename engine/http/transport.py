"""A transport that sends requests for chosen hosts to in-process ASGI apps (sandboxes, tests)."""

from __future__ import annotations

from collections.abc import Mapping

import httpx


class HostRoutingTransport(httpx.AsyncBaseTransport):
    """Routes by host name to ASGI apps; other hosts go to the network."""

    def __init__(self, apps: Mapping[str, object]) -> None:
        self._routes = {host: httpx.ASGITransport(app=app) for host, app in apps.items()}  # type: ignore[arg-type]
        self._default = httpx.AsyncHTTPTransport()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        transport = self._routes.get(request.url.host, self._default)
        return await transport.handle_async_request(request)

    async def aclose(self) -> None:
        await self._default.aclose()
