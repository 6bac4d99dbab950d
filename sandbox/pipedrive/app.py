"""Pipedrive simulator (API v2 + the v1 parts still needed), built on :mod:`sandbox.core`.

Serves ``/api/v2/*``, ``/api/v1/*``, ``/v1/*`` and ``/oauth/*`` on any host.
Facts: shared/api-facts/pipedrive.md.
Tunable behaviour lives in ``sandbox.config`` (``GET|PATCH /_admin/config``); see :data:`DEFAULT_CONFIG`.

Admin API (no auth, no rate limit, not logged), besides the core's requests/faults/config:
  GET   /_admin/records/{entity}                -> {"count": n, "records": [... deleted included]}
  GET   /_admin/records/{entity}/{id}           -> the record
  POST  /_admin/records/{entity}                -> insert (no validation; custom_fields may use labels)
  PATCH /_admin/records/{entity}/{id}           -> merge + bump update_time
  POST  /_admin/records/deals/{id}/products     -> attach a line {product_id, item_price, quantity, ...}
  GET   /_admin/fields/{entity}                 -> {label: key} of the custom fields
  POST  /_admin/oauth/code                      -> {"code": ...} for grant_type=authorization_code
  POST  /_admin/oauth/expire                    -> expire every access token
  GET   /_admin/limits · POST /_admin/limits/reset -> rate-limit state / clear windows, blocks, daily usage
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import partial
from typing import Any
from urllib.parse import parse_qsl

from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import BaseRoute, Route

from ml_connector.sandbox.core import Clock, Sandbox
from ml_connector.sandbox.pipedrive.auth import OAuthServer
from ml_connector.sandbox.pipedrive.common import ERROR_INFO, ApiError
from ml_connector.sandbox.pipedrive.fields import PLURAL, SINGULAR
from ml_connector.sandbox.pipedrive.handlers import Ctx, Handlers, Result
from ml_connector.sandbox.pipedrive.limits import CLOUDFLARE_PAGE, DEFAULT_COSTS, RateLimiter
from ml_connector.sandbox.pipedrive.store import PipedriveStore

logger = logging.getLogger(__name__)
ALL_METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"]
V1_PREFIXES = ("/v1", "/api/v1")
V1_GONE = ("organizations", "persons", "deals", "products", "activities", "pipelines", "stages")
OVER_LIMIT = {"success": False, "error": "Request over limit", "errorCode": 429, "error_info": ERROR_INFO}

DEFAULT_CONFIG: dict[str, Any] = {
    # auth
    "api_domain": None,  # OAuth api_domain; None = the request's scheme://host
    "access_token_ttl": 3599,  # seconds (float allowed)
    "rotate_refresh_token": False,  # facts: no rotation
    "revoked": False,  # every refresh -> invalid_grant, Bearer tokens invalid
    "accept_query_token": True,  # legacy ?api_token= (unconfirmed on v2)
    # entities
    "post_status": 200,  # POST orgs/persons/deals (200 vs 201 unconfirmed)
    "post_status_products": 201,
    "get_deleted_returns_entity": False,  # GET of a soft-deleted entity: 404 (False) or 200 + is_deleted
    "products_updated_since": False,  # updated_since/until on products (not in the spec)
    "deal_products_bump_deal": False,  # line changes bump the deal's update_time
    "deal_value_from_products": False,  # deal value = sum of enabled lines
    "strict_update_time": False,  # every change moves update_time on by >= 1 s
    "reference_error_status": 400,  # dangling org_id/person_id/product_id: 400 or 404
    "contact_sync": False,  # persons im/postal_address/notes/birthday/job_title allowed
    "default_currency": "EUR",
    "search_index_lag_seconds": 5.0,  # UNCONFIRMED lag: a fresh record is not searchable at once (never kinder)
    # rate limits
    "burst_limit": 20,
    "burst_limit_oauth": 80,
    "search_burst_limit": 10,
    "burst_window_seconds": 2.0,
    "daily_budget": 30000,
    "daily_reset_seconds": None,  # None = refill at the next UTC midnight
    "abuse_block_after": 30,
    "token_costs": dict(DEFAULT_COSTS),
}


@dataclass
class Op:
    """One vendor operation: handler, token-cost name, and whether it is a search (search burst limit)."""

    handler: Callable[[Ctx], Result]
    cost: str
    search: bool = False


@dataclass
class Principal:
    """Who is calling: burst windows are per token (API token) or per user (OAuth)."""

    key: str
    oauth: bool


def _unauthorized(message: str = "unauthorized access") -> ApiError:
    return ApiError(
        401,
        {"success": False, "error": message, "errorCode": 401, "error_info": ERROR_INFO},
        {"x-401-by-gw": "true"},
    )


class PipedriveSandbox(Sandbox):
    """The Pipedrive sandbox; ``store`` is the in-memory account (see :class:`PipedriveStore`)."""

    def __init__(
        self,
        *,
        store: PipedriveStore,
        oauth: OAuthServer,
        api_token: str,
        config: dict[str, Any],
        clock: Clock = time.time,
    ) -> None:
        self.store = store
        self.oauth = oauth
        self.api_token = api_token
        self.limits = RateLimiter(config, clock)
        self.handlers = Handlers(store)
        super().__init__(
            name="pipedrive", routes=self._routes(), config=config, admin_routes=self._admin(), clock=clock
        )
        self.chaos.revoke_tokens = oauth.expire_all  # chaos may draw token revocations here too

    # -- request pipeline ------------------------------------------------------------------------------------
    def _endpoint(self, ops: dict[str, Op]) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            return await self._serve(request, ops)

        return endpoint

    async def _serve(self, request: Request, ops: dict[str, Op]) -> Response:
        """Auth -> rate limit -> method -> handler, always answering JSON (except the abuse block)."""
        headers = {"x-correlation-id": str(uuid.uuid4())}
        try:
            principal = self._authenticate(request)
        except ApiError as err:
            return JSONResponse(err.body, err.status, headers={**headers, **err.headers})
        op = ops.get(request.method)
        decision = self.limits.check(
            principal.key, principal.oauth, bool(op and op.search), op.cost if op else "unknown"
        )
        if decision.status == 403:
            return HTMLResponse(CLOUDFLARE_PAGE, 403)
        headers.update(decision.headers)
        if decision.status == 429:
            return JSONResponse(OVER_LIMIT, 429, headers=headers)
        if op is None:
            return JSONResponse(
                {
                    "success": False,
                    "error": "Method not allowed",
                    "error_info": ERROR_INFO,
                    "data": None,
                    "additional_data": None,
                },
                405,
                headers=headers,
            )
        ctx = Ctx(
            request.method,
            request.query_params,
            dict(request.path_params),
            await request.body(),
            request.headers.get("content-type", ""),
        )
        try:
            with self.store.lock:
                status, body = op.handler(ctx)
        except ApiError as err:
            status, body = err.status, err.body
            headers.update(err.headers)
        except Exception:  # a sandbox bug must still look like the vendor's 500, and be visible in the log
            logger.exception("pipedrive sandbox handler failed: %s %s", request.method, request.url.path)
            status, body = 500, {"success": False, "error": "Internal Server Error", "code": "ERR_UNKNOWN"}
        return JSONResponse(body, status, headers=headers)

    def _authenticate(self, request: Request) -> Principal:
        """``x-api-token`` header, then ``Authorization: Bearer``, then legacy ``?api_token=``."""
        header = request.headers.get("x-api-token")
        if header is not None:
            if header == self.api_token:
                return Principal(f"token:{header}", False)
            raise _unauthorized()
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() == "bearer":
            token = token.strip()
            if not token:
                raise ApiError(
                    400,
                    {
                        "success": False,
                        "error": "Malformed Authorization header",
                        "errorCode": 400,
                        "error_info": ERROR_INFO,
                    },
                )
            status = self.oauth.bearer_status(token)
            if status == "ok":
                return Principal("oauth:18", True)
            raise _unauthorized(
                "Invalid token: access_token is invalid" if status == "expired" else "unauthorized access"
            )
        query = request.query_params.get("api_token")
        if query is not None and self.config.get("accept_query_token", True) and query == self.api_token:
            return Principal(f"token:{query}", False)
        raise _unauthorized()

    # -- routes ----------------------------------------------------------------------------------------------
    def _route(self, path: str, **ops: Op) -> Route:
        return Route(path, self._endpoint(ops), methods=ALL_METHODS)

    def _routes(self) -> list[BaseRoute]:
        return [*self._oauth_routes(), *self._v2_routes(), *self._v1_routes(), *self._fallback_routes()]

    def _v2_routes(self) -> list[BaseRoute]:
        h, p = self.handlers, "/api/v2"
        routes: list[BaseRoute] = [
            self._route(f"{p}/deals/products", GET=Op(h.lines_by_deals, "list")),
            self._route(
                f"{p}/deals/archived", GET=Op(partial(h.list_entities, "deals", archived=True), "archived")
            ),
            self._route(
                f"{p}/deals/{{id:int}}/products",
                GET=Op(h.deal_lines, "list"),
                POST=Op(h.add_line, "create"),
                DELETE=Op(h.delete_lines, "bulk_delete"),
            ),
            self._route(f"{p}/deals/{{id:int}}/products/bulk", POST=Op(h.add_lines_bulk, "bulk_add")),
            self._route(
                f"{p}/deals/{{id:int}}/products/{{line:int}}",
                PATCH=Op(h.update_line, "update"),
                DELETE=Op(h.delete_line, "delete"),
            ),
            self._route(f"{p}/pipelines", GET=Op(h.pipelines, "pipelines")),
            self._route(f"{p}/pipelines/{{id:int}}", GET=Op(h.pipeline, "get")),
            self._route(f"{p}/stages", GET=Op(h.stages, "pipelines")),
            self._route(f"{p}/stages/{{id:int}}", GET=Op(h.stage, "get")),
            self._route(f"{p}/itemSearch", GET=Op(h.item_search, "search", True)),
            self._route(f"{p}/itemSearch/field", GET=Op(h.field_search, "search", True)),
        ]
        for entity in SINGULAR:
            routes += [
                self._route(f"{p}/{entity}/search", GET=Op(partial(h.search, entity), "search", True)),
                self._route(
                    f"{p}/{entity}",
                    GET=Op(partial(h.list_entities, entity), "list"),
                    POST=Op(partial(h.create_entity, entity), "create"),
                ),
                self._route(
                    f"{p}/{entity}/{{id:int}}",
                    GET=Op(partial(h.get_entity, entity), "get"),
                    PATCH=Op(partial(h.update_entity, entity), "update"),
                    DELETE=Op(partial(h.delete_entity, entity), "delete"),
                ),
            ]
        for singular in PLURAL:
            routes += [
                self._route(
                    f"{p}/{singular}Fields",
                    GET=Op(partial(h.v2_fields, singular), "field_list"),
                    POST=Op(partial(h.v2_create_field, singular), "field_create"),
                ),
                self._route(
                    f"{p}/{singular}Fields/{{code}}", GET=Op(partial(h.v2_field, singular), "field_get")
                ),
            ]
        return routes

    def _v1_routes(self) -> list[BaseRoute]:
        h = self.handlers
        routes: list[BaseRoute] = []
        for prefix in V1_PREFIXES:
            routes += [
                self._route(f"{prefix}/users/me", GET=Op(h.me, "v1_get")),
                self._route(f"{prefix}/users", GET=Op(h.users, "v1_list")),
            ]
            for singular in PLURAL:
                routes += [
                    self._route(
                        f"{prefix}/{singular}Fields",
                        GET=Op(partial(h.v1_fields, singular), "v1_list"),
                        POST=Op(partial(h.v1_create_field, singular), "v1_create"),
                    ),
                    self._route(
                        f"{prefix}/{singular}Fields/{{id:int}}",
                        GET=Op(partial(h.v1_field, singular), "v1_get"),
                    ),
                ]
            gone = {m: Op(h.gone, "unknown") for m in ALL_METHODS}
            for name in V1_GONE:
                routes += [
                    self._route(f"{prefix}/{name}", **gone),
                    self._route(f"{prefix}/{name}/{{rest:path}}", **gone),
                ]
        return routes

    def _fallback_routes(self) -> list[BaseRoute]:
        unknown = {m: Op(self.handlers.unknown, "unknown") for m in ALL_METHODS}
        routes: list[BaseRoute] = [
            self._route(f"{prefix}/{{rest:path}}", **unknown) for prefix in ("/api/v2", *V1_PREFIXES)
        ]
        routes.append(Route("/{rest:path}", self._not_found, methods=ALL_METHODS))
        return routes

    async def _not_found(self, request: Request) -> Response:
        return JSONResponse(
            {
                "success": False,
                "error": "Not found",
                "error_info": ERROR_INFO,
                "data": None,
                "additional_data": None,
            },
            404,
        )

    # -- OAuth -----------------------------------------------------------------------------------------------
    def _oauth_routes(self) -> list[BaseRoute]:
        return [
            Route("/oauth/token", self._oauth_token, methods=ALL_METHODS),
            Route("/oauth/revoke", self._oauth_revoke, methods=ALL_METHODS),
        ]

    async def _oauth_form(self, request: Request) -> tuple[str, dict[str, str]] | Response:
        if request.method != "POST":
            return JSONResponse({"error": "invalid_request", "message": "Method not allowed"}, 405)
        content_type = request.headers.get("content-type", "")
        form: dict[str, str] = {}
        if "x-www-form-urlencoded" in content_type:
            form = dict(parse_qsl((await request.body()).decode("utf-8", "replace")))
        return content_type, form

    async def _oauth_token(self, request: Request) -> Response:
        parsed = await self._oauth_form(request)
        if isinstance(parsed, Response):
            return parsed
        base = f"{request.url.scheme}://{request.url.netloc}"
        status, body = self.oauth.token(parsed[0], parsed[1], request.headers.get("authorization"), base)
        return JSONResponse(body, status, headers={"cache-control": "no-store"})

    async def _oauth_revoke(self, request: Request) -> Response:
        parsed = await self._oauth_form(request)
        if isinstance(parsed, Response):
            return parsed
        status, body = self.oauth.revoke(parsed[0], parsed[1], request.headers.get("authorization"))
        return JSONResponse(body, status)

    # -- admin -----------------------------------------------------------------------------------------------
    def _admin(self) -> list[BaseRoute]:
        return [
            Route("/_admin/records/deals/{id:int}/products", self._admin_add_line, methods=["POST"]),
            Route("/_admin/records/{entity}", self._admin_list, methods=["GET"]),
            Route("/_admin/records/{entity}", self._admin_insert, methods=["POST"]),
            Route("/_admin/records/{entity}/{id:int}", self._admin_get, methods=["GET"]),
            Route("/_admin/records/{entity}/{id:int}", self._admin_patch, methods=["PATCH"]),
            Route("/_admin/fields/{entity}", self._admin_fields, methods=["GET"]),
            Route("/_admin/oauth/code", self._admin_code, methods=["POST"]),
            Route("/_admin/oauth/expire", self._admin_expire, methods=["POST"]),
            Route("/_admin/limits", self._admin_limits, methods=["GET"]),
            Route("/_admin/limits/reset", self._admin_limits_reset, methods=["POST"]),
        ]

    @staticmethod
    async def _admin_json(request: Request) -> dict[str, Any]:
        raw = await request.body()
        if not raw.strip():
            return {}
        data = await request.json()
        return data if isinstance(data, dict) else {}

    async def _admin_list(self, request: Request) -> Response:
        try:
            records = self.store.all(request.path_params["entity"])
        except KeyError as err:
            return JSONResponse({"error": str(err)}, 404)
        return JSONResponse({"count": len(records), "records": records})

    async def _admin_get(self, request: Request) -> Response:
        try:
            record = self.store.get(request.path_params["entity"], request.path_params["id"])
        except KeyError as err:
            return JSONResponse({"error": str(err)}, 404)
        return JSONResponse(record) if record is not None else JSONResponse({"error": "not found"}, 404)

    async def _admin_insert(self, request: Request) -> Response:
        body = await self._admin_json(request)
        try:
            return JSONResponse(self.store.insert(request.path_params["entity"], body))
        except KeyError as err:
            return JSONResponse({"error": str(err)}, 404)

    async def _admin_patch(self, request: Request) -> Response:
        body = await self._admin_json(request)
        entity, rid = request.path_params["entity"], request.path_params["id"]
        try:
            if self.store.get(entity, rid) is None:
                return JSONResponse({"error": "not found"}, 404)
            return JSONResponse(self.store.patch(entity, rid, body))
        except KeyError as err:
            return JSONResponse({"error": str(err)}, 404)

    async def _admin_add_line(self, request: Request) -> Response:
        body = await self._admin_json(request)
        try:
            line = self.store.add_deal_product(
                request.path_params["id"],
                body.pop("product_id", 0),
                body.pop("item_price", 0),
                body.pop("quantity", 1),
                **body,
            )
        except KeyError as err:
            return JSONResponse({"error": str(err)}, 404)
        return JSONResponse(line)

    async def _admin_fields(self, request: Request) -> Response:
        entity = request.path_params["entity"]
        if SINGULAR.get(entity, entity) not in PLURAL:
            return JSONResponse({"error": f"unknown entity {entity!r}"}, 404)
        return JSONResponse(self.store.catalog.labels(entity))

    async def _admin_code(self, request: Request) -> Response:
        body = await self._admin_json(request)
        return JSONResponse({"code": self.oauth.mint_code(body.get("redirect_uri"))})

    async def _admin_expire(self, request: Request) -> Response:
        self.oauth.expire_all()
        return JSONResponse({"ok": True})

    async def _admin_limits(self, request: Request) -> Response:
        return JSONResponse(self.limits.snapshot())

    async def _admin_limits_reset(self, request: Request) -> Response:
        with self.limits.lock:
            self.limits.reset()
        return JSONResponse({"ok": True})


def create_pipedrive_sandbox(
    *,
    seed: int = 11,
    api_token: str = "0123456789abcdef0123456789abcdef01234567",
    client_id: str = "ml-connector-app",
    client_secret: str = "app-secret",
    refresh_token: str = "1:1:seeded-refresh-token",
    company_domain: str = "acme",
    deals: int = 0,
    clock: Clock = time.time,
) -> PipedriveSandbox:
    """A fresh Pipedrive sandbox: pipeline 1 "Sales" (stages 1-5), owner user 18, the seeded custom fields,
    no organizations/persons/products, and ``deals`` seeded deals (without products).
    Token expiry, rate windows, search lag and timestamps read time only through ``clock``."""
    config = {**DEFAULT_CONFIG, "token_costs": dict(DEFAULT_COSTS)}
    store = PipedriveStore(seed, config, company_domain, clock)
    if deals:
        store.seed_deals(deals)
    oauth = OAuthServer(config, client_id, client_secret, refresh_token, seed, clock)
    return PipedriveSandbox(store=store, oauth=oauth, api_token=api_token, config=config, clock=clock)
