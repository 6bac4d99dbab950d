"""An identity endpoint that takes the client credentials in the token URL's query (`client_auth: query`), asked
with GET or POST (`token_method`): no Authorization header and no form body go to it. Its `expires_in` is the
seconds the token has left, and the token is renewed `refresh_ahead` before that."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from ml_connector.http.errors import ReauthorizeError
from ml_connector.http.redact import REDACTOR
from ml_connector.spec.problems import SpecError
from ml_connector.store import State
from tests.engine.fakeapi import FakeAPI
from tests.engine.test_client import BASE, make_client

CC = {"type": "oauth2", "grant": "client_credentials", "token_url": BASE + "/identity/oauth/token",
      "client_auth": "query", "client_id": "app-1", "client_secret": "{{ secrets.secret }}", "refresh_ahead": 60}
QUERY = {"grant_type": "client_credentials", "client_id": "app-1", "client_secret": "s-123456"}


@pytest.fixture(autouse=True)
def secret_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAKE_CLIENT_SECRET", "s-123456")


def token(value: str, left: int = 3599) -> dict[str, Any]:
    return {"access_token": value, "token_type": "bearer", "expires_in": left, "scope": "apis@example.com"}


def client_for(api: FakeAPI, **auth: Any) -> Any:
    return make_client(api, {"auth": {"cc": {**CC, **auth}}}, {"secret": "env:FAKE_CLIENT_SECRET"},
                       state=State(":memory:"))


def token_calls(api: FakeAPI) -> list[tuple[str, dict[str, str], str, str | None]]:
    return [(c["method"], c["params"], c["body"], c["headers"].get("authorization"))
            for c in api.calls(path="/identity/oauth/token")]


def test_get_sends_the_credentials_in_the_query_only() -> None:
    api = FakeAPI().on("GET", "/identity/oauth/token", 200, token("t-1")).on("GET", "/v2/x", 200, {"n": 1})
    client = client_for(api, token_method="GET")
    assert asyncio.run(client.request("GET", "/x")).body == {"n": 1}
    assert token_calls(api) == [("GET", QUERY, "", None)]
    assert api.calls(path="/v2/x")[0]["headers"]["authorization"] == "Bearer t-1"
    assert REDACTOR("s-123456") != "s-123456"


def test_post_is_the_default_and_still_sends_the_query_with_an_empty_body() -> None:
    api = FakeAPI().on("POST", "/identity/oauth/token", 200, token("t-1")).on("GET", "/v2/x", 200, {"n": 1})
    asyncio.run(client_for(api).request("GET", "/x"))
    assert token_calls(api) == [("POST", QUERY, "", None)]


def test_expires_in_is_the_time_left_and_the_token_is_renewed_ahead_of_it() -> None:
    api = FakeAPI().on("GET", "/identity/oauth/token", 200, token("t-1", 3599)) \
                   .on("GET", "/identity/oauth/token", 200, token("t-2", 3599))
    api.on("GET", "/v2/x", 200, {"n": 1})
    client = client_for(api, token_method="GET")

    async def call() -> None:
        await client.request("GET", "/x")

    asyncio.run(call())
    assert 3590 < client.auth.expires_at - time.time() <= 3599
    client.auth.expires_at = time.time() + 59  # within refresh_ahead: renewed before the next call
    asyncio.run(call())
    asyncio.run(call())
    assert [c["headers"]["authorization"] for c in api.calls(path="/v2/x")] == ["Bearer t-1", "Bearer t-2",
                                                                               "Bearer t-2"]
    assert len(token_calls(api)) == 2


def test_bad_client_credentials_ask_to_reauthorise() -> None:
    api = FakeAPI().on("GET", "/identity/oauth/token", 401,
                       {"error": "invalid_client", "error_description": "Bad client credentials"})
    with pytest.raises(ReauthorizeError, match="re-authorise this connection"):
        asyncio.run(client_for(api, token_method="GET").request("GET", "/x"))
    assert token_calls(api) == [("GET", QUERY, "", None)]


def test_a_token_get_needs_the_credentials_in_the_query() -> None:
    with pytest.raises(SpecError, match="client_auth"):
        client_for(FakeAPI(), token_method="GET", client_auth="body")


def test_the_same_token_handed_back_with_less_time_left_is_kept_without_asking_on_every_call() -> None:
    """Marketo answers a renewal before expiry with the same token and the seconds it has left: the token is used
    until half of that is gone, so the last minutes cost a few identity calls, never one per call."""
    api = FakeAPI().on("GET", "/identity/oauth/token", 200, token("t-1", 3599)) \
                   .on("GET", "/identity/oauth/token", 200, token("t-1", 59))
    for _ in range(5):
        api.on("GET", "/v2/x", 200, {"n": 1})
    client = client_for(api, token_method="GET")

    async def call() -> None:
        await client.request("GET", "/x")

    asyncio.run(call())
    client.auth.expires_at = time.time() + 59
    for _ in range(4):
        asyncio.run(call())
    assert len(token_calls(api)) == 2
    assert {c["headers"]["authorization"] for c in api.calls(path="/v2/x")} == {"Bearer t-1"}


def test_a_token_with_no_time_left_is_expired_not_an_hour_long() -> None:
    api = FakeAPI().on("GET", "/identity/oauth/token", 200, token("t-1", 0)) \
                   .on("GET", "/identity/oauth/token", 200, token("t-2", 3599))
    api.on("GET", "/v2/x", 200, {"n": 1}).on("GET", "/v2/x", 200, {"n": 1})
    client = client_for(api, token_method="GET")

    async def call() -> None:
        await client.request("GET", "/x")

    asyncio.run(call())
    asyncio.run(call())
    assert [c["headers"]["authorization"] for c in api.calls(path="/v2/x")] == ["Bearer t-1", "Bearer t-2"]
