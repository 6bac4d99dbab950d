"""OAuth 1.0a (RFC 5849): every request signed with consumer and token credentials that never expire.

The signature covers the request as it goes on the wire, so it is made in an httpx auth flow once the URL is final
(page parameters, a next-page link): the method, ``scheme://host[:port]/path``, every query pair, and a form body (a
JSON body is not signed). The query is first rewritten in one canonical form (every pair ``name=value``, RFC 3986
percent-encoding, ``%20`` for a space): a server that splits the raw query on ``&`` and ``=`` and then URL-decodes
reads exactly the pairs that were signed, where a raw ``=`` inside a value, a ``+`` or a pair without ``=`` would be
read differently (or dropped) and the signature refused. Each attempt is signed anew, with a fresh nonce and the
current time: a server refuses a nonce it has seen, so a retry must not reuse one.
"""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Callable, Generator, Iterable, Mapping, Sequence
from functools import cmp_to_key
from typing import Any, cast
from urllib.parse import quote, unquote_plus, urlparse

import httpx
from oauthlib.common import Request as OAuthRequest
from oauthlib.oauth1 import SIGNATURE_HMAC_SHA1, SIGNATURE_HMAC_SHA256, Client
from oauthlib.oauth1.rfc5849 import signature, utils

from ml_connector.config.connector import OAuth1AuthConfig
from ml_connector.http.errors import FatalError
from ml_connector.http.redact import REDACTOR

_FORM = "application/x-www-form-urlencoded"
_METHODS = {"HMAC-SHA256": SIGNATURE_HMAC_SHA256, "HMAC-SHA1": SIGNATURE_HMAC_SHA1}
_SIGNERS = {SIGNATURE_HMAC_SHA256: signature.sign_hmac_sha256_with_client,
            SIGNATURE_HMAC_SHA1: signature.sign_hmac_sha1_with_client}
_CREDENTIALS = ("consumer_key", "consumer_secret", "token", "token_secret")


