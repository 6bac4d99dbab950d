"""A base URL named by a token response is used only on a host the connector allows (issue 17, case 1)."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
import pytest

from ml_connector.connection import Connection
from ml_connector.http.client import ConnectorClient
from ml_connector.http.errors import FatalError
from ml_connector.sandbox.workspace import connections
from ml_connector.spec.problems import SpecError
from ml_connector.store import State
from tests.engine import configs
from tests.engine.fakeapi import FakeAPI

OAUTH = {"type": "oauth2", "grant": "refresh_token", "token_url": "https://login.crm.example/oauth/token",
         "client_auth": "basic", "client_id": "app", "client_secret": "s-123456", "refresh_token": "r-000001",
         "base_url_from": "api_domain", "base_url_hosts": ["*.crm.example"]}


class HostRouter(httpx.AsyncBaseTransport):
    """One transport in front of several scripted APIs, chosen by host; every host asked for is kept."""

    def __init__(self, apps: dict[str, FakeAPI]) -> None:
        self.transports = {host: httpx.ASGITransport(app=api.app) for host, api in apps.items()}
        self.hosts: list[str] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.hosts.append(f"{request.url.scheme}://{request.url.netloc.decode()}")
        return await self.transports[request.url.host].handle_async_request(request)


class World:
    """The login host, the configured API host, the host a token names, and a host nobody should reach."""

    def __init__(self, named_base: str) -> None:
        self.login = FakeAPI().on("POST", "/oauth/token", 200, {"access_token": "a-123456", "expires_in": 3600,
                                                                 "api_domain": named_base})
        self.home = FakeAPI()
        self.named = FakeAPI()
        hosts = {"login.crm.example": self.login, "api.crm.example": self.home,
                 httpx.URL(named_base).host: self.named}
        self.router = HostRouter(hosts)
        self.state = State(":memory:")

    def client(self, *, sandbox: bool = False, auth: dict[str, Any] | None = None) -> ConnectorClient:
        config = configs.connector({"connector": "fake", "base_url": "https://api.crm.example/v2",
                                    "auth": {"oauth": auth or OAUTH}})
        connection = Connection("fake", config, {}, {}, None, sandbox=sandbox)
        return ConnectorClient(connection, self.state.credentials, transport=self.router)


@pytest.mark.parametrize("named", ["https://evil.test", "https://crm.example.evil.test", "https://evilcrm.example",
                                   "https://crm.example", "http://eu1.crm.example", "http://127.0.0.1:8123",
                                   "https://user@eu1.crm.example"])
def test_a_token_naming_a_host_the_connector_does_not_allow_is_refused_and_nothing_is_sent_there(
        named: str) -> None:
    world = World(named)
    client = world.client()
    with pytest.raises(FatalError) as caught:
        asyncio.run(client.request("GET", "/things"))
    assert str(caught.value) == (
        f"connection fake: the token response names the API base {named}, which this connector does not allow "
        "(https on a host matching *.crm.example, or the configured base URL's host); nothing was sent there")
    assert world.router.hosts == ["https://login.crm.example"]
    assert world.named.requests == [] and world.home.requests == []
    assert world.state.credentials.get("fake.access_token") is None  # the refused base is not cached


def test_a_token_naming_an_allowed_host_moves_the_calls_there() -> None:
    world = World("https://eu1.crm.example")
    world.named.on("GET", "/v2/things", 200, {"data": []})
    client = world.client()
    assert asyncio.run(client.request("GET", "/things")).body == {"data": []}
    assert world.router.hosts == ["https://login.crm.example", "https://eu1.crm.example"]
    assert world.named.calls()[0]["headers"]["authorization"] == "Bearer a-123456"
    cached = json.loads(world.state.credentials.get("fake.access_token") or "{}")
    assert cached["base_url"] == "https://eu1.crm.example"


def test_loopback_over_http_is_allowed_only_when_the_connection_is_a_sandbox() -> None:
    world = World("http://127.0.0.1:8123")
    world.named.on("GET", "/v2/things", 200, {"data": []})
    client = world.client(sandbox=True)
    assert asyncio.run(client.request("GET", "/things")).body == {"data": []}
    assert world.router.hosts == ["https://login.crm.example", "http://127.0.0.1:8123"]


def test_a_cached_token_whose_base_is_not_allowed_is_dropped_and_fetched_again() -> None:
    world = World("https://eu1.crm.example")
    world.named.on("GET", "/v2/things", 200, {"data": []})
    world.state.credentials.put("fake.access_token", json.dumps(
        {"token": "a-cached", "expires_at": 4e9, "lifetime": 3600, "base_url": "https://evil.test"}))
    client = world.client()
    assert asyncio.run(client.request("GET", "/things")).body == {"data": []}
    assert world.router.hosts == ["https://login.crm.example", "https://eu1.crm.example"]


def test_a_host_pattern_is_a_host_or_one_leading_wildcard_label() -> None:
    for pattern in ("evil.*", "*.*.example", "https://x.example", "*"):
        with pytest.raises(SpecError, match="base_url_hosts"):
            configs.connector({"auth": {"oauth": {**OAUTH, "base_url_hosts": [pattern]}}})


def test_sandbox_workspaces_say_their_connections_are_sandboxes() -> None:
    entries = connections({"qad": "http://127.0.0.1:1", "pipedrive": "http://127.0.0.1:2"}, "oauth2")
    assert {name: entry["sandbox"] for name, entry in entries.items()} == {"qad": True, "pipedrive": True}
