"""Salesforce simulator (REST API + OAuth client credentials), built on :mod:`sandbox.core`.
Facts: shared/api-facts/salesforce.md. Tunable behaviour lives in ``sandbox.config`` (``GET|PATCH
/_admin/config``); see :data:`DEFAULT_CONFIG`. The Pub/Sub gRPC server (``sandbox/salesforce/pubsub``) serves
the same store and checks tokens through ``sandbox.tokens.valid``.

Admin API (no auth, no limits, not logged), besides the core's requests/faults/chaos/config:
  GET    /_admin/org                        -> org id, user id, client id/secret, login hosts, api usage
  GET    /_admin/records/{sobject}          -> {"count": n, "records": [... Id order, deleted ones too]}
  GET    /_admin/records/{sobject}/{id}     -> the record
  POST   /_admin/records/{sobject}          -> insert as a UI user (validated, change origin ""), 201 + record
  PATCH  /_admin/records/{sobject}/{id}     -> update as a UI user, 200 + record
  DELETE /_admin/records/{sobject}/{id}     -> delete as a UI user
  POST   /_admin/tokens/expire              -> every access token invalid: {"expired": n}
  POST   /_admin/limits/reset               -> daily API request count back to 0
"""

from __future__ import annotations

import copy
import logging
import re
import time
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from ml_connector.sandbox.core import CHAOS_KINDS, Clock, Sandbox
from ml_connector.sandbox.salesforce import composite, discovery, query, writes
from ml_connector.sandbox.salesforce.auth import Tokens
from ml_connector.sandbox.salesforce.common import NOT_FOUND, ApiError, Call, RecordError, sf_error
from ml_connector.sandbox.salesforce.context import Org
from ml_connector.sandbox.salesforce.ids import make_id
from ml_connector.sandbox.salesforce.limits import ApiUsage
from ml_connector.sandbox.salesforce.objects import catalog
from ml_connector.sandbox.salesforce.seed import seed_store
from ml_connector.sandbox.salesforce.store import SalesforceStore

logger = logging.getLogger(__name__)

DEFAULT_CONFIG: dict[str, Any] = {
    # org and OAuth
    "org_id": make_id("00D", 1, "5g0"),
    "user_id": make_id("005", 1, "5g0"),
    "client_id": "3MVG9SANDBOX.ERPSync.ClientCredentials.ExternalClientApp",
    "client_secret": "sandbox-salesforce-client-secret",
    "run_as_user": True,  # False: "no client credentials user enabled"
    "login_hosts": ["login.salesforce.com", "test.salesforce.com"],  # plus any host named login.* / test.*
    "session_timeout": 7200,  # seconds from issue, absolute (UNCONFIRMED: the stricter reading of "2 h")
    "invalid_client_status": 400,  # UNCONFIRMED
    "max_uri_and_headers_bytes": 16_384,  # longer URI -> 414, URI + headers -> 431
    # API
    "min_version": 31,
    "max_version": 67,
    "daily_api_requests": 15_000,  # Developer Edition; rolling 24 h
    "default_batch_size": 2000,
    "min_batch_size": 200,
    "max_batch_size": 2000,
    "max_offset": 2000,
    "soql_offset_without_colon": False,  # datetime literal 2026-03-01T00:00:00.000+0000 (UNCONFIRMED)
    "query_locator_ttl": 172_800,  # 2 days from creation (UNCONFIRMED: from creation is the stricter choice)
    "invalid_query_locator_status": 400,  # UNCONFIRMED
    "collection_max_records": 200,
    # records
    "revenue_cloud": False,  # Invoice/InvoiceLine exist only with it
    "strict_picklists": True,  # every picklist restricted (UNCONFIRMED per field; the stricter choice)
    "reject_ext_field_in_upsert_body": True,  # repeating the URL's ext field in the body (UNCONFIRMED)
    "multiple_match_status": 300,
    "activation_requires_items": True,
}


