"""Marketo Engage simulator (REST, identity, bulk), built on :mod:`sandbox.core`. Facts: §2 of
shared/api-facts/adobe-commerce-marketo-qad.md.

Every REST/bulk route passes through ``_guarded``: token (601/602), then the limits (607, 606, 615), then the
handler; a response-level refusal is not counted. Before routing, ``_Transport`` answers 414 for a URI over 8 KB,
413 for a body over 1 MB, and turns ``POST ...?_method=GET`` with a form body into the GET it stands for.
``activities.routes(sandbox)`` and ``bulk.routes(sandbox)`` are mounted when those modules exist.

Admin API (no auth, no limits, not logged), besides the core's requests/faults/chaos/config: see ``admin.py``.
"""

from __future__ import annotations

import asyncio
import copy
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, urlencode

from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import BaseRoute, Match, Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ml_connector.sandbox.core import Clock, Sandbox
from ml_connector.sandbox.marketo import activities, admin, bulk, objects
from ml_connector.sandbox.marketo.auth import Identity
from ml_connector.sandbox.marketo.envelope import REFUSED_HEADER, Refusal, fail
from ml_connector.sandbox.marketo.limits import Limits
from ml_connector.sandbox.marketo.store import MarketoStore

logger = logging.getLogger(__name__)

DEFAULT_CONFIG: dict[str, Any] = {
    "munchkin_id": "123-ABC-456",
    "client_id": "5d3b6a52-7c1e-4c55-9a8e-123abc456707",
    "client_secret": "SandboxMarketoSecret123ABC456xyz",
    "api_user": "apis@123-abc-456.sandbox.example",  # the token's scope: the API-only user
    "pod": "sj",  # the token's ":<pod>" suffix
    "query_token_allowed": True,  # ?access_token= still documented (being removed 2025-2026)
    # CRM sync: companies, opportunities, sales persons become read-only (1018 "CRM Enabled")
    "crm_sync": "off",  # off | sfdc | dynamics
    "crm_error_level": "record",  # response | record (UNCONFIRMED which one Marketo uses)
    # limits
    "daily_quota": 50_000,
    "rate_calls": 100,
    "rate_seconds": 20,
    "concurrency": 10,
    "request_latency": 0.0,  # seconds each REST call holds its concurrency slot
    "max_body_bytes": 1_048_576,  # larger -> HTTP 413
    "max_uri_bytes": 8_192,  # larger -> HTTP 414
    "max_filter_matches": 1_000,  # more leads match a filter -> 1003
    # leads (UNCONFIRMED details default to the stricter choice)
    "lead_company_must_exist": True,  # externalCompanyId naming no company -> skipped 1013
    # bulk (mk-activity)
    "bulk_daily_bytes": 500_000_000,
    "bulk_status_seconds": 60,
    **activities.CONFIG_DEFAULTS,
    **bulk.CONFIG_DEFAULTS,
}


@dataclass(frozen=True)
class Refused:
    """A call answered with a response-level refusal (its HTTP status is 200, so the request log cannot tell)."""

    method: str
    path: str
    code: str
    at: float


class MarketoSandbox(Sandbox):
    """The Marketo sandbox: ``store``, ``identity``, ``limits``; plus ``config``, ``clock``, ``log`` from the core."""

    def __init__(self, *, store: MarketoStore, clock: Clock = time.time, config: dict[str, Any]) -> None:
        self.store = store
        self.identity = Identity(clock, config)
        self.limits = Limits(clock, config)
        self.refused: list[Refused] = []
        self.config = config
        self.clock = clock
        api: list[BaseRoute] = [*activities.routes(self), *bulk.routes(self), *objects.routes(self)]
        known = list(api)

        async def not_found(request: Request) -> Response:
            """610 for an unknown resource; 605 when the resource exists for other methods."""
            if any(route.matches(request.scope)[0] == Match.PARTIAL for route in known):
                return fail("605", f"Request method '{request.method}' not supported")
            return fail("610")

        api.append(Route("/rest/{path:path}", not_found, methods=["GET", "POST", "PUT", "PATCH", "DELETE"]))
        routes: list[BaseRoute] = [
            Route("/identity/oauth/token", self.identity.token_endpoint, methods=["GET", "POST"]),
            *[_guarded(route, self) for route in api],
        ]
        super().__init__("marketo", routes, config, admin_routes=admin.routes(self), clock=clock)
        self._starlette.add_middleware(_Transport, config=config)
        self.chaos.revoke_tokens = self.identity.revoke_all