class _Redacted(logging.Filter):
    """oauthlib logs the parameters and base string it signs (the consumer key, the token) at DEBUG: masked."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg, record.args = REDACTOR(record.getMessage()), ()
        return True


for _logger in ("oauthlib", "oauthlib.oauth1.rfc5849", "oauthlib.oauth1.rfc5849.signature"):
    logging.getLogger(_logger).addFilter(_Redacted())


def _nonce() -> str:
    """32 random hex digits: unique per request, and no longer than the 32-character column some servers keep each
    nonce seen in (a longer one is cut or refused)."""
    return secrets.token_hex(16)


class OAuth1Auth(httpx.Auth):
    """Signs every request of a connection (an httpx auth flow installed on its HTTP client)."""

    requires_request_body = True  # a form body is signed
    base_url: str | None = None

    def __init__(self, name: str, config: OAuth1AuthConfig, context: Mapping[str, Any], *,
                 clock: Callable[[], float] = time.time, nonce: Callable[[], str] = _nonce) -> None:
        """``clock`` (Unix time) and ``nonce`` are injectable for tests."""
        values = {key: str(getattr(config, key).evaluate(context) or "") for key in _CREDENTIALS}
        for key, value in values.items():
            if not value:
                raise FatalError(f"connection {name}: the OAuth 1.0a {key} is empty")
            REDACTOR.add(value)
        self.credentials = values
        self.method = _METHODS[config.signature_method]
        self.natural = config.parameter_order == "natural"
        realm = config.realm.evaluate(context) if config.realm is not None else None
        self.realm = str(realm) if realm else None
        self.clock = clock
        self.nonce = nonce

    async def apply(self, http: httpx.AsyncClient, headers: dict[str, str], params: dict[str, Any]) -> None:
        """Nothing to add here: the client signs each request as it sends it."""
        if http.auth is not self:
            http.auth = self

    def invalidate(self) -> None:
        """Tokens never expire and cannot be renewed: a refusal stands (the connector's rules say what follows)."""

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        self.sign(request)
        yield request

    def sign(self, request: httpx.Request) -> None:
        """Rewrite ``request``'s query in canonical form and set its Authorization header."""
        query = canonical_query(request.url.query)
        if query != request.url.query:
            request.url = request.url.copy_with(query=query or None)
        form = request.headers.get("content-type", "").startswith(_FORM)
        client = _Client(self.credentials["consumer_key"], client_secret=self.credentials["consumer_secret"],
                         resource_owner_key=self.credentials["token"],
                         resource_owner_secret=self.credentials["token_secret"], signature_method=self.method,
                         realm=self.realm, nonce=self.nonce(), timestamp=str(int(self.clock())))
        client.natural = self.natural
        body = request.content.decode() if form else None  # a JSON body is not signed
        try:
            _, signed, _ = client.sign(str(request.url), cast(Any, request.method), body=body,
                                       headers={"Content-Type": _FORM} if form else None)
        except (ValueError, UnicodeDecodeError) as exc:
            raise FatalError(f"{request.method} {request.url.path}: the request cannot be signed: {exc}") from None
        request.headers["Authorization"] = signed["Authorization"]


def canonical_query(raw: bytes) -> bytes:
    """The query's pairs, read as a form decoder reads them, written back with every name and value percent-encoded
    (RFC 3986 unreserved characters only left as they are); a pair without ``=`` gets an empty value."""
    if not raw:
        return raw
    try:
        text = raw.decode("ascii")
        pairs = [part.partition("=") for part in text.split("&") if part]
        decoded = [(unquote_plus(name, errors="strict"), unquote_plus(value, errors="strict"))
                   for name, _, value in pairs]
    except UnicodeError as exc:
        raise FatalError(f"a query that is not UTF-8 cannot be signed: {exc}") from None
    return "&".join(f"{quote(name, safe='')}={quote(value, safe='')}" for name, value in decoded).encode("ascii")


class _Client(Client):
    """oauthlib's client, optionally sorting the signed parameters in natural order."""

    natural = False

    def get_oauth_signature(self, request: OAuthRequest) -> str:
        if not self.natural:
            return str(super().get_oauth_signature(request))
        collected = [*request.oauth_params, *signature.collect_parameters(
            uri_query=urlparse(request.uri).query, body=request.body, headers={})]
        base = signature.signature_base_string(request.http_method, signature.base_string_uri(request.uri),
                                               natural_parameters(collected))
        return str(_SIGNERS[self.signature_method](base, self))


def natural_parameters(params: Iterable[Sequence[str]]) -> str:
    """RFC 5849's normalised parameters, but with the encoded names in natural order (`strnatcmp`): ``f%5B2%5D``
    before ``f%5B10%5D``. Servers that sort so sign a query with ten or more numbered groups differently."""
    encoded = sorted((utils.escape(k), utils.escape(v)) for k, v in params)  # equal names: by value

    def by_name(a: tuple[str, str], b: tuple[str, str]) -> int:
        return natural_compare(a[0], b[0])

    encoded.sort(key=cmp_to_key(by_name))  # stable: equal names keep their value order
    return "&".join(f"{k}={v}" for k, v in encoded)


def natural_compare(a: str, b: str) -> int:
    """PHP's ``strnatcmp``: digit runs compare as numbers (a run starting with 0 as a fraction, digit by digit);
    whitespace is skipped, and leading zeros at the very start."""
    if not a or not b:
        return (len(a) > len(b)) - (len(a) < len(b))
    i = j = 0
    la, lb = len(a), len(b)
    leading = True
    while True:
        if leading:
            while i + 1 < la and a[i] == "0" and a[i + 1].isdigit():
                i += 1
            while j + 1 < lb and b[j] == "0" and b[j + 1].isdigit():
                j += 1
            leading = False
        while i < la and a[i].isspace():
            i += 1
        while j < lb and b[j].isspace():
            j += 1
        ca, cb = a[i] if i < la else "", b[j] if j < lb else ""
        if _digit(ca) and _digit(cb):
            result, i, j = (_compare_left if "0" in (ca, cb) else _compare_right)(a, i, b, j)
            if result:
                return result
            if i >= la or j >= lb:
                return (i < la) - (j < lb)
            ca, cb = a[i], b[j]
        if ca != cb:
            return -1 if ca < cb else 1
        i += 1
        j += 1
        if i >= la or j >= lb:
            return (i < la) - (j < lb)


def _digit(char: str) -> bool:
    return "0" <= char <= "9" if char else False


def _compare_right(a: str, i: int, b: str, j: int) -> tuple[int, int, int]:
    """Two integers: the longer run wins, else the first differing digit."""
    bias = 0
    while True:
        da, db = i < len(a) and _digit(a[i]), j < len(b) and _digit(b[j])
        if not da and not db:
            return bias, i, j
        if not da:
            return -1, i, j
        if not db:
            return 1, i, j
        if not bias and a[i] != b[j]:
            bias = -1 if a[i] < b[j] else 1
        i += 1
        j += 1


def _compare_left(a: str, i: int, b: str, j: int) -> tuple[int, int, int]:
    """Two fractions (a run starting with 0): the first differing digit wins."""
    while True:
        da, db = i < len(a) and _digit(a[i]), j < len(b) and _digit(b[j])
        if not da and not db:
            return 0, i, j
        if not da:
            return -1, i, j
        if not db:
            return 1, i, j
        if a[i] != b[j]:
            return (-1 if a[i] < b[j] else 1), i, j
        i += 1
        j += 1