class SalesforceSandbox(Sandbox):
    """The Salesforce sandbox of one org: ``store`` (records), ``tokens`` (sessions), ``usage`` (API limit)."""

    def __init__(self, org: Org, clock: Clock = time.time) -> None:
        self.org = org
        self.store = org.store
        self.tokens = org.tokens
        self.usage = org.usage
        routes: list[BaseRoute] = [
            Route("/services/oauth2/token", org.tokens.endpoint, methods=["POST"]),
            Route("/services/oauth2/userinfo", org.tokens.userinfo, methods=["GET"]),
            Route("/services/oauth2/revoke", org.tokens.revoke, methods=["POST"]),
            Route("/services/data{rest:path}", self._rest, methods=["GET", "POST", "PATCH", "DELETE", "PUT"]),
        ]
        super().__init__(name="salesforce", routes=routes, config=org.config, admin_routes=self._admin(),
                         clock=clock)
        self.chaos.revoke_tokens = org.tokens.expire_all
        setattr(self.chaos, "configure", _no_429(self.chaos.configure))  # noqa: B010 - this instance only
        org.dispatch = self._dispatch

    # -- REST -------------------------------------------------------------------------------------------------
    async def _rest(self, request: Request) -> Response:
        rest = request.path_params["rest"]
        metered = rest not in {"", "/"}
        too_long = _too_long(request, int(self.config["max_uri_and_headers_bytes"]))
        if too_long:
            return Response(status_code=too_long)
        try:
            if not metered:
                return discovery.versions(self.org)
            self.tokens.bearer(request)
            self.usage.charge()
            response = await self._dispatch(request, rest)
        except ApiError as err:
            response = err.response
        except RecordError as err:
            response = err.as_api_error().response
        except Exception:  # a sandbox bug must still look like the platform's 500 and show in the log
            logger.exception("salesforce sandbox route failed: %s %s", request.method, request.url.path)
            response = sf_error("UNKNOWN_EXCEPTION", "An unexpected error occurred.", 500).response
        if metered and response.status_code != 401:
            response.headers["Sforce-Limit-Info"] = self.usage.header()
        return response

    async def _dispatch(self, request: Request, rest: str) -> Response:
        match = re.fullmatch(r"/v(\d+)\.0(/.*)?", rest)
        if match is None or not self.config["min_version"] <= int(match[1]) <= self.config["max_version"]:
            raise sf_error(*NOT_FOUND, 404)
        version = f"{match[1]}.0"
        path = (match[2] or "/").rstrip("/") or "/"
        method = request.method
        if method == "POST" and request.query_params.get("_HttpMethod"):
            method = request.query_params["_HttpMethod"].upper()
        call = Call.of(request, version)
        for route_method, pattern, handler in ROUTES:
            found = re.fullmatch(pattern, path)
            if found and route_method == method:
                return await handler(self.org, request, call, found.groupdict())
        if any(re.fullmatch(pattern, path) for _m, pattern, _h in ROUTES):
            raise sf_error("METHOD_NOT_ALLOWED", f"HTTP Method '{method}' not allowed. Allowed are GET,HEAD", 405)
        raise sf_error(*NOT_FOUND, 404)

    # -- admin ------------------------------------------------------------------------------------------------
    def _admin(self) -> list[BaseRoute]:
        return [
            Route("/_admin/org", self._org_info, methods=["GET"]),
            Route("/_admin/tokens/expire", self._expire, methods=["POST"]),
            Route("/_admin/limits/reset", self._limits_reset, methods=["POST"]),
            Route("/_admin/records/{sobject}", self._admin_list, methods=["GET"]),
            Route("/_admin/records/{sobject}", self._admin_insert, methods=["POST"]),
            Route("/_admin/records/{sobject}/{id}", self._admin_get, methods=["GET"]),
            Route("/_admin/records/{sobject}/{id}", self._admin_patch, methods=["PATCH"]),
            Route("/_admin/records/{sobject}/{id}", self._admin_delete, methods=["DELETE"]),
        ]

    async def _org_info(self, request: Request) -> Response:
        keys = ("org_id", "user_id", "client_id", "client_secret", "login_hosts", "daily_api_requests")
        return JSONResponse({**{k: self.config[k] for k in keys}, "api_usage": self.usage.used(),
                             "objects": self.store.objects()})

    async def _expire(self, request: Request) -> Response:
        return JSONResponse({"expired": self.tokens.expire_all()})

    async def _limits_reset(self, request: Request) -> Response:
        self.usage.reset()
        return JSONResponse({"ok": True})

    def _sobject(self, request: Request) -> str:
        definition = self.store.definition(request.path_params["sobject"])
        if definition is None:
            raise ApiError(JSONResponse({"error": f"unknown sobject {request.path_params['sobject']}"}, 404))
        return definition.name

    async def _admin_list(self, request: Request) -> Response:
        return await _admin_call(lambda: self._list(request))

    def _list(self, request: Request) -> Response:
        sobject = self._sobject(request)
        rows = [self.store.raw(sobject, rid) for rid in self.store.index(sobject, "Id", deleted=True)]
        return JSONResponse({"count": len(rows), "records": rows})

    async def _admin_get(self, request: Request) -> Response:
        def run() -> Response:
            rec = self.store.raw(self._sobject(request), request.path_params["id"])
            return JSONResponse(rec) if rec is not None else JSONResponse({"error": "not found"}, 404)

        return await _admin_call(run)

    async def _admin_insert(self, request: Request) -> Response:
        body = await request.json()

        def run() -> Response:
            sobject = self._sobject(request)
            rid = writes.Writer(self.org, origin="", ui=True).create(sobject, body)
            return JSONResponse(self.store.get(sobject, rid), 201)

        return await _admin_call(run)

    async def _admin_patch(self, request: Request) -> Response:
        body = await request.json()

        def run() -> Response:
            sobject = self._sobject(request)
            writes.Writer(self.org, origin="", ui=True).update(sobject, request.path_params["id"], body)
            return JSONResponse(self.store.get(sobject, request.path_params["id"]))

        return await _admin_call(run)

    async def _admin_delete(self, request: Request) -> Response:
        def run() -> Response:
            sobject = self._sobject(request)
            writes.Writer(self.org, origin="", ui=True).delete(sobject, request.path_params["id"])
            return JSONResponse({"deleted": True})

        return await _admin_call(run)


