"""Who is calling: OAuth 1.0a integration signatures and Bearer tokens (PaaS), Adobe IMS tokens (SaaS).

OAuth 1.0a follows Magento's code path step by step (facts §1.2; ``Oauth/Helper/Request.php``, ``Oauth/Oauth.php``,
``NonceGenerator``, ``TokenProvider``), because a client that is almost right fails there in exactly these ways:
- the signed parameters are the ``oauth_*`` header parameters (``realm`` and the signature left out) plus every raw
  query pair split on ``&`` and ``=`` then ``rawurldecode``-d: a pair with no ``=`` or a second raw ``=`` is not
  signed, a ``+`` stays a ``+``, a repeated key keeps its last value; JSON bodies are never signed;
- the nonce is stored before the signature is checked, so a refused request still uses its nonce up;
- only HMAC-SHA256 is accepted.
A request without credentials, or with a Bearer token Commerce does not accept, is a guest: the route's ACL check
then answers 401 "The consumer isn't authorized to access %resources." (facts §1.5).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
import threading
from dataclasses import dataclass
from typing import Any, cast
from urllib.parse import parse_qsl, unquote

from oauthlib.oauth1.rfc5849 import signature, utils
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from ml_connector.sandbox.adobe_commerce import credentials as cred
from ml_connector.sandbox.adobe_commerce.errors import CommerceError, required
from ml_connector.sandbox.core import Clock

SUPPORTED_METHODS = ("HMAC-SHA256",)
TIME_DEVIATION = 600  # seconds a timestamp may be ahead of the server's clock
TOKEN_LENGTH = 32
_REQUIRED = ("oauth_consumer_key", "oauth_signature", "oauth_signature_method", "oauth_nonce", "oauth_timestamp",
             "oauth_token")


def _oauth_error(message: str, parameters: list[Any] | None = None) -> CommerceError:
    """``Magento\\Framework\\Oauth\\Exception`` (an AuthenticationException): 401."""
    return CommerceError(401, message, parameters)


def _oauth_input_error(message: str, parameters: list[Any] | dict[str, Any] | None = None) -> CommerceError:
    """``OauthInputException`` (an InputException): 400."""
    return CommerceError(400, message, parameters)


def _is_protocol(name: str) -> bool:
    """Magento's ``preg_match('/oauth_[a-z_-]+/', ...)``: unanchored."""
    return re.search(r"oauth_[a-z_-]+", name) is not None


def _rawurldecode(text: str) -> str:
    """PHP's ``rawurldecode``: ``%XX`` only; ``+`` stays ``+``."""
    return unquote(text)


def oauth_params(request: Request) -> dict[str, str] | None:
    """The parameters Magento signs, or None when the request carries no OAuth header (a guest then)."""
    header = request.headers.get("authorization", "")
    at = header.lower().find("oauth ")
    if at < 0:
        return None
    params: dict[str, str] = {}
    for part in header[at + 6:].split(","):
        name, sep, value = part.strip().partition("=")
        if sep and _is_protocol(name):
            params[_rawurldecode(name)] = _rawurldecode(value.strip('"'))
    # Form-encoded bodies would be signed too; the sandbox has no form-encoded Commerce route, and JSON bodies
    # are never signed.
    raw_query = request.scope.get("query_string", b"").decode("latin-1")
    for pair in raw_query.split("&") if raw_query else ():
        pieces = pair.split("=")
        if len(pieces) == 2 and not _is_protocol(pieces[0]):
            params[_rawurldecode(pieces[0])] = _rawurldecode(pieces[1])
    return params


def _request_url(request: Request) -> str:
    """Scheme, host (with a non-default port) and raw path, as Magento's ``getRequestUrl`` gives them."""
    scheme = request.url.scheme
    host = request.headers.get("host") or request.url.netloc
    path = request.scope.get("raw_path", request.url.path.encode()).decode("latin-1").split("?")[0]
    return signature.base_string_uri(f"{scheme}://{host}{path}")


@dataclass(frozen=True)
class Integration:
    consumer_id: int
    consumer_key: str
    consumer_secret: str
    access_token: str
    access_token_secret: str


SANDBOX_INTEGRATION = Integration(cred.CONSUMER_ID, cred.CONSUMER_KEY, cred.CONSUMER_SECRET, cred.ACCESS_TOKEN,
                                  cred.ACCESS_TOKEN_SECRET)


