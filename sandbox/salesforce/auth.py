"""OAuth 2.0 client credentials on the org's My Domain host (facts §1.1, §1.2).

The My Domain host is whatever host the sandbox is reached on, except login hosts (``login.salesforce.com``,
``test.salesforce.com``, any host whose first label is ``login`` or ``test``, and ``config["login_hosts"]``):
there the flow is refused, as the real login servers refuse it.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
import threading
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from ml_connector.sandbox.core import Clock
from ml_connector.sandbox.salesforce.common import ApiError


@dataclass
class Session:
    token: str
    org_id: str
    issued: float


def oauth_error(error: str, description: str, status: int = 400) -> Response:
    return JSONResponse({"error": error, "error_description": description}, status_code=status)


def hostname(request: Request) -> str:
    return request.headers.get("host", "").rsplit(":", 1)[0].lower() if request.headers.get("host") else ""


class Tokens:
    """Issued access tokens; ``valid`` is what the REST routes and the Pub/Sub server check."""

    def __init__(self, clock: Clock, config: dict[str, Any]) -> None:
        self.clock = clock
        self.config = config
        self._sessions: dict[str, Session] = {}
        self._lock = threading.Lock()

    def valid(self, token: str) -> str | None:
        """The org id behind a live access token, else None (expired after ``session_timeout`` seconds)."""
        with self._lock:
            session = self._sessions.get(token)
        if session is None or self.clock() >= session.issued + float(self.config["session_timeout"]):
            return None
        return session.org_id

    def issue(self) -> str:
        """A new access token of the org (tests and the token endpoint)."""
        org_id = str(self.config["org_id"])
        token = f"{org_id[:15]}!AQ0AQ{secrets.token_urlsafe(72)}"[:112]
        with self._lock:
            self._sessions[token] = Session(token, org_id, self.clock())
        return token

    def expire_all(self) -> int:
        """Invalidate every session (admin, chaos ``revoked_token``); returns how many were still live."""
        timeout = float(self.config["session_timeout"])
        with self._lock:
            count = sum(1 for s in self._sessions.values() if self.clock() < s.issued + timeout)
            self._sessions.clear()
        return count

    def bearer(self, request: Request) -> str:
        """The org of the request's ``Authorization: Bearer``; 401 INVALID_SESSION_ID otherwise."""
        scheme, _, value = request.headers.get("authorization", "").partition(" ")
        org = self.valid(value.strip()) if scheme.lower() == "bearer" else None
        if org is None:
            raise ApiError(JSONResponse([{"message": "Session expired or invalid", "errorCode": "INVALID_SESSION_ID"}],
                                        status_code=401))
        return org

    async def userinfo(self, request: Request) -> Response:
        """``GET /services/oauth2/userinfo``: who the token acts as (the org id is Pub/Sub's ``tenantid``)."""
        scheme, _, value = request.headers.get("authorization", "").partition(" ")
        org = self.valid(value.strip()) if scheme.lower() == "bearer" else None
        if org is None:
            return Response("Bad_OAuth_Token", status_code=403, media_type="text/plain")
        user = str(self.config["user_id"])
        return JSONResponse({"sub": f"https://login.salesforce.com/id/{org}/{user}", "user_id": user,
                             "organization_id": org, "preferred_username": "integration@acme.example",
                             "name": "ERP Integration", "email": "integration@acme.example", "active": True,
                             "user_type": "STANDARD", "utcOffset": 0})

    async def revoke(self, request: Request) -> Response:
        """``POST /services/oauth2/revoke`` form ``token=``: 200, or 400 invalid_token for an unknown one."""
        form = dict(parse_qsl((await request.body()).decode(errors="replace")))
        token = form.get("token") or request.query_params.get("token", "")
        with self._lock:
            found = self._sessions.pop(token, None)
        if found is None:
            return oauth_error("invalid_token", "invalid token")
        return Response(status_code=200)

    def is_login_host(self, host: str) -> bool:
        first = host.split(".", 1)[0]
        return host in {h.lower() for h in self.config["login_hosts"]} or first in {"login", "test"}

    async def endpoint(self, request: Request) -> Response:
        """``POST /services/oauth2/token``: client_credentials by form or Basic auth."""
        if self.is_login_host(hostname(request)):
            return oauth_error("invalid_grant", "request not supported on this domain")
        form = dict(parse_qsl((await request.body()).decode(errors="replace")))
        client_id, client_secret = form.get("client_id", ""), form.get("client_secret", "")
        scheme, _, value = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() == "basic":
            try:
                client_id, _, client_secret = base64.b64decode(value.strip()).decode().partition(":")
            except (binascii.Error, UnicodeDecodeError):
                return oauth_error("invalid_client", "invalid client credentials",
                                   int(self.config["invalid_client_status"]))
        if form.get("grant_type") != "client_credentials":
            return oauth_error("unsupported_grant_type", "grant type not supported")
        if client_id != self.config["client_id"]:
            return oauth_error("invalid_client_id", "client identifier invalid")
        if not hmac.compare_digest(client_secret, str(self.config["client_secret"])):
            return oauth_error("invalid_client", "invalid client credentials",
                               int(self.config["invalid_client_status"]))
        if not self.config["run_as_user"]:
            return oauth_error("invalid_grant", "no client credentials user enabled")
        token = self.issue()
        issued_at = str(int(round(self.clock() * 1000)))
        identity = f"https://login.salesforce.com/id/{self.config['org_id']}/{self.config['user_id']}"
        signature = hmac.new(client_secret.encode(), (identity + issued_at).encode(), hashlib.sha256).digest()
        return JSONResponse({
            "access_token": token, "signature": base64.b64encode(signature).decode(), "scope": "api",
            "instance_url": f"{request.url.scheme}://{request.headers.get('host', '')}", "id": identity,
            "token_type": "Bearer", "issued_at": issued_at})
