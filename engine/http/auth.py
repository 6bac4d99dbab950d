"""Auth strategies: API key, OAuth2 (refresh-token, client-credentials, password), session login and OAuth 1.0a
request signing (http/oauth1.py)."""

from __future__ import annotations

import asyncio
import base64
import json
import time
from collections.abc import Collection, Mapping
from typing import Any, Protocol

import httpx

from ml_connector.config.connector import (
    ApiKeyAuthConfig,
    AuthConfig,
    OAuth1AuthConfig,
    OAuth2AuthConfig,
    SessionAuthConfig,
)
from ml_connector.errors import MlConnectorError
from ml_connector.http.errors import FatalError, ReauthorizeError, TransientError
from ml_connector.http.hosts import BaseUrlPolicy
from ml_connector.http.redact import REDACTOR
from ml_connector.http.rules import parse_body


class Vault(Protocol):
    """Where rotated refresh tokens and cached access tokens are kept (encrypted)."""

    def get(self, name: str) -> str | None: ...

    def put(self, name: str, value: str) -> None: ...


class Auth(Protocol):
    """Applies credentials to requests and renews them when told."""

    base_url: str | None

    async def apply(self, http: httpx.AsyncClient, headers: dict[str, str], params: dict[str, Any]) -> None: ...

    def invalidate(self) -> None: ...


class ApiKeyAuth:
    """A static key in a header or a query parameter."""

    base_url: str | None = None

    def __init__(self, config: ApiKeyAuthConfig, context: Mapping[str, Any]) -> None:
        self.header = config.header
        self.query = config.query
        self.value = str(config.value.evaluate(context))
        if not self.value:
            raise FatalError("the API key is empty")
        REDACTOR.add(self.value)

    async def apply(self, http: httpx.AsyncClient, headers: dict[str, str], params: dict[str, Any]) -> None:
        if self.header:
            headers[self.header] = self.value
        else:
            params[str(self.query)] = self.value

    def invalidate(self) -> None:
        """A static key cannot be renewed; the next 401 is fatal."""


class _TokenAuth:
    """Shared token lifecycle: cache, expiry with a safety margin, one refresh at a time."""

    def __init__(self, name: str, vault: Vault, refresh_ahead: float, policy: BaseUrlPolicy) -> None:
        self.name = name
        self.vault = vault
        self.refresh_ahead = refresh_ahead
        self.policy = policy
        self.token: str | None = None
        self.expires_at = 0.0
        self.lifetime = 3600.0
        self.base_url: str | None = None
        self._lock = asyncio.Lock()
        self._load_cached()

    def _cache_key(self) -> str:
        return f"{self.name}.access_token"

    def _load_cached(self) -> None:
        """A cached token is only a saving: one this key cannot read, or naming a base not allowed, is fetched anew."""
        try:
            cached = self.vault.get(self._cache_key())
            data = json.loads(cached or "{}")
            token, expires_at, base_url = str(data["token"]), float(data["expires_at"]), data.get("base_url")
            lifetime = float(data["lifetime"]) if "lifetime" in data else self.lifetime  # a cache field, no spec key
        except (MlConnectorError, ValueError, KeyError, TypeError):
            return
        if base_url and not self.policy.allows(base_url):
            return
        self.token, self.expires_at, self.base_url, self.lifetime = token, expires_at, base_url, lifetime
        REDACTOR.add(token)

    def _remember(self, token: str, expires_in: float | None) -> None:
        REDACTOR.add(token)
        self.token = token
        # no expires_in: an hour; 0 (a token handed back with no time left) is expired, not an hour long
        self.lifetime = 3600.0 if expires_in is None or expires_in == "" else max(0.0, float(expires_in))
        self.expires_at = time.time() + self.lifetime
        self.vault.put(self._cache_key(), json.dumps(
            {"token": token, "expires_at": self.expires_at, "lifetime": self.lifetime, "base_url": self.base_url}))

    def _fresh(self) -> bool:
        """Valid for a while yet: renewal starts ``refresh_ahead`` early, but never before half the lifetime."""
        margin = min(self.refresh_ahead, self.lifetime / 2)
        return self.token is not None and time.time() < self.expires_at - margin

    def invalidate(self) -> None:
        self.token = None
        self.expires_at = 0.0

    async def ensure(self, http: httpx.AsyncClient) -> str:
        if self._fresh():
            assert self.token is not None
            return self.token
        async with self._lock:
            if not self._fresh():
                await self._obtain(http)
        assert self.token is not None
        return self.token

    async def _obtain(self, http: httpx.AsyncClient) -> None:
        raise NotImplementedError


