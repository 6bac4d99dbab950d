"""OAuth 1.0a (`type: oauth1`): every request signed over the URL as sent, checked by a server-side verifier that
decodes the request the ASGI app received the way a PHP server does (split the raw query on `&`, then `=`, then
urldecode) and recomputes the signature with oauthlib. Also: a client-credentials grant against a token endpoint on
another host (form body with a comma-separated scope, a day-long token renewed ahead of expiry)."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
import re
from collections.abc import Awaitable, Callable, Iterator, MutableMapping
from types import SimpleNamespace
from typing import Any, cast
from urllib.parse import parse_qsl, unquote_plus

import httpx
import pytest
from oauthlib.oauth1.rfc5849 import signature, utils

from ml_connector.config.connector import OAuth1AuthConfig
from ml_connector.connection import Connection
from ml_connector.errors import MlConnectorError
from ml_connector.http import auth as auth_module
from ml_connector.http.client import ConnectorClient
from ml_connector.http.errors import FatalError, RecordError
from ml_connector.http.oauth1 import OAuth1Auth, natural_compare
from ml_connector.http.transport import HostRoutingTransport
from ml_connector.store import State
from tests.engine import configs
from tests.engine.fakeapi import FakeAPI

BASE = "http://shop.test/rest/default"
CK, CS, TK, TS = "ck3c0nsumerkey0000000000000000aa", "cs3c0nsumersecret00000000000000b", \
    "tk3acc3sstoken000000000000000000c", "ts3tokensecret000000000000000000d"
SECRETS = {"ck": "env:T_CK", "cs": "env:T_CS", "tk": "env:T_TK", "ts": "env:T_TS"}
AUTH = {"type": "oauth1", "consumer_key": "{{ secrets.ck }}", "consumer_secret": "{{ secrets.cs }}",
        "token": "{{ secrets.tk }}", "token_secret": "{{ secrets.ts }}"}
NOW = 1767225600
Scope = MutableMapping[str, Any]
FILTER = "searchCriteria[filter_groups][0][filters][0]"


@pytest.fixture(autouse=True)
def credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in (("T_CK", CK), ("T_CS", CS), ("T_TK", TK), ("T_TS", TS)):
        monkeypatch.setenv(name, value)


def _natural_key(text: str) -> tuple[Any, ...]:
    """The test's own natural order (digit runs as numbers): enough for the bracketed names used here."""
    return tuple(int(part) if part.isdigit() else part for part in re.split(r"(\d+)", text))


class Verifier:
    """An OAuth 1.0a server: recomputes each request's signature from what it received; refuses a bad signature or
    a nonce used before with 401, else answers from ``answers`` (the last repeats)."""

    def __init__(self, *answers: tuple[int, Any], method: str = "SHA-256", order: str = "bytes") -> None:
        self.answers = list(answers) or [(200, {"ok": True})]
        self.method = method
        self.order = order
        self.nonces: set[str] = set()
        self.seen: list[dict[str, Any]] = []

    async def __call__(self, scope: Scope, receive: Callable[[], Awaitable[Scope]],
                       send: Callable[[Scope], Awaitable[None]]) -> None:
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        headers = {k.decode().lower(): v.decode() for k, v in scope["headers"]}
        query = scope["query_string"].decode("ascii")
        pairs = [part.split("=") for part in query.split("&")] if query else []
        php = {unquote_plus(p[0]): unquote_plus(p[1]) for p in pairs if len(p) == 2}  # PHP ignores other pairs
        oauth = {k: utils.unescape(v) for k, v in utils.parse_authorization_header(headers["authorization"])}
        form = body.decode() if headers.get("content-type", "").startswith("application/x-www-form-urlencoded") \
            else None
        params = signature.collect_parameters(uri_query=query, body=form,
                                              headers={"Authorization": headers["authorization"]})
        url = signature.base_string_uri(f"{scope['scheme']}://{headers['host']}{scope['raw_path'].decode()}")
        base = signature.signature_base_string(scope["method"], url, self._normalize(params))
        secrets = SimpleNamespace(client_secret=CS, resource_owner_secret=TS)
        sign = signature.sign_hmac_sha256_with_client if self.method == "SHA-256" \
            else signature.sign_hmac_sha1_with_client
        valid = sign(base, secrets) == oauth.get("oauth_signature") and oauth.get("oauth_nonce") not in self.nonces
        self.nonces.add(oauth.get("oauth_nonce", ""))
        self.seen.append({"method": scope["method"], "query": query, "php": php, "qsl": dict(parse_qsl(query)),
                          "pairs_ok": all(len(p) == 2 for p in pairs), "oauth": oauth, "valid": valid,
                          "authorization": headers["authorization"], "body": body.decode()})
        status, payload = (self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]) if valid else \
            (401, {"message": "The signature is invalid. Verify and try again."})
        data = json.dumps(payload).encode()
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-type", b"application/json")]})
        await send({"type": "http.response.body", "body": data})

    def _normalize(self, params: list[tuple[str, str]]) -> str:
        if self.order == "bytes":
            return signature.normalize_parameters(cast(Any, params))  # the stub says dict; it takes pairs
        encoded = sorted(((utils.escape(k), utils.escape(v)) for k, v in params),
                         key=lambda kv: (_natural_key(kv[0]), kv[1]))
        return "&".join(f"{k}={v}" for k, v in encoded)


