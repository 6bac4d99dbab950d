"""Vendor routes of the QAD sandbox (api-facts §3.5): token, list, get, batch write, browse.

Every API call needs a bearer token and a domain scope (``x-qad-workspace-id: <domain>_<entity>`` or
``?domainCode=``) and is rate limited per token (or per client).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from ml_connector.sandbox.qad.auth import TokenBook
from ml_connector.sandbox.qad.browse import browse_entity, browse_filters, flat, matches
from ml_connector.sandbox.qad.entities import SPECS
from ml_connector.sandbox.qad.limits import RateLimiter
from ml_connector.sandbox.qad.responses import int_param, method_not_allowed, submit_error
from ml_connector.sandbox.qad.store import QadStore
from ml_connector.sandbox.qad.timestamps import parse_timestamp_ms

API = "/clouderp/api/erp"
ALL_METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE"]


@dataclass
class Caller:
    """An authenticated, scoped API caller."""

    user: str
    token: str
    domain: str


@dataclass
class QadApi:
    """Route handlers of the QAD sandbox."""

    store: QadStore
    tokens: TokenBook
    config: dict[str, Any]
    limiter: RateLimiter = field(default_factory=RateLimiter)

    def routes(self) -> list[BaseRoute]:
        return [
            Route("/clouderp/oauth/token", self.token, methods=ALL_METHODS),
            Route("/clouderp/api/qracore/browses", self.browse, methods=ALL_METHODS),
            Route(API + "/{entity}", self.collection, methods=ALL_METHODS),
            Route(API + "/{entity}/{key}", self.single, methods=ALL_METHODS),
            Route("/{path:path}", self.not_found, methods=ALL_METHODS),
        ]

    # -- vendor routes ------------------------------------------------------------------------------

    async def token(self, request: Request) -> Response:
        if request.method != "POST":
            return method_not_allowed(["POST"])
        params = dict(request.query_params)
        body = await request.body()
        if body and "application/x-www-form-urlencoded" in request.headers.get("content-type", ""):
            params.update(parse_qsl(body.decode("utf-8", "replace")))
        return self.tokens.grant(params)

    async def collection(self, request: Request) -> Response:
        caller = self._guard(request)
        if isinstance(caller, Response):
            return caller
        entity = request.path_params["entity"]
        if entity not in SPECS:
            return submit_error(404, f"Unknown business entity '{entity}'")
        if request.method == "GET":
            return self._list(request, entity)
        if not SPECS[entity].writable:
            return method_not_allowed(["GET"]) if request.method != "GET" else self._list(request, entity)
        if request.method == "POST":
            return await self._write(request, entity, caller)
        return method_not_allowed(["GET", "POST"])

    async def single(self, request: Request) -> Response:
        caller = self._guard(request)
        if isinstance(caller, Response):
            return caller
        entity, key = request.path_params["entity"], request.path_params["key"]
        if entity not in SPECS:
            return submit_error(404, f"Unknown business entity '{entity}'")
        if request.method != "GET":
            return method_not_allowed(["GET"])
        record = self.store.get(entity, key)
        if record is None:
            return submit_error(404, "Record not found")
        return JSONResponse({"data": [record]})

    async def browse(self, request: Request) -> Response:
        caller = self._guard(request)
        if isinstance(caller, Response):
            return caller
        if request.method != "GET":
            return method_not_allowed(["GET"])
        entity = browse_entity(request.query_params.get("browseId", ""))
        if entity is None:
            return submit_error(400, "Unknown browseId")
        q = request.query_params
        if not q.get("page") or not q.get("pageAction"):
            return JSONResponse({"data": []})  # the real quirk: no page/pageAction -> 200, zero rows
        paging = self._paging(request)
        if isinstance(paging, Response):
            return paging
        page, size = paging
        filters = browse_filters(q.getlist("filter"))
        if filters is None:
            return submit_error(400, "Malformed filter: expected <field>,<op>,<value>[,literal]")
        rows = self._browse_rows(entity, filters, (page - 1) * size, size)
        return JSONResponse({"data": rows})

    async def not_found(self, request: Request) -> Response:
        return JSONResponse({"error": "not_found", "error_description": f"No route for {request.url.path}"},
                            status_code=404)

    # -- vendor helpers -----------------------------------------------------------------------------

    def _guard(self, request: Request) -> Caller | Response:
        """Authenticate, rate limit and scope a request; a Response means it is refused."""
        auth = self.tokens.authenticate(request.headers.get("authorization"))
        if isinstance(auth, Response):
            return auth
        token, record = auth
        key = record.client if self.config["rate_limit_per"] == "client" else token
        wait = self.limiter.retry_after(key, int(self.config["rate_per_second"] or 0))
        if wait is not None:
            return JSONResponse({"error": "too_many_requests",
                                 "error_description": f"Rate limit of {self.config['rate_per_second']} "
                                                      "requests per second exceeded"},
                                status_code=429, headers={"Retry-After": str(wait)})
        domain = self._scope(request)
        if isinstance(domain, Response):
            return domain
        return Caller(record.user, token, domain)

    def _scope(self, request: Request) -> str | Response:
        header = request.headers.get("x-qad-workspace-id")
        query = request.query_params.get("domainCode")
        from_header = None
        if header is not None:
            domain_part, sep, entity_part = header.partition("_")
            if not sep or not domain_part or not entity_part:
                return submit_error(400, "Malformed x-qad-workspace-id: expected <domain>_<entity>")
            from_header = domain_part
        if from_header and query and from_header != query:
            return submit_error(400, "domainCode does not match x-qad-workspace-id")
        domain = query or from_header
        if not domain:
            return submit_error(400, "Missing domain scope: send x-qad-workspace-id or domainCode")
        if domain != self.store.domain:
            return submit_error(403, f"Access denied to domain '{domain}'")
        return domain

    def _paging(self, request: Request) -> tuple[int, int] | Response:
        try:
            page = int_param(request, "page", 1)
            size = int_param(request, "pageSize", int(self.config["default_page_size"]))
        except ValueError:
            return submit_error(400, "page and pageSize must be integers")
        if page < 1:
            return submit_error(400, "page must be >= 1")
        if not 1 <= size <= int(self.config["max_page_size"]):
            return submit_error(400, f"pageSize must be between 1 and {self.config['max_page_size']}")
        return page, size

    def _list(self, request: Request, entity: str) -> Response:
        paging = self._paging(request)
        if isinstance(paging, Response):
            return paging
        page, size = paging
        sort = request.query_params.get("sort")
        if sort not in (None, "", "lastModifiedDate,asc"):
            return submit_error(400, f"Unsupported sort '{sort}': only lastModifiedDate,asc")
        since_raw = request.query_params.get("modifiedSince")
        try:
            since = parse_timestamp_ms(since_raw) if since_raw else None
        except ValueError:
            return submit_error(400, f"Invalid modifiedSince '{since_raw}': expected ISO 8601 with zone")
        rows, total = self.store.page(entity, since, (page - 1) * size, size)
        return JSONResponse({"data": rows, "page": page, "pageSize": size, "totalCount": total,
                             "hasMore": page * size < total})

    async def _write(self, request: Request, entity: str, caller: Caller) -> Response:
        if "json" not in request.headers.get("content-type", ""):
            return submit_error(415, "Content-Type must be application/json")
        try:
            body = json.loads(await request.body())
        except (ValueError, UnicodeDecodeError):
            return submit_error(400, "Malformed JSON request body")
        if not isinstance(body, dict) or not isinstance(body.get(entity), list):
            return submit_error(400, f"Request body must be an object with a '{entity}' array")
        if len(body[entity]) > int(self.config["max_batch"]):
            return submit_error(400, f"Too many records: at most {self.config['max_batch']} per request")
        errors, saved = self.store.submit(entity, body[entity], user=caller.user, config=self.config)
        return JSONResponse({"submitResult": {"success": not errors, "errors": errors}, entity: saved})

    def _browse_rows(self, entity: str, filters: list[tuple[str, str, str]], offset: int, limit: int
                     ) -> list[dict[str, Any]]:
        """Flat rows of a browse; a lone ``lastModifiedDate,ge`` filter uses the index, others scan."""
        if not filters or filters == [("lastModifiedDate", "ge", filters[0][2])]:
            since_ms = parse_timestamp_ms(filters[0][2]) if filters else None
            rows, _total = self.store.page(entity, since_ms, offset, limit)
            return [flat(r) for r in rows]
        matched = [flat(r) for r in self.store.all(entity) if matches(r, filters)]
        return matched[offset:offset + limit]
