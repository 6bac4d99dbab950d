"""Pipedrive OAuth 2.0 server side: the token endpoint, access-token expiry, refresh-token rotation.

Config: ``access_token_ttl`` (seconds, float allowed), ``rotate_refresh_token`` (facts: no rotation),
``revoked`` (every refresh is ``invalid_grant`` and Bearer tokens stop working), ``api_domain``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import secrets
import threading
import time
from typing import Any

from ml_connector.sandbox.core import Clock

SCOPE = "base,deals:full,contacts:full,products:full"
CODE_TTL = 300.0
FORM = "application/x-www-form-urlencoded"


def oauth_error(error: str, message: str, status: int = 400) -> tuple[int, dict[str, Any]]:
    """An OAuth error answer (JSON layout unconfirmed; ``error`` + ``message``)."""
    return status, {"error": error, "message": message}


class OAuthServer:
    """Refresh tokens, access tokens with expiry, and authorization codes minted by the admin API."""

    def __init__(
        self,
        config: dict[str, Any],
        client_id: str,
        client_secret: str,
        refresh_token: str,
        seed: int,
        clock: Clock = time.time,
    ) -> None:
        self.config = config
        self.clock = clock
        self.client_id = client_id
        self.client_secret = client_secret
        self.seed = seed
        self.refresh_tokens: set[str] = {refresh_token}
        self.access: dict[str, float] = {}
        self.codes: dict[str, tuple[float, str | None]] = {}
        self._counter = 0
        self.lock = threading.Lock()

    def _next(self, kind: str) -> bytes:
        self._counter += 1
        return hashlib.sha256(f"{self.seed}:{kind}:{self._counter}:{secrets.token_hex(4)}".encode()).digest()

    def mint_code(self, redirect_uri: str | None = None) -> str:
        """An authorization code (as the redirect after consent would carry), valid 5 minutes, single use."""
        with self.lock:
            code = self._next("code").hex()[:40]
            self.codes[code] = (self.clock() + CODE_TTL, redirect_uri)
            return code

    def expire_all(self) -> None:
        """Expire every access token issued so far."""
        with self.lock:
            self.access = dict.fromkeys(self.access, 0.0)

    def bearer_status(self, token: str) -> str:
        """``ok``, ``expired`` (known but stale or revoked) or ``unknown``."""
        with self.lock:
            expires = self.access.get(token)
        if expires is None:
            return "unknown"
        if self.config.get("revoked") or expires <= self.clock():
            return "expired"
        return "ok"

    def token(
        self, content_type: str, form: dict[str, str], authorization: str | None, base_url: str
    ) -> tuple[int, dict[str, Any]]:
        """``POST /oauth/token``: status and JSON body."""
        if content_type.split(";")[0].strip().lower() != FORM:
            return oauth_error("invalid_request", f"Invalid request: content must be {FORM}")
        if not self._client_ok(form, authorization):
            return oauth_error("invalid_client", "Invalid client: client is invalid")
        grant = form.get("grant_type")
        if not grant:
            return oauth_error("invalid_request", "Missing parameter: grant_type")
        with self.lock:
            if grant == "refresh_token":
                return self._refresh(form.get("refresh_token"), base_url)
            if grant == "authorization_code":
                return self._exchange(form.get("code"), form.get("redirect_uri"), base_url)
        return oauth_error("unsupported_grant_type", f"Unsupported grant type: {grant}")

    def revoke(
        self, content_type: str, form: dict[str, str], authorization: str | None
    ) -> tuple[int, dict[str, Any]]:
        """``POST /oauth/revoke``: forget an access or refresh token."""
        if content_type.split(";")[0].strip().lower() != FORM:
            return oauth_error("invalid_request", f"Invalid request: content must be {FORM}")
        if not self._client_ok(form, authorization):
            return oauth_error("invalid_client", "Invalid client: client is invalid")
        token = form.get("token") or ""
        with self.lock:
            self.access.pop(token, None)
            self.refresh_tokens.discard(token)
        return 200, {}

    def _client_ok(self, form: dict[str, str], authorization: str | None) -> bool:
        client_id, secret = form.get("client_id"), form.get("client_secret")
        if authorization and authorization.lower().startswith("basic "):
            try:
                client_id, _, secret = base64.b64decode(authorization[6:].strip()).decode().partition(":")
            except (binascii.Error, UnicodeDecodeError):
                return False
        return client_id == self.client_id and secret == self.client_secret

    def _refresh(self, refresh_token: str | None, base_url: str) -> tuple[int, dict[str, Any]]:
        if not refresh_token:
            return oauth_error("invalid_request", "Missing parameter: refresh_token")
        if self.config.get("revoked") or refresh_token not in self.refresh_tokens:
            return oauth_error("invalid_grant", "Invalid grant: refresh_token is invalid")
        if self.config.get("rotate_refresh_token"):
            self.refresh_tokens.discard(refresh_token)
            refresh_token = self._new_refresh()
        return 200, self._grant(refresh_token, base_url)

    def _exchange(
        self, code: str | None, redirect_uri: str | None, base_url: str
    ) -> tuple[int, dict[str, Any]]:
        if not code:
            return oauth_error("invalid_request", "Missing parameter: code")
        entry = self.codes.pop(code, None)
        if entry is None:
            return oauth_error("invalid_grant", "Invalid grant: authorization_code is invalid")
        expires, expected_uri = entry
        if expires <= self.clock():
            return oauth_error("invalid_grant", "Invalid grant: authorization_code has expired")
        if expected_uri is not None and redirect_uri != expected_uri:
            return oauth_error("invalid_request", "Invalid request: redirect_uri is invalid")
        return 200, self._grant(self._new_refresh(), base_url)

    def _new_refresh(self) -> str:
        token = "1:1:" + self._next("refresh").hex()[:40]
        self.refresh_tokens.add(token)
        return token

    def _grant(self, refresh_token: str, base_url: str) -> dict[str, Any]:
        ttl = float(self.config.get("access_token_ttl", 3599))
        access = "v1u:" + base64.b64encode(self._next("access") * 3).decode()
        self.access[access] = self.clock() + ttl
        return {
            "access_token": access,
            "token_type": "Bearer",
            "expires_in": int(ttl),
            "refresh_token": refresh_token,
            "scope": SCOPE,
            "api_domain": self.config.get("api_domain") or base_url,
        }
