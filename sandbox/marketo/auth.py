"""Identity service (facts §2.1): client-credentials tokens that live 3600 s; asking again before expiry returns
the same token with the seconds left. REST calls send ``Authorization: Bearer`` (or the ``access_token`` query
parameter, still documented); an unknown token is 601, an expired one 602 — both inside an HTTP 200.
"""

from __future__ import annotations

import threading
import uuid
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from ml_connector.sandbox.core import Clock

TOKEN_TTL = 3600


@dataclass
class Token:
    value: str
    client_id: str
    expires_at: float


class Identity:
    def __init__(self, clock: Clock, config: dict[str, Any]) -> None:
        self.clock = clock
        self.config = config
        self._tokens: dict[str, Token] = {}
        self._current: dict[str, Token] = {}  # client id -> its live token
        self._lock = threading.Lock()
        self.issued = 0

    async def token_endpoint(self, request: Request) -> Response:
        params = dict(request.query_params)
        if request.method == "POST" and request.headers.get("content-type", "").startswith(
                "application/x-www-form-urlencoded"):
            form = dict(parse_qsl((await request.body()).decode(), keep_blank_values=True))
            params = {**form, **params}
        grant = params.get("grant_type")
        if not grant:
            return JSONResponse({"error": "invalid_request", "error_description": "Missing grant type"}, 400)
        if grant != "client_credentials":
            return JSONResponse({"error": "unsupported_grant_type",
                                 "error_description": f"Unsupported grant type: {grant}"}, 400)
        if (params.get("client_id") != self.config["client_id"]
                or params.get("client_secret") != self.config["client_secret"]):
            return JSONResponse({"error": "invalid_client", "error_description": "Bad client credentials"}, 401)
        token = self.issue(str(params["client_id"]))
        remaining = max(0, int(token.expires_at - self.clock()))
        return JSONResponse({"access_token": token.value, "token_type": "bearer", "expires_in": remaining,
                             "scope": str(self.config["api_user"])})

    def issue(self, client_id: str) -> Token:
        """The client's live token, or a new one once it expired."""
        now = self.clock()
        with self._lock:
            token = self._current.get(client_id)
            if token is None or token.expires_at <= now:
                token = Token(f"{uuid.uuid4()}:{self.config['pod']}", client_id, now + TOKEN_TTL)
                self._tokens[token.value] = token
                self._current[client_id] = token
                self.issued += 1
            return token

    def client_of(self, request: Request) -> str:
        """The client id whose token made the request (the configured client when the token is unknown)."""
        header = request.headers.get("authorization", "")
        value = header[7:].strip() if header.lower().startswith("bearer ") else request.query_params.get(
            "access_token", "")
        with self._lock:
            token = self._tokens.get(value) if value else None
        return token.client_id if token is not None else str(self.config["client_id"])

    def check(self, request: Request) -> str | None:
        """None when the request's token is live, else the Marketo code: "601" unknown/missing, "602" expired."""
        header = request.headers.get("authorization", "")
        value = header[7:].strip() if header.lower().startswith("bearer ") else ""
        if not value and self.config["query_token_allowed"]:
            value = request.query_params.get("access_token", "")
        with self._lock:
            token = self._tokens.get(value) if value else None
        if token is None:
            return "601"
        if token.expires_at <= self.clock():
            return "602"
        return None

    def expire_all(self) -> int:
        """Every token expires now (clients see 602 and must ask again)."""
        now = self.clock()
        with self._lock:
            for token in self._tokens.values():
                token.expires_at = min(token.expires_at, now)
            return len(self._tokens)

    def revoke_all(self) -> None:
        """Every token is forgotten (clients see 601)."""
        with self._lock:
            self._tokens.clear()
            self._current.clear()