def _no_429(configure: Callable[..., None]) -> Callable[..., None]:
    """Chaos without the ``rate_limited`` kind: Salesforce refuses with 403 REQUEST_LIMIT_EXCEEDED, never 429."""
    def configured(rate: float, seed: int = 0, kinds: list[str] | None = None, stall: float = 1.0) -> None:
        if kinds and "rate_limited" in kinds:
            raise ValueError("Salesforce never answers 429: chaos kind rate_limited is not available")
        configure(rate, seed, kinds or [kind for kind in CHAOS_KINDS if kind != "rate_limited"], stall)

    return configured


def _too_long(request: Request, limit: int) -> int:
    """414 when the URI alone is over the limit, 431 when URI and headers together are (facts §2.2), else 0."""
    query = request.scope.get("query_string", b"")
    uri = len(request.scope.get("raw_path", request.url.path.encode())) + (len(query) + 1 if query else 0)
    if uri > limit:
        return 414
    headers = sum(len(k) + len(v) + 4 for k, v in request.scope["headers"])
    return 431 if uri + headers > limit else 0


async def _admin_call(run: Callable[[], Response]) -> Response:
    try:
        return run()
    except ApiError as err:
        return err.response
    except RecordError as err:
        return JSONResponse([{"errorCode": err.code, "message": err.message, "fields": err.fields}], err.status)


Handler = Callable[[Org, Request, Call, dict[str, str]], Awaitable[Response]]
_T = r"(?P<sobject>[A-Za-z][A-Za-z0-9_]*)"
ROUTES: list[tuple[str, str, Handler]] = [
    ("GET", r"/", discovery.resources),
    ("GET", r"/limits", discovery.limits),
    ("GET", r"/sobjects", discovery.global_describe),
    ("GET", rf"/sobjects/{_T}", discovery.sobject_info),
    ("POST", rf"/sobjects/{_T}", writes.create_endpoint),
    ("GET", rf"/sobjects/{_T}/describe", discovery.describe),
    ("GET", rf"/sobjects/{_T}/updated", writes.updated_endpoint),
    ("GET", rf"/sobjects/{_T}/deleted", writes.deleted_endpoint),
    ("GET", rf"/sobjects/{_T}/(?P<id>[A-Za-z0-9]{{15}}|[A-Za-z0-9]{{18}})", writes.get_endpoint),
    ("PATCH", rf"/sobjects/{_T}/(?P<id>[A-Za-z0-9]{{15}}|[A-Za-z0-9]{{18}})", writes.update_endpoint),
    ("DELETE", rf"/sobjects/{_T}/(?P<id>[A-Za-z0-9]{{15}}|[A-Za-z0-9]{{18}})", writes.delete_endpoint),
    ("GET", rf"/sobjects/{_T}/(?P<field>[A-Za-z][A-Za-z0-9_]*)/(?P<value>.+)", writes.get_by_ext_endpoint),
    ("PATCH", rf"/sobjects/{_T}/(?P<field>[A-Za-z][A-Za-z0-9_]*)/(?P<value>.+)", writes.upsert_endpoint),
    ("DELETE", rf"/sobjects/{_T}/(?P<field>[A-Za-z][A-Za-z0-9_]*)/(?P<value>.+)", writes.delete_by_ext_endpoint),
    ("GET", r"/(?P<kind>query|queryAll)", query.query_endpoint),
    ("GET", r"/(?P<kind>query|queryAll)/(?P<locator>[A-Za-z0-9]+-\d+)", query.more_endpoint),
    ("POST", r"/composite", composite.composite_endpoint),
    ("POST", r"/composite/sobjects", writes.collection_create),
    ("PATCH", r"/composite/sobjects", writes.collection_update),
    ("DELETE", r"/composite/sobjects", writes.collection_delete),
    ("PATCH", rf"/composite/sobjects/{_T}/(?P<field>[A-Za-z][A-Za-z0-9_]*)", writes.collection_upsert),
]


def create_salesforce_sandbox(*, accounts: int = 0, contacts: int = 0, products: int = 0, orders: int = 0,
                              revenue_cloud: bool = False, seed: int = 7, clock: Clock = time.time,
                              **config: Any) -> SalesforceSandbox:
    """A fresh Salesforce org: a standard price book, then the seeded counts (created before now).

    ``config`` overrides :data:`DEFAULT_CONFIG` (unknown keys are an error).
    """
    unknown = sorted(set(config) - set(DEFAULT_CONFIG))
    if unknown:
        raise TypeError(f"unknown salesforce sandbox config keys: {unknown}")
    settings = {**copy.deepcopy(DEFAULT_CONFIG), **config, "revenue_cloud": revenue_cloud}
    store = SalesforceStore(catalog(), clock, org_id=str(settings["org_id"]), user_id=str(settings["user_id"]),
                            settings=settings)
    org = Org(store=store, config=settings, tokens=Tokens(clock, settings), usage=ApiUsage(clock, settings),
              clock=clock, metadata_changed=clock())
    seed_store(org, seed=seed, accounts=accounts, contacts=contacts, products=products, orders=orders)
    return SalesforceSandbox(org, clock)