def ticking(start: int = NOW) -> Iterator[int]:
    now = start
    while True:
        yield now
        now += 7


def make_client(app: Any, **auth: Any) -> ConnectorClient:
    config = configs.connector({"connector": "shop", "base_url": BASE, "retries": 2,
                                "auth": {"integration": {**AUTH, **auth}}})
    connection = Connection("shop", config, {}, SECRETS, None)

    async def sleep(seconds: float) -> None:
        return None

    client = ConnectorClient(connection, State(":memory:").credentials, transport=httpx.ASGITransport(app=app),
                             sleep=sleep)
    assert isinstance(client.auth, OAuth1Auth)
    clock = ticking()
    nonces = iter(f"nonce{n:027d}" for n in range(1, 1000))
    client.auth.clock = lambda: float(next(clock))
    client.auth.nonce = lambda: next(nonces)
    return client


def test_a_bracketed_date_filter_signs_as_the_server_decodes_it() -> None:
    server = Verifier((200, {"items": [], "total_count": 0}))
    client = make_client(server)
    params = {f"{FILTER}[field]": "updated_at", f"{FILTER}[value]": "2026-01-01 00:00:00",
              f"{FILTER}[condition_type]": "gteq", "searchCriteria[pageSize]": 100}
    reply = asyncio.run(client.request("GET", "/V1/orders", params=params))
    assert reply.body == {"items": [], "total_count": 0}
    [seen] = server.seen
    assert seen["valid"] and seen["pairs_ok"]
    assert seen["php"] == seen["qsl"] == {f"{FILTER}[field]": "updated_at", f"{FILTER}[value]": "2026-01-01 00:00:00",
                                          f"{FILTER}[condition_type]": "gteq", "searchCriteria[pageSize]": "100"}
    assert seen["authorization"].startswith("OAuth ")
    assert seen["oauth"] == {"oauth_consumer_key": CK, "oauth_nonce": "nonce" + "0" * 26 + "1",
                             "oauth_signature_method": "HMAC-SHA256", "oauth_timestamp": str(NOW),
                             "oauth_token": TK, "oauth_version": "1.0",
                             "oauth_signature": seen["oauth"]["oauth_signature"]}


def test_values_with_equals_percent_ampersand_and_spaces_sign_as_decoded() -> None:
    server = Verifier()
    client = make_client(server)
    tricky = {"q": "a=b", f"{FILTER}[value]": "%25 100% & more+", "sku": "x = y == z"}
    asyncio.run(client.request("GET", "/V1/products", params=tricky))
    [seen] = server.seen
    assert seen["valid"] and seen["pairs_ok"]  # every pair has exactly one raw "=": none is dropped by the server
    assert seen["php"] == seen["qsl"] == tricky


def test_a_query_the_path_carries_is_encoded_so_the_server_reads_what_was_signed() -> None:
    server = Verifier()
    client = make_client(server)
    asyncio.run(client.request("GET", "/V1/orders?searchCriteria[currentPage]=2&flag&note=a b"))
    [seen] = server.seen
    assert seen["valid"] and seen["pairs_ok"]
    assert seen["php"] == {"searchCriteria[currentPage]": "2", "flag": "", "note": "a b"}


def test_every_request_has_a_fresh_nonce_and_timestamp_and_a_retry_is_signed_again() -> None:
    server = Verifier((503, {"message": "busy"}), (200, {"n": 1}), (200, {"n": 2}))
    client = make_client(server)

    async def two() -> list[Any]:
        return [(await client.request("GET", "/V1/orders", params={"a": "1"})).body for _ in range(2)]

    assert asyncio.run(two()) == [{"n": 1}, {"n": 2}]
    assert [s["valid"] for s in server.seen] == [True, True, True]
    assert [s["oauth"]["oauth_nonce"][-1] for s in server.seen] == ["1", "2", "3"]
    assert [s["oauth"]["oauth_timestamp"] for s in server.seen] == [str(NOW), str(NOW + 7), str(NOW + 14)]
    assert client.stats.retries == 1


