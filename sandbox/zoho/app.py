"""Zoho CRM simulator (REST API v8), built on :mod:`sandbox.core`. Facts: shared/api-facts/zoho-crm.md.

Several data centers, each with its own accounts and API host (picked by the request's Host, ports ignored),
and several orgs, each in one DC with its own credentials, records, credits and concurrency. Tunable
behaviour lives in ``sandbox.config`` (``GET|PATCH /_admin/config``); see :data:`DEFAULT_CONFIG`.

Admin API (no auth, no limits, not logged), besides the core's requests/faults/chaos/config. ``?org=<org_id>``
picks an org (default: the default org, ``config["default_org"]``):
  GET    /_admin/orgs                          -> {"default": org_id, "orgs": [{org_id, dc, client_id,
                                                   client_secret, refresh_token, accounts_host, api_host, ...}]}
  GET    /_admin/records/{module}              -> {"count": n, "records": [... id order, line items included]}
  GET    /_admin/records/{module}/{id}         -> the record
  POST   /_admin/records/{module}              -> insert (no validation), 201 + the record
  PATCH  /_admin/records/{module}/{id}         -> merge ("edited in the Zoho UI"): bumps Modified_Time, notifies
  DELETE /_admin/records/{module}/{id}         -> delete, notifies
  POST   /_admin/tokens/expire                 -> every access token invalid (refresh tokens still work)
  GET    /_admin/limits · POST /_admin/limits/reset -> credits used/remaining and active calls per org / clear
"""

from __future__ import annotations

import copy
import importlib
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from ml_connector.sandbox.core import Clock, Sandbox
from ml_connector.sandbox.zoho import metadata, records
from ml_connector.sandbox.zoho.auth import Accounts
from ml_connector.sandbox.zoho.common import ApiError, Org, ZohoContext, json_response, zoho_error
from ml_connector.sandbox.zoho.datacenters import DEFAULT_DATA_CENTERS, all_hosts, api_dc, data_centers, hostname
from ml_connector.sandbox.zoho.limits import EDITION_CONCURRENCY, Limits
from ml_connector.sandbox.zoho.metadata import build_catalog
from ml_connector.sandbox.zoho.seed import seed_store
from ml_connector.sandbox.zoho.store import ZohoStore

logger = logging.getLogger(__name__)
JOB_MODULES = ("coql", "bulk", "watch")  # zoho-jobs' route modules, mounted when present

DEFAULT_CONFIG: dict[str, Any] = {
    # data centers and auth
    "data_centers": copy.deepcopy(DEFAULT_DATA_CENTERS),  # read at creation (hosts to serve)
    "accounts_must_match_dc": True,  # an EU org's refresh token at the US accounts host -> invalid_client
    "access_token_ttl": 3600,
    "token_requests_per_10min": 10,
    "token_throttle_status": 400,  # HTTP status of the "Access Denied" throttle body (UNCONFIRMED)
    "max_live_tokens": 15,
    "default_org": "20000000002",  # the EU org: what a workspace uses
    # records
    "unknown_id_status": 204,  # GET of an unknown id: 204, or 400 for INVALID_DATA (UNCONFIRMED)
    "single_insert_status": 201,
    "multi_insert_status": 202,
    "update_status": 200,
    "partial_status": 207,  # some records failed (UNCONFIRMED: 207 per the v8 table)
    "all_failed_status": 400,
    "drop_missing_rows": True,  # line items left out of an update are removed (UNCONFIRMED)
    "reject_read_only_fields": True,  # writing Created_Time, Full_Name, Grand_Total ... -> INVALID_DATA
    "reject_unknown_fields": True,  # a field not in the metadata -> INVALID_DATA (stricter than ignoring)
    "strict_picklists": True,  # a value not in pick_list_values -> INVALID_DATA
    "page_token_ttl": 86_400,
    "page_token_cap": 100_000,
    # modules (read at creation)
    "sales_order_statuses": list(metadata.SALES_ORDER_STATUSES),
    "purchase_order_statuses": list(metadata.PURCHASE_ORDER_STATUSES),
    "purchase_items_name": "Purchase_Items",
    "po_vendor_mandatory": True,
    # limits
    "credits_per_day": None,  # None: per org (edition); a number overrides every org
    "concurrency": None,  # None: per org (edition); a number overrides every org
    "sub_concurrency": 10,
    "request_latency": 0.0,  # seconds each API call holds its concurrency slot
    "too_many_message": "Number of API requests per minute/day has exceeded the limit",
}


def default_orgs() -> list[Org]:
    """Two orgs: a US one and the EU one a workspace uses."""
    return [
        Org("20000000001", "us", "professional", 52_500, EDITION_CONCURRENCY["professional"], name="Acme US",
            client_id="1000.SANDBOXUSCLIENT0000000000000", client_secret="sandbox-us-client-secret",
            refresh_token="1000.sandbox-us-refresh-token.0000000000000000", user_id="4150868000000225013",
            user_email="admin@acme-us.example", user_name="Pat Boyle"),
        Org("20000000002", "eu", "enterprise", 55_000, EDITION_CONCURRENCY["enterprise"], name="Acme EU",
            client_id="1000.SANDBOXEUCLIENT0000000000000", client_secret="sandbox-eu-client-secret",
            refresh_token="1000.sandbox-eu-refresh-token.0000000000000000", user_id="4150868000000225014",
            user_email="admin@acme-eu.example", user_name="Eva Lang"),
    ]


