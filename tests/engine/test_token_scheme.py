"""Token grants whose APIs want their own Authorization word, and whose refusals use their own error codes."""

from __future__ import annotations

import asyncio

import pytest

from ml_connector.http.errors import ReauthorizeError
from tests.engine.test_token_hosts import OAUTH, World


def test_the_access_token_is_sent_with_the_scheme_the_connector_names() -> None:
    world = World("https://eu1.crm.example")
    world.named.on("GET", "/v2/things", 200, {"data": []})
    client = world.client(auth={**OAUTH, "token_scheme": "Crm-oauthtoken"})
    asyncio.run(client.request("GET", "/things"))
    assert world.named.calls()[0]["headers"]["authorization"] == "Crm-oauthtoken a-123456"


def test_a_refusal_the_connector_names_stops_the_connection_with_re_authorise() -> None:
    world = World("https://eu1.crm.example")
    world.login.answers.clear()
    world.login.queued.clear()
    world.login.on("POST", "/oauth/token", 200, {"error": "invalid_code"})  # a refusal sent as HTTP 200
    client = world.client(auth={**OAUTH, "reauthorize_errors": ["invalid_code", "invalid_client"]})
    with pytest.raises(ReauthorizeError) as caught:
        asyncio.run(client.request("GET", "/things"))
    assert "re-authorise this connection" in str(caught.value) and "invalid_code" in str(caught.value)
    assert world.named.requests == [] and world.home.requests == []