def _token_error(name: str, response: httpx.Response, body: Any,
                 refused: Collection[str] = ("invalid_grant", "invalid_client", "unauthorized_client")) -> Exception:
    if response.status_code >= 500 or response.status_code == 429:
        return TransientError(f"{name}: token endpoint answered {response.status_code}")
    if response.status_code < 300 and not isinstance(body, dict):  # a proxy's page or a cut-off body: a glitch
        return TransientError(f"{name}: token endpoint answered HTTP {response.status_code} with a body that is not "
                              f"a JSON object")
    detail = body.get("error") if isinstance(body, dict) else None
    text = REDACTOR(json.dumps(body) if isinstance(body, (dict, list)) else str(body))[:300]
    if detail in refused:
        return ReauthorizeError(f"connection {name}: the authorisation was refused ({detail}); "
                                f"re-authorise this connection. Token endpoint said: {text}")
    return FatalError(f"connection {name}: token request failed with HTTP {response.status_code}: {text}")


_OAUTH_VALUES = ("client_id", "client_secret", "username", "password", "refresh_token", "scope")


class OAuth2Auth(_TokenAuth):
    """OAuth 2.0 token grants with proactive renewal and stored rotation of refresh tokens."""

    def __init__(self, name: str, config: OAuth2AuthConfig, context: Mapping[str, Any], vault: Vault,
                 policy: BaseUrlPolicy) -> None:
        super().__init__(name, vault, config.refresh_ahead, policy)
        self.config = config
        self.grant: str = config.grant
        self.token_url = str(config.token_url.evaluate(context))
        values = {key: getattr(config, key).evaluate(context) for key in _OAUTH_VALUES
                  if getattr(config, key) is not None}
        self.values: dict[str, Any] = {k: v for k, v in values.items() if v not in (None, "")}
        self.extra = config.extra.evaluate(context)

    def _refresh_key(self) -> str:
        return f"{self.name}.refresh_token"

    def _current_refresh_token(self) -> str | None:
        return self.vault.get(self._refresh_key()) or self.values.get("refresh_token")

    def _form(self, grant: str) -> dict[str, Any]:
        form: dict[str, Any] = {"grant_type": grant, **self.extra}
        if grant == "refresh_token":
            form["refresh_token"] = self._current_refresh_token()
        elif grant == "password":
            form["username"] = self.values.get("username")
            form["password"] = self.values.get("password")
        if self.values.get("scope"):
            form["scope"] = self.values["scope"]
        if self.config.client_auth in ("body", "query"):
            form["client_id"] = self.values.get("client_id")
            if self.values.get("client_secret"):
                form["client_secret"] = self.values["client_secret"]
        return {k: v for k, v in form.items() if v is not None}

    async def _post(self, http: httpx.AsyncClient, grant: str) -> tuple[httpx.Response, Any]:
        """The token request: the form in the body, or (``client_auth: query``) all of it in the token URL's query
        with no body, sent with ``token_method``."""
        headers = {}
        if self.config.client_auth == "basic":
            client_id, client_secret = self.values.get("client_id") or "", self.values.get("client_secret") or ""
            REDACTOR.add_pair(client_id, client_secret)
            headers["Authorization"] = "Basic " + base64.b64encode(f"{client_id}:{client_secret}".encode()).decode()
        form = self._form(grant)
        in_query = self.config.client_auth == "query"
        if in_query and self.values.get("client_secret"):
            REDACTOR.add(str(self.values["client_secret"]))  # in a URL: never in a message or a log
        try:
            response = await http.request(self.config.token_method, self.token_url, params=form if in_query else None,
                                          data=None if in_query else form, headers=headers)
        except httpx.TransportError as exc:
            raise TransientError(f"{self.name}: token endpoint {self.token_url} unreachable: "
                                 f"{type(exc).__name__}") from exc
        return response, parse_body(response)

    async def _obtain(self, http: httpx.AsyncClient) -> None:
        grant = self.grant
        if grant == "password" and self._current_refresh_token():
            response, body = await self._post(http, "refresh_token")
            if response.status_code != 200:  # the refresh token expired: log in again
                response, body = await self._post(http, "password")
        else:
            if grant == "refresh_token" and not self._current_refresh_token():
                raise ReauthorizeError(f"connection {self.name}: no refresh token; authorise this connection")
            response, body = await self._post(http, grant)
        if response.status_code != 200 or not isinstance(body, dict) or "access_token" not in body:
            raise _token_error(self.name, response, body, self.config.reauthorize_errors)
        rotated = body.get("refresh_token")
        if rotated and rotated != self._current_refresh_token():
            REDACTOR.add(rotated)
            self.vault.put(self._refresh_key(), rotated)  # stored before the new access token is used
        base_url_from = self.config.base_url_from
        if base_url_from and body.get(base_url_from):
            self.base_url = self._checked_base(str(body[base_url_from]).rstrip("/"))
        self._remember(str(body["access_token"]), body.get("expires_in"))

    def _checked_base(self, named: str) -> str:
        """The API base a token names, if the connector allows its host: the token and every payload go there."""
        if not self.policy.allows(named):
            raise FatalError(f"connection {self.name}: the token response names the API base {named[:200]}, which "
                             f"this connector does not allow ({self.policy.describe()}); nothing was sent there")
        return named

    async def apply(self, http: httpx.AsyncClient, headers: dict[str, str], params: dict[str, Any]) -> None:
        headers["Authorization"] = f"{self.config.token_scheme} {await self.ensure(http)}"


