"""Zoho Accounts: the token endpoint per DC, access tokens, and the check every API call makes (facts §1).

Token-endpoint errors come back as HTTP 200 with ``{"error": ..}`` (a client must look for ``access_token``).
Limits: 10 token requests per refresh token per 10 minutes ("Access Denied"), 15 live access tokens per
refresh token (the oldest is invalidated). A token works only on its org's DC API host.
"""

from __future__ import annotations

import secrets
import threading
from collections import deque
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl

from starlette.requests import Request
from starlette.responses import Response

from ml_connector.sandbox.core import Clock
from ml_connector.sandbox.zoho.common import ApiError, Org, json_response, zoho_error
from ml_connector.sandbox.zoho.datacenters import DataCenter, accounts_dc, api_dc, hostname, port_suffix

THROTTLED = {"error_description": "You have made too many requests continuously. Please try again after some time.",
             "error": "Access Denied", "status": "failure"}
THROTTLE_WINDOW = 600.0


@dataclass
class Token:
    value: str
    org_id: str
    refresh_token: str
    expires_at: float
    scope: str


def covers(granted: str, needed: str) -> bool:
    """Whether a granted scope includes a needed one (``ZohoCRM.modules.ALL`` covers ``ZohoCRM.modules.x.READ``)."""
    g, n = granted.casefold(), needed.casefold()
    if g == n:
        return True
    if g.endswith(".all"):
        prefix = g[:-3]
        return n.startswith(prefix)
    return False


class Accounts:
    """Orgs, their refresh tokens and the access tokens issued for them."""

    def __init__(self, orgs: list[Org], dcs: dict[str, DataCenter], clock: Clock, config: dict[str, Any]) -> None:
        self.orgs = {org.org_id: org for org in orgs}
        self.dcs = dcs
        self.clock = clock
        self.config = config
        self._tokens: dict[str, Token] = {}
        self._live: dict[str, deque[str]] = {}  # refresh token -> its access tokens, oldest first
        self._requests: dict[str, deque[float]] = {}  # refresh token -> token request times
        self._revoked: set[str] = set()
        self._lock = threading.Lock()

    # -- token endpoint ---------------------------------------------------------------------------------------
    async def token_endpoint(self, request: Request) -> Response:
        params = dict(request.query_params)
        body = (await request.body()).decode(errors="replace")
        params.update(dict(parse_qsl(body, keep_blank_values=True)))
        host = hostname(request)
        dc = accounts_dc(self.dcs, host)
        if dc is None:
            return zoho_error("INVALID_HOST", "the host given seems to be invalid", 400)
        grant = params.get("grant_type")
        if grant != "refresh_token":
            return json_response({"error": "unsupported_grant_type" if grant else "invalid_request"})
        org = next((o for o in self.orgs.values() if o.client_id == params.get("client_id")), None)
        if org is None or (self.config["accounts_must_match_dc"] and org.dc != dc.name):
            return json_response({"error": "invalid_client"})
        if params.get("client_secret") != org.client_secret:
            return json_response({"error": "invalid_client_secret"})
        refresh = params.get("refresh_token", "")
        if refresh != org.refresh_token or refresh in self._revoked:
            return json_response({"error": "invalid_code"})
        now = self.clock()
        with self._lock:
            times = self._requests.setdefault(refresh, deque())
            while times and times[0] <= now - THROTTLE_WINDOW:
                times.popleft()
            if len(times) >= int(self.config["token_requests_per_10min"]):
                return json_response(THROTTLED, int(self.config["token_throttle_status"]))
            times.append(now)
            token = Token(f"1000.{secrets.token_hex(16)}.{secrets.token_hex(16)}", org.org_id, refresh,
                          now + float(self.config["access_token_ttl"]), org.scope)
            self._tokens[token.value] = token
            live = self._live.setdefault(refresh, deque())
            live.append(token.value)
            while len(live) > int(self.config["max_live_tokens"]):
                self._tokens.pop(live.popleft(), None)
        api_host = self.dcs[org.dc].api_host
        return json_response({"access_token": token.value, "scope": org.scope,
                              "api_domain": f"{request.url.scheme}://{api_host}{port_suffix(request)}",
                              "token_type": "Bearer", "expires_in": int(self.config["access_token_ttl"])})

    async def revoke_endpoint(self, request: Request) -> Response:
        if accounts_dc(self.dcs, hostname(request)) is None:
            return zoho_error("INVALID_HOST", "the host given seems to be invalid", 400)
        params = dict(request.query_params)
        params.update(dict(parse_qsl((await request.body()).decode(errors="replace"))))
        refresh = params.get("token", "")
        with self._lock:
            self._revoked.add(refresh)
            for value in self._live.pop(refresh, deque()):
                self._tokens.pop(value, None)
        return json_response({"status": "success"})

    # -- API side ---------------------------------------------------------------------------------------------
    def authorize(self, request: Request, scope: str) -> Org:
        """The org behind the request's ``Authorization: Zoho-oauthtoken ..``; errors as facts §1.5."""
        dc = api_dc(self.dcs, hostname(request))
        if dc is None:
            raise ApiError(zoho_error("INVALID_HOST", "the host given seems to be invalid", 400))
        header = request.headers.get("authorization", "")
        if not header:
            raise ApiError(zoho_error("AUTHENTICATION_FAILURE", "Authentication failed", 401))
        scheme, _, value = header.partition(" ")
        with self._lock:
            token = self._tokens.get(value.strip()) if scheme == "Zoho-oauthtoken" else None
        if token is None or token.expires_at <= self.clock() or self.orgs[token.org_id].dc != dc.name:
            raise ApiError(zoho_error("INVALID_TOKEN", "invalid oauth token", 401))
        if not any(covers(granted, scope) for granted in token.scope.split()):
            raise ApiError(zoho_error("OAUTH_SCOPE_MISMATCH", "invalid oauth scope to access this URL", 401))
        org = self.orgs[token.org_id]
        request.state.zoho_org = org
        return org

    def expire_all(self) -> int:
        """Invalidate every access token (admin, chaos ``revoked_token``); refresh tokens keep working."""
        with self._lock:
            count = len(self._tokens)
            self._tokens.clear()
            self._live.clear()
        return count

    def issue(self, org: Org) -> str:
        """An access token without the endpoint (tests and admin)."""
        now = self.clock()
        token = Token(f"1000.{secrets.token_hex(16)}.{secrets.token_hex(16)}", org.org_id, org.refresh_token,
                      now + float(self.config["access_token_ttl"]), org.scope)
        with self._lock:
            self._tokens[token.value] = token
        return token.value