class OAuthVerifier:
    """Validates OAuth 1.0a signed requests of the sandbox's one integration; remembers every nonce."""

    def __init__(self, clock: Clock, config: dict[str, Any], integration: Integration = SANDBOX_INTEGRATION) -> None:
        self.clock = clock
        self.config = config
        self.integration = integration
        self._nonces: set[tuple[int, str]] = set()
        self._lock = threading.Lock()

    def verify(self, request: Request, params: dict[str, str]) -> int:
        """The consumer id of a valid signed request; otherwise the CommerceError Magento answers."""
        version = params.get("oauth_version")
        if version is not None and version != "1.0":
            raise _oauth_input_error('The "%1" Oauth version isn\'t supported.', [version])
        missing = [name for name in _REQUIRED if name not in params]
        if missing:
            error = required(missing[0])
            if len(missing) > 1:  # an aggregate InputException lists each missing parameter
                error.errors = [{"message": error.message, "parameters": {"fieldName": m}} for m in missing]
            raise error
        if len(params["oauth_token"]) != TOKEN_LENGTH:
            raise _oauth_input_error("The token length is invalid. Check the length and try again.")
        method = params["oauth_signature_method"]
        if method not in SUPPORTED_METHODS:
            raise _oauth_input_error("Signature method %1 is not supported", [method])
        self._consumer(params["oauth_consumer_key"])
        self._use_nonce(params["oauth_nonce"], params["oauth_timestamp"])
        token_secret = self._token_secret(params["oauth_token"])
        self._check_signature(request, params, token_secret)
        return self.integration.consumer_id

    def _consumer(self, key: str) -> None:
        if key and len(key) != TOKEN_LENGTH:
            raise _oauth_error("Consumer key is not the correct length")
        if key != self.integration.consumer_key:
            raise _oauth_error("A consumer having the specified key does not exist")

    def _use_nonce(self, nonce: str, timestamp: str) -> None:
        try:
            stamp = int(timestamp.strip())
        except ValueError:
            stamp = 0
        if stamp <= 0 or stamp > self.clock() + TIME_DEVIATION:
            if self.config.get("oauth_timestamp_error", "masked") == "direct":
                raise _oauth_input_error("Incorrect timestamp value in the oauth_timestamp parameter")
            # NonceGenerator::validateNonce catches its own OauthInputException (not an Oauth\Exception) with
            # ``catch (\Exception)`` and rethrows this 401; the facts' 400 text never reaches the client.
            raise _oauth_error("An error occurred validating the nonce")
        key = (self.integration.consumer_id, nonce)
        with self._lock:
            if key in self._nonces:
                raise _oauth_error("The nonce is already being used by the consumer with ID %1",
                                   [self.integration.consumer_id])
            self._nonces.add(key)

    def _token_secret(self, token: str) -> str:
        if token != self.integration.access_token:
            raise _oauth_error("Specified token does not exist")
        return self.integration.access_token_secret

    def _check_signature(self, request: Request, params: dict[str, str], token_secret: str) -> None:
        signed = [(k, v) for k, v in params.items() if k != "oauth_signature"]
        normalized = signature.normalize_parameters(cast(Any, signed))  # pairs at runtime; the stub says dict
        base = signature.signature_base_string(cast(Any, request.method.upper()), _request_url(request), normalized)
        key = f"{utils.escape(self.integration.consumer_secret)}&{utils.escape(token_secret)}"
        digest = hmac.new(key.encode(), base.encode(), hashlib.sha256).digest()
        expected = base64.b64encode(digest).decode()
        if not hmac.compare_digest(expected, params["oauth_signature"]):
            raise _oauth_error("The signature is invalid. Verify and try again.")


class ImsTokens:
    """Adobe IMS server-to-server tokens (client credentials, facts §1.4): opaque, 86,399 s of the sandbox clock."""

    def __init__(self, clock: Clock, config: dict[str, Any]) -> None:
        self.clock = clock
        self.config = config
        self._tokens: dict[str, float] = {}  # token -> expiry (epoch seconds)
        self._lock = threading.Lock()

    def valid(self, token: str) -> bool:
        with self._lock:
            expiry = self._tokens.get(token)
        return expiry is not None and self.clock() < expiry

    def expire_all(self) -> int:
        with self._lock:
            count = len(self._tokens)
            self._tokens.clear()
        return count

    async def endpoint(self, request: Request) -> Response:
        """``POST /ims/token/v3`` (form). Error bodies follow IMS's OAuth shape (UNCONFIRMED in detail)."""
        values = dict(parse_qsl((await request.body()).decode(errors="replace"), keep_blank_values=True))
        if values.get("grant_type") != "client_credentials":
            return _ims_error("unsupported_grant_type", "grant_type must be client_credentials", 400)
        if values.get("client_id") != cred.IMS_CLIENT_ID or values.get("client_secret") != cred.IMS_CLIENT_SECRET:
            return _ims_error("invalid_client", "invalid client_id or client_secret parameter", 401)
        scopes = {s for s in values.get("scope", "").replace(" ", ",").split(",") if s}
        if cred.IMS_SCOPE not in scopes:
            return _ims_error("invalid_scope", f"scope must include {cred.IMS_SCOPE}", 400)
        lifetime = int(self.config["ims_token_lifetime"])
        token = "eyJ" + secrets.token_urlsafe(48)
        with self._lock:
            self._tokens[token] = self.clock() + lifetime
        return JSONResponse({"access_token": token, "token_type": "bearer", "expires_in": lifetime})


def _ims_error(error: str, description: str, status: int) -> Response:
    return JSONResponse({"error": error, "error_description": description}, status_code=status)


def bearer(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None