class ZohoSandbox(Sandbox):
    """The Zoho CRM sandbox; ``ctx`` holds the orgs' stores, accounts and limits."""

    def __init__(self, *, ctx: ZohoContext, clock: Clock = time.time) -> None:
        self.ctx = ctx
        self.hosts = all_hosts(ctx.accounts.dcs)  # serve.py answers on all of them
        routes: list[BaseRoute] = [
            Route("/oauth/v2/token", ctx.accounts.token_endpoint, methods=["POST"]),
            Route("/oauth/v2/token/revoke", ctx.accounts.revoke_endpoint, methods=["POST"]),
        ]
        api = metadata.routes(ctx) + records.routes(ctx)
        admin = self._admin()
        for name in JOB_MODULES:
            try:
                module = importlib.import_module(f"ml_connector.sandbox.zoho.{name}")
            except ImportError as exc:
                if exc.name != f"ml_connector.sandbox.zoho.{name}":
                    raise
                continue
            api = list(module.routes(ctx)) + api
            if hasattr(module, "admin_routes"):
                admin += list(module.admin_routes(ctx))
        routes += [_guarded(route, ctx) for route in api]
        routes.append(_guarded(Route("/{path:path}", _unknown_path, methods=["GET", "POST", "PUT", "PATCH", "DELETE"]),
                               ctx))
        super().__init__(name="zoho", routes=routes, config=ctx.config, admin_routes=admin, clock=clock)
        self.chaos.revoke_tokens = ctx.accounts.expire_all

    @property
    def store(self) -> ZohoStore:
        """The default org's store."""
        return self.ctx.store

    def org(self, org_id: str | None = None) -> Org:
        return self.ctx.accounts.orgs[org_id or str(self.config["default_org"])]

    # -- admin ------------------------------------------------------------------------------------------------
    def _admin(self) -> list[BaseRoute]:
        return [
            Route("/_admin/orgs", self._orgs, methods=["GET"]),
            Route("/_admin/tokens/expire", self._expire, methods=["POST"]),
            Route("/_admin/limits", self._limits, methods=["GET"]),
            Route("/_admin/limits/reset", self._limits_reset, methods=["POST"]),
            Route("/_admin/records/{module}", self._admin_list, methods=["GET"]),
            Route("/_admin/records/{module}", self._admin_insert, methods=["POST"]),
            Route("/_admin/records/{module}/{id}", self._admin_get, methods=["GET"]),
            Route("/_admin/records/{module}/{id}", self._admin_patch, methods=["PATCH"]),
            Route("/_admin/records/{module}/{id}", self._admin_delete, methods=["DELETE"]),
        ]

    def _admin_store(self, request: Request) -> tuple[ZohoStore, Org, str]:
        org_id = request.query_params.get("org") or str(self.config["default_org"])
        if org_id not in self.ctx.stores:
            raise ApiError(JSONResponse({"error": f"unknown org {org_id}"}, 404))
        module = request.path_params["module"]
        store = self.ctx.stores[org_id]
        if not store.has_module(module):
            raise ApiError(JSONResponse({"error": f"unknown module {module}"}, 404))
        return store, self.ctx.accounts.orgs[org_id], module

    async def _orgs(self, request: Request) -> Response:
        dcs = self.ctx.accounts.dcs
        return JSONResponse({"default": self.config["default_org"], "orgs": [
            {"org_id": org.org_id, "name": org.name, "dc": org.dc, "edition": org.edition,
             "client_id": org.client_id, "client_secret": org.client_secret, "refresh_token": org.refresh_token,
             "accounts_host": dcs[org.dc].accounts_host, "api_host": dcs[org.dc].api_host,
             "credits_per_day": org.credits_per_day, "concurrency": org.concurrency, "user_id": org.user_id,
             "user_email": org.user_email} for org in self.ctx.accounts.orgs.values()]})

    async def _expire(self, request: Request) -> Response:
        return JSONResponse({"expired": self.ctx.accounts.expire_all()})

    async def _limits(self, request: Request) -> Response:
        return JSONResponse({org.org_id: self.ctx.limits.state(org) for org in self.ctx.accounts.orgs.values()})

    async def _limits_reset(self, request: Request) -> Response:
        self.ctx.limits.reset()
        return JSONResponse({"ok": True})

    async def _admin_list(self, request: Request) -> Response:
        return await _admin_call(request, lambda: self._do_list(request))

    def _do_list(self, request: Request) -> Response:
        store, _org, module = self._admin_store(request)
        rows = store.all_raw(module)
        return JSONResponse({"count": len(rows), "records": rows})

    async def _admin_get(self, request: Request) -> Response:
        def run() -> Response:
            store, _org, module = self._admin_store(request)
            rec = store.get(module, request.path_params["id"])
            return JSONResponse(rec) if rec is not None else JSONResponse({"error": "not found"}, 404)

        return await _admin_call(request, run)

    async def _admin_insert(self, request: Request) -> Response:
        body = await request.json()

        def run() -> Response:
            store, org, module = self._admin_store(request)
            return JSONResponse(store.insert(module, body, org.user_ref), 201)

        return await _admin_call(request, run)

    async def _admin_patch(self, request: Request) -> Response:
        body = await request.json()

        def run() -> Response:
            store, org, module = self._admin_store(request)
            rid = request.path_params["id"]
            if not store.exists(module, rid):
                return JSONResponse({"error": "not found"}, 404)
            return JSONResponse(store.update(module, rid, body, org.user_ref,
                                             drop_missing_rows=bool(self.config["drop_missing_rows"])))

        return await _admin_call(request, run)

    async def _admin_delete(self, request: Request) -> Response:
        def run() -> Response:
            store, _org, module = self._admin_store(request)
            deleted = store.delete(module, request.path_params["id"])
            return JSONResponse({"deleted": deleted}, 200 if deleted else 404)

        return await _admin_call(request, run)