def _guarded(route: BaseRoute, sandbox: MarketoSandbox) -> BaseRoute:
    """A REST route behind the token check and the limits; refusals are answered in the envelope, uncounted."""
    if not isinstance(route, Route):
        return route
    endpoint: Callable[[Request], Awaitable[Response]] = route.endpoint

    async def guarded(request: Request) -> Response:
        def note(code: str) -> None:
            sandbox.limits.note_error(code)
            sandbox.refused.append(Refused(request.method, request.url.path, code, sandbox.clock()))

        code = sandbox.identity.check(request)
        if code is not None:
            note(code)
            return fail(code)
        try:
            ticket = sandbox.limits.admit()
        except Refusal as refusal:
            note(refusal.code)
            return refusal.response()
        response: Response | None = None
        try:
            latency = float(sandbox.config.get("request_latency") or 0)
            if latency:
                await asyncio.sleep(latency)
            response = await endpoint(request)
        except Refusal as refusal:
            response = refusal.response()
        except Exception:  # a sandbox bug must still look like Marketo's "611 System error" and show in the log
            logger.exception("marketo sandbox route failed: %s %s", request.method, request.url.path)
            response = fail("611", "System error")
        finally:
            refused = response is None or REFUSED_HEADER in response.headers
            sandbox.limits.settle(ticket, refused)
        if REFUSED_HEADER in response.headers:
            note(response.headers[REFUSED_HEADER])
            del response.headers[REFUSED_HEADER]
        return response

    methods = sorted(route.methods - {"HEAD"}) if route.methods else None
    return Route(route.path, guarded, methods=methods, name=route.name)


class _Transport:
    """Size limits (413, 414) and the ``?_method=GET`` tunnel, before routing (admin paths untouched)."""

    def __init__(self, app: ASGIApp, config: dict[str, Any]) -> None:
        self.app = app
        self.config = config

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"].startswith("/_admin"):
            await self.app(scope, receive, send)
            return
        query = scope.get("query_string", b"").decode()
        if len(scope.get("raw_path", scope["path"].encode())) + len(query) + 1 > int(self.config["max_uri_bytes"]):
            await PlainTextResponse("Request-URI Too Long", status_code=414)(scope, receive, send)
            return
        body = b""
        more = True
        while more:
            message = await receive()
            body += message.get("body", b"")
            more = bool(message.get("more_body"))
            if len(body) > int(self.config["max_body_bytes"]):
                await PlainTextResponse("Request Entity Too Large", status_code=413)(scope, receive, send)
                return
        headers = dict(scope.get("headers") or [])
        if scope["method"] == "POST" and headers.get(b"content-type", b"").startswith(
                b"application/x-www-form-urlencoded"):
            # ``_method=GET`` in the query or in the form itself (marketorestpython sends both styles)
            pairs = parse_qsl(query, keep_blank_values=True) + parse_qsl(body.decode(), keep_blank_values=True)
            if ("_method", "GET") in pairs:
                rest = [(k, v) for k, v in pairs if k != "_method"]
                scope = {**scope, "method": "GET", "query_string": urlencode(rest).encode()}
                body = b""
        sent = False

        async def replay() -> Message:
            nonlocal sent
            if sent:
                return await receive()
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}

        await self.app(scope, replay, send)


def create_marketo_sandbox(*, leads: int = 0, companies: int = 0, opportunities: int = 0, salespersons: int = 0,
                           seed: int = 7, clock: Clock = time.time, **config: Any) -> MarketoSandbox:
    """A fresh Marketo sandbox with seeded records; ``config`` overrides :data:`DEFAULT_CONFIG`."""
    from ml_connector.sandbox.marketo.seed import seed_store

    unknown = sorted(set(config) - set(DEFAULT_CONFIG))
    if unknown:
        raise TypeError(f"unknown marketo sandbox config keys: {unknown}")
    settings = {**copy.deepcopy(DEFAULT_CONFIG), **config}
    store = MarketoStore(clock)
    seed_store(store, leads=leads, companies=companies, opportunities=opportunities, salespersons=salespersons,
               seed=seed)
    return MarketoSandbox(store=store, clock=clock, config=settings)