def test_the_default_nonce_is_random_and_the_timestamp_is_the_clock() -> None:
    config = configs.connector({"auth": {"o": AUTH}}).auth["o"]
    assert isinstance(config, OAuth1AuthConfig)
    signer = OAuth1Auth("shop", config, {"secrets": {"ck": CK, "cs": CS, "tk": TK, "ts": TS}}, clock=lambda: NOW + 0.9)
    requests = [httpx.Request("GET", "http://shop.test/x") for _ in range(2)]
    for request in requests:
        signer.sign(request)
    headers = [dict(utils.parse_authorization_header(r.headers["Authorization"])) for r in requests]
    assert headers[0]["oauth_nonce"] != headers[1]["oauth_nonce"]
    assert all(re.fullmatch(r"[0-9a-f]{32}", h["oauth_nonce"]) for h in headers)
    assert {h["oauth_timestamp"] for h in headers} == {str(NOW)}


def test_json_bodies_are_not_signed_and_form_bodies_are() -> None:
    server = Verifier((200, {"id": 7}))
    client = make_client(server)
    signer = client.auth
    assert isinstance(signer, OAuth1Auth)
    assert asyncio.run(client.request("POST", "/V1/orders", json={"entity": {"status": "new"}})).body == {"id": 7}
    assert server.seen[-1]["valid"]

    async def form() -> int:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=server), auth=signer) as http:
            answer = await http.post("http://shop.test/rest/default/V1/x?z=1", data={"name": "a b", "k": "="})
            return answer.status_code

    assert asyncio.run(form()) == 200
    assert server.seen[-1]["valid"] and server.seen[-1]["body"] == "name=a+b&k=%3D"
    # the same form body, had it not been signed: the verifier (which includes it) refuses
    assert asyncio.run(_post_form_unsigned(signer, Verifier())) == 401


async def _post_form_unsigned(signer: OAuth1Auth, server: Verifier) -> int:
    """A form POST whose Authorization was computed over the URL alone (as for a JSON body)."""
    request = httpx.Request("POST", "http://shop.test/rest/default/V1/x", data={"name": "a b"})
    bare = httpx.Request("POST", "http://shop.test/rest/default/V1/x")
    signer.sign(bare)
    request.headers["Authorization"] = bare.headers["Authorization"]
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=server)) as http:
        return (await http.send(request)).status_code


def test_hmac_sha1_and_a_realm() -> None:
    server = Verifier(method="SHA-1")
    client = make_client(server, signature_method="HMAC-SHA1", realm="{{ 'shop' }}")
    asyncio.run(client.request("GET", "/V1/orders", params={"a": "b c"}))
    [seen] = server.seen
    assert seen["valid"] and seen["oauth"]["oauth_signature_method"] == "HMAC-SHA1"
    assert seen["authorization"].startswith('OAuth realm="shop"')


def _many_groups() -> dict[str, str]:
    return {f"searchCriteria[filter_groups][{g}][filters][0][value]": str(g) for g in range(12)}


@pytest.mark.parametrize("order", ["bytes", "natural"])
def test_the_parameter_order_is_the_servers(order: str) -> None:
    right, wrong = Verifier(order=order), Verifier(order="natural" if order == "bytes" else "bytes")
    for server, valid in ((right, True), (wrong, False)):
        client = make_client(server, parameter_order=order)
        with pytest.raises(FatalError) if not valid else contextlib.nullcontext():
            asyncio.run(client.request("GET", "/V1/orders", params=_many_groups()))
        assert [s["valid"] for s in server.seen] == ([True] if valid else [False, False])


def test_natural_compare_orders_as_php_strnatcmp() -> None:
    names = ["img12.png", "img10.png", "IMG0.png", "img2.png", "img1.png", "a%5B10%5D", "a%5B2%5D", "a1", "a%",
             "x01", "x1", "x001", ""]
    ordered = sorted(names, key=functools.cmp_to_key(natural_compare))
    assert ordered == ["", "IMG0.png", "a%", "a%5B2%5D", "a%5B10%5D", "a1", "img1.png", "img2.png", "img10.png",
                       "img12.png", "x001", "x01", "x1"]


