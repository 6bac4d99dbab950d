"""A client-credentials token answer without `expires_in` (and without a refresh token): the token is cached and
used until the API refuses it (401); then one new token is fetched and the call retried once; a second 401 after
the renewal is fatal. Without `expires_in` the engine assumes a lifetime of one hour (renewed ahead of it)."""

from __future__ import annotations

import asyncio
import time

import pytest

from ml_connector.http.errors import FatalError
from ml_connector.store import State
from tests.engine.fakeapi import FakeAPI
from tests.engine.test_client import BASE, make_client

SPEC = {"auth": {"cc": {"type": "oauth2", "grant": "client_credentials", "token_url": BASE + "/oauth/token",
                        "client_auth": "basic", "client_id": "app", "client_secret": "{{ secrets.secret }}",
                        "refresh_ahead": 300}}}
EXPIRED = [{"message": "Session expired or invalid", "errorCode": "INVALID_SESSION_ID"}]


def token(value: str) -> dict[str, str]:
    return {"access_token": value, "token_type": "Bearer", "issued_at": "1767225600123", "scope": "api"}


@pytest.fixture(autouse=True)
def secret_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAKE_CLIENT_SECRET", "s-123456")


def bearers(api: FakeAPI) -> list[str]:
    return [c["headers"]["authorization"] for c in api.calls("GET")]


def test_a_token_without_expiry_is_used_until_a_401_then_renewed_once_and_the_call_retried() -> None:
    api = FakeAPI().on("POST", "/oauth/token", 200, token("t-1")).on("POST", "/oauth/token", 200, token("t-2"))
    api.on("GET", "/v2/x", 200, {"n": 1}).on("GET", "/v2/x", 200, {"n": 2}).on("GET", "/v2/x", 401, EXPIRED) \
       .on("GET", "/v2/x", 200, {"n": 3})
    client = make_client(api, SPEC, {"secret": "env:FAKE_CLIENT_SECRET"}, state=State(":memory:"))

    async def three() -> list[object]:
        return [(await client.request("GET", "/x")).body for _ in range(3)]

    assert asyncio.run(three()) == [{"n": 1}, {"n": 2}, {"n": 3}]
    assert bearers(api) == ["Bearer t-1", "Bearer t-1", "Bearer t-1", "Bearer t-2"]
    assert len(api.calls("POST", "/oauth/token")) == 2
    assert all("grant_type=client_credentials" in c["body"] for c in api.calls("POST", "/oauth/token"))
    assert client.stats.retries == 0  # a renewal, not a retry after a glitch
    assert 3000 < client.auth.expires_at - time.time() <= 3600  # assumed: one hour, renewed ahead of it


def test_a_second_401_after_the_renewal_is_fatal() -> None:
    api = FakeAPI().on("POST", "/oauth/token", 200, token("t-1")).on("POST", "/oauth/token", 200, token("t-2"))
    api.on("GET", "/v2/x", 401, EXPIRED)
    client = make_client(api, SPEC, {"secret": "env:FAKE_CLIENT_SECRET"}, state=State(":memory:"))
    with pytest.raises(FatalError, match="credentials refused after renewal"):
        asyncio.run(client.request("GET", "/x"))
    assert bearers(api) == ["Bearer t-1", "Bearer t-2"]
    assert len(api.calls("POST", "/oauth/token")) == 2