async def _unknown_path(request: Request) -> Response:
    return zoho_error("INVALID_URL_PATTERN", "Please check if the URL trying to access is a correct one", 404)


async def _admin_call(request: Request, run: Callable[[], Response]) -> Response:
    try:
        return run()
    except ApiError as err:
        return err.response


def _guarded(route: BaseRoute, ctx: ZohoContext) -> BaseRoute:
    """A vendor route whose ApiErrors become responses and whose answers carry the credits header."""
    if not isinstance(route, Route):
        return route
    endpoint: Callable[[Request], Awaitable[Response]] = route.endpoint

    async def guarded(request: Request) -> Response:
        try:
            if api_dc(ctx.accounts.dcs, hostname(request)) is None:
                raise ApiError(zoho_error("INVALID_HOST", "the host given seems to be invalid", 400))
            response = await endpoint(request)
        except ApiError as err:
            response = err.response
        except Exception:  # a sandbox bug must still look like Zoho's 500 and be visible in the log
            logger.exception("zoho sandbox route failed: %s %s", request.method, request.url.path)
            response = zoho_error("INTERNAL_ERROR", "Internal Server Error", 500)
        org = getattr(request.state, "zoho_org", None)
        if org is not None:
            for key, value in ctx.limits.headers(org).items():
                response.headers[key] = value
        return response

    methods = sorted(route.methods - {"HEAD"}) if route.methods else None
    return Route(route.path, guarded, methods=methods, name=route.name)


def create_zoho_sandbox(*, vendors: int = 0, products: int = 0, accounts: int = 0, contacts: int = 0,
                        purchase_orders: int = 0, sales_orders: int = 0, seed: int = 7, clock: Clock = time.time,
                        orgs: list[Org] | None = None, **config: Any) -> ZohoSandbox:
    """A fresh Zoho sandbox. Every org gets the same seeded counts (seed + its position), created before now.

    ``config`` overrides :data:`DEFAULT_CONFIG` (unknown keys are an error).
    """
    unknown = sorted(set(config) - set(DEFAULT_CONFIG))
    if unknown:
        raise TypeError(f"unknown zoho sandbox config keys: {unknown}")
    settings = {**copy.deepcopy(DEFAULT_CONFIG), **config}
    org_list = [copy.copy(org) for org in (orgs or default_orgs())]
    for org in org_list:
        if settings["credits_per_day"] is not None:
            org.credits_per_day = int(settings["credits_per_day"])
        if settings["concurrency"] is not None:
            org.concurrency = int(settings["concurrency"])
    if str(settings["default_org"]) not in {org.org_id for org in org_list}:
        settings["default_org"] = org_list[-1].org_id
    dcs = data_centers(settings)
    stores: dict[str, ZohoStore] = {}
    now = clock()
    for position, org in enumerate(org_list):
        store = ZohoStore(build_catalog(settings), clock, id_start=position * 10_000_000_000)
        seed_store(store, org.user_ref, seed=seed + position, start=now, vendors=vendors, products=products,
                   accounts=accounts, contacts=contacts, purchase_orders=purchase_orders, sales_orders=sales_orders)
        stores[org.org_id] = store
    accounts_server = Accounts(org_list, dcs, clock, settings)
    ctx = ZohoContext(store=stores[str(settings["default_org"])], clock=clock, config=settings,
                      limits=Limits(clock, settings), accounts=accounts_server, stores=stores)
    return ZohoSandbox(ctx=ctx, clock=clock)


__all__ = ["DEFAULT_CONFIG", "ZohoSandbox", "create_zoho_sandbox", "default_orgs", "json_response"]