class SessionAuth(_TokenAuth):
    """A login call that returns a session token (JWT or opaque), sent in templated headers."""

    def __init__(self, name: str, config: SessionAuthConfig, context: Mapping[str, Any], vault: Vault,
                 policy: BaseUrlPolicy) -> None:
        super().__init__(name, vault, config.refresh_ahead, policy)
        login = config.login
        self.method = login.method
        self.url = str(login.url.evaluate(context))
        self.params = login.params.evaluate(context)
        self.form = login.form.evaluate(context) if login.form is not None else None
        self.json = login.json.evaluate(context) if login.json is not None else None
        self.token_path = config.token
        self.expiry_path = config.expires_in
        self.ttl = config.ttl
        self.header = config.header

    async def _obtain(self, http: httpx.AsyncClient) -> None:
        try:
            response = await http.request(self.method, self.url, params=self.params, data=self.form,
                                          json=self.json)
        except httpx.TransportError as exc:
            raise TransientError(f"{self.name}: login endpoint {self.url} unreachable: {type(exc).__name__}") from exc
        body = parse_body(response)
        token = self.token_path.evaluate(body) if isinstance(body, dict) else None
        if response.status_code >= 300 or not token:
            raise _token_error(self.name, response, body)
        expires = self.expiry_path.evaluate(body) if self.expiry_path is not None else self.ttl
        self._remember(str(token), expires)

    async def apply(self, http: httpx.AsyncClient, headers: dict[str, str], params: dict[str, Any]) -> None:
        token = await self.ensure(http)
        headers.update({k: str(v) for k, v in self.header.evaluate({"token": token}).items()})


def build_auth(name: str, config: AuthConfig, context: Mapping[str, Any], vault: Vault, *, base_url: str,
               sandbox: bool) -> Auth:
    """The auth strategy a connector's auth method describes.

    ``base_url`` is the connection's configured base and ``sandbox`` the workspace's word that it is a local
    sandbox: together with the connector's ``base_url_hosts`` they bound where a token response may send calls.
    """
    if isinstance(config, ApiKeyAuthConfig):
        return ApiKeyAuth(config, context)
    if isinstance(config, OAuth1AuthConfig):
        from ml_connector.http.oauth1 import OAuth1Auth  # oauthlib: imported by the connectors that sign

        return OAuth1Auth(name, config, context)
    if isinstance(config, OAuth2AuthConfig):
        policy = BaseUrlPolicy(base_url, config.base_url_hosts, sandbox=sandbox)
        return OAuth2Auth(name, config, context, vault, policy)
    return SessionAuth(name, config, context, vault, BaseUrlPolicy(base_url, (), sandbox=sandbox))
