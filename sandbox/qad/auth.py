"""OAuth2 token book: password and refresh_token grants, bearer checks, expiry read from the injected clock."""

from __future__ import annotations

import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from starlette.responses import JSONResponse

from ml_connector.sandbox.core import Clock
from ml_connector.sandbox.qad.responses import oauth_error as _oauth_error
from ml_connector.sandbox.qad.responses import token_error as _token_error


@dataclass
class AccessToken:
    """An issued access token: who, for which client, when, and its refresh token."""

    user: str
    client: str
    issued: float
    refresh_token: str


class TokenBook:
    """OAuth2 password / refresh_token grants and bearer-token checks."""

    def __init__(self, client_id: str, users: Mapping[str, str], config: Mapping[str, Any],
                 clock: Clock = time.time) -> None:
        self.client_id = client_id
        self.clock = clock
        self.users = dict(users)
        self.config = config
        self.access: dict[str, AccessToken] = {}
        self.refresh: dict[str, str] = {}  # refresh token -> user

    def grant(self, params: Mapping[str, str]) -> JSONResponse:
        """Answer a token request."""
        if params.get("client_id") != self.client_id:
            return _oauth_error(401, "invalid_client", "Unknown client_id")
        grant_type = params.get("grant_type")
        if grant_type == "password":
            user = params.get("username", "")
            if not user or self.users.get(user) != params.get("password"):
                return _oauth_error(400, "invalid_grant", "Bad credentials")
            return self._issue(user, None)
        if grant_type == "refresh_token":
            old = params.get("refresh_token", "")
            if old not in self.refresh:
                return _oauth_error(400, "invalid_grant", "Invalid refresh token")
            return self._issue(self.refresh[old], old)
        if not grant_type:
            return _oauth_error(400, "invalid_request", "Missing grant_type")
        return _oauth_error(400, "unsupported_grant_type", f"Unsupported grant type: {grant_type}")

    def _issue(self, user: str, old_refresh: str | None) -> JSONResponse:
        refresh = old_refresh
        if refresh is None or self.config["rotate_refresh_token"]:
            if refresh is not None:
                del self.refresh[refresh]
            refresh = secrets.token_hex(20)
            self.refresh[refresh] = user
        access = secrets.token_hex(20)
        self.access[access] = AccessToken(user, self.client_id, self.clock(), refresh)
        body = {"access_token": access, "token_type": "bearer", "refresh_token": refresh,
                "expires_in": self.config["token_ttl"], "scope": "read write"}
        return JSONResponse(body, headers={"Cache-Control": "no-store", "Pragma": "no-cache"})

    def authenticate(self, authorization: str | None) -> tuple[str, AccessToken] | JSONResponse:
        """(token, its record) for a valid ``Authorization`` header, else a 401 response."""
        scheme, _, token = (authorization or "").partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            return _token_error("Full authentication is required to access this resource")
        record = self.access.get(token)
        if record is None:
            return _token_error(f"Invalid access token: {token}")
        if self.clock() - record.issued > float(self.config["token_ttl"]):
            return _token_error(f"Access token expired: {token}")
        return token, record

    def expire_all(self) -> int:
        """Make every issued access token expired; returns how many."""
        for record in self.access.values():
            record.issued = 0.0
        return len(self.access)