def test_a_401_is_an_auth_error_and_no_credential_reaches_a_message_or_the_log(
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    server = Verifier(method="SHA-1")  # the server expects another method: every signature is refused
    client = make_client(server)
    with pytest.raises(FatalError, match="credentials refused") as refused:
        asyncio.run(client.request("GET", "/V1/orders"))
    assert len(server.seen) == 2  # signed again with a fresh nonce once, as for any credential; no token request
    echo = Verifier((400, {"message": f"bad consumer {CK} token {TK} secret {CS}&{TS}"}))
    with pytest.raises(RecordError) as echoed:
        asyncio.run(make_client(echo).request("POST", "/V1/orders", json={}))
    for text in (str(refused.value), str(echoed.value), caplog.text):
        assert not any(secret in text for secret in (CK, CS, TK, TS))
    assert "***" in str(echoed.value)


def test_every_credential_is_required() -> None:
    for missing in ("consumer_key", "consumer_secret", "token", "token_secret"):
        with pytest.raises(MlConnectorError):
            configs.connector({"auth": {"o": {k: v for k, v in AUTH.items() if k != missing}}})
    with pytest.raises(MlConnectorError):
        configs.connector({"auth": {"o": {**AUTH, "signature_method": "PLAINTEXT"}}})


# --- client credentials against a token endpoint on another host (form body, comma-separated scope) ---

SCOPE = "openid,AdobeID,email,profile,additional_info.roles,commerce.accs"


def test_client_credentials_on_another_host_with_a_scope_list_renewed_ahead_of_a_day(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("T_ID", "client-id-0001")
    now = [float(NOW)]
    monkeypatch.setattr(auth_module.time, "time", lambda: now[0])
    ims, api = FakeAPI(), FakeAPI()
    ims.on("POST", "/ims/token/v3", 200, {"access_token": "at-000001", "token_type": "bearer", "expires_in": 86399})
    ims.on("POST", "/ims/token/v3", 200, {"access_token": "at-000002", "token_type": "bearer", "expires_in": 86399})
    api.on("GET", "/tenant/V1/orders", 200, {"items": []})
    spec = {"connector": "saas", "base_url": "https://api.shop.test/tenant", "auth": {"ims": {
        "type": "oauth2", "grant": "client_credentials", "token_url": "https://ims.login.test/ims/token/v3",
        "client_auth": "body", "client_id": "{{ secrets.id }}", "client_secret": "{{ secrets.cs }}",
        "scope": SCOPE}}}
    connection = Connection("saas", configs.connector(spec), {}, {"id": "env:T_ID", "cs": "env:T_CS"}, None)
    transport = HostRoutingTransport({"ims.login.test": ims.app, "api.shop.test": api.app})
    client = ConnectorClient(connection, State(":memory:").credentials, transport=transport)

    async def at(moments: list[float]) -> None:
        for moment in moments:
            now[0] = moment
            await client.request("GET", "/V1/orders")

    asyncio.run(at([NOW, NOW + 86399 - 61, NOW + 86399 - 59]))  # renewed 60 s (refresh_ahead) before expiry
    forms = [dict(parse_qsl(c["body"])) for c in ims.calls("POST")]
    assert forms == [{"grant_type": "client_credentials", "client_id": "client-id-0001", "client_secret": CS,
                      "scope": SCOPE}] * 2
    assert all(c["headers"]["content-type"] == "application/x-www-form-urlencoded" for c in ims.calls("POST"))
    assert [c["headers"]["authorization"] for c in api.calls("GET")] == ["Bearer at-000001"] * 2 + \
        ["Bearer at-000002"]


def test_a_paged_read_signs_each_page_with_its_own_query() -> None:
    from ml_connector.http.reader import EntityReader

    server = Verifier((200, {"items": [{"id": 1}, {"id": 2}], "total_count": 3}),
                      (200, {"items": [{"id": 3}], "total_count": 3}))
    paginator = {"type": "page", "param": "searchCriteria[currentPage]", "total": "total_count",
                 "limit": {"param": "searchCriteria[pageSize]", "max": 2}}
    read = {"path": "/V1/orders", "records": "items", "paginator": "search",
            "params": {f"{FILTER}[field]": "updated_at", f"{FILTER}[value]": "{{ since }}",
                       f"{FILTER}[condition_type]": "gteq"},
            "incremental": {"field": "updated_at", "format": "%Y-%m-%d %H:%M:%S"}}
    config = configs.connector({"connector": "shop", "base_url": BASE, "auth": {"integration": AUTH},
                                "paginators": {"search": paginator},
                                "entities": {"order": {"key": "id", "read": read}}})
    connection = Connection("shop", config, {}, SECRETS, None)
    client = ConnectorClient(connection, State(":memory:").credentials, transport=httpx.ASGITransport(app=server))
    reader = EntityReader(client, "order", config.entities["order"])

    async def go() -> list[Any]:
        return [r["id"] async for page in reader.pages(since="2026-01-01T00:00:00Z") for r in page]

    assert asyncio.run(go()) == [1, 2, 3]
    assert [s["valid"] for s in server.seen] == [True, True]
    assert [s["php"] for s in server.seen] == [
        {f"{FILTER}[field]": "updated_at", f"{FILTER}[value]": "2026-01-01 00:00:00",
         f"{FILTER}[condition_type]": "gteq", "searchCriteria[currentPage]": str(n), "searchCriteria[pageSize]": "2"}
        for n in (1, 2)]
