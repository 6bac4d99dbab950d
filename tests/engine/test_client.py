"""The connector client against a scripted API: rules, retries, rate limits, auth renewal, paging, paths."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest

from ml_connector.connection import Connection
from ml_connector.http.client import ConnectorClient
from ml_connector.http.errors import FatalError, ReauthorizeError, RecordError
from ml_connector.http.reader import EntityReader
from ml_connector.store import State
from tests.engine import configs
from tests.engine.fakeapi import FakeAPI

BASE = "http://api.test"


def make_client(api: FakeAPI, spec: dict[str, Any], secrets: dict[str, str] | None = None,
                state: State | None = None, waits: list[float] | None = None) -> ConnectorClient:
    config = configs.connector({"connector": "fake", "base_url": BASE + "/v2", "retries": 3, **spec})
    connection = Connection("fake", config, {}, secrets or {}, None)
    recorded = waits if waits is not None else []

    async def sleep(seconds: float) -> None:
        recorded.append(seconds)

    return ConnectorClient(connection, (state or State(":memory:")).credentials,
                           transport=httpx.ASGITransport(app=api.app), sleep=sleep)


API_KEY = {"auth": {"key": {"type": "api_key", "header": "x-key", "value": "{{ secrets.key }}"}}}


@pytest.fixture(autouse=True)
def key_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAKE_KEY", "k-123456")
    monkeypatch.setenv("FAKE_CLIENT_SECRET", "s-123456")
    monkeypatch.setenv("FAKE_REFRESH", "r-000001")


def test_rate_limit_waits_for_the_header_then_succeeds() -> None:
    api = FakeAPI().on("GET", "/v2/things", 429, {"error": "slow down"}, {"x-reset": "3"}) \
                   .on("GET", "/v2/things", 429, {"error": "slow down"}, {"x-reset": "2"}) \
                   .on("GET", "/v2/things", 200, {"data": [1]})
    waits: list[float] = []
    spec = {**API_KEY, "responses": [{"when": {"status": 429}, "do": "rate_limited",
                                      "wait": {"header": "x-reset", "unit": "seconds"}}]}
    client = make_client(api, spec, {"key": "env:FAKE_KEY"}, waits=waits)
    reply = asyncio.run(client.request("GET", "/things"))
    assert reply.body == {"data": [1]}
    assert [round(w) for w in waits] == [3, 2]
    assert client.stats.rate_limited == 2 and client.stats.reads == 3
    assert api.calls()[0]["headers"]["x-key"] == "k-123456"


def test_error_inside_a_200_body_is_a_record_error_with_message() -> None:
    api = FakeAPI().on("POST", "/v2/things", 200, {"success": False, "errors": [{"message": "bad code"}]})
    spec = {**API_KEY, "responses": [{"when": {"status": 200, "body": "success == `false`"}, "do": "record_error",
                                      "message": "{{ body.errors[0].message }}"}]}
    client = make_client(api, spec, {"key": "env:FAKE_KEY"})
    with pytest.raises(RecordError, match="bad code"):
        asyncio.run(client.request("POST", "/things", json={}))


def test_server_errors_are_retried_then_give_up() -> None:
    api = FakeAPI().on("GET", "/v2/flaky", 503, {"error": "busy"}).on("GET", "/v2/flaky", 200, {"ok": 1})
    client = make_client(api, API_KEY, {"key": "env:FAKE_KEY"})
    assert asyncio.run(client.request("GET", "/flaky")).body == {"ok": 1}
    api2 = FakeAPI().on("GET", "/v2/down", 503, {"error": "busy"})
    client2 = make_client(api2, API_KEY, {"key": "env:FAKE_KEY"})
    with pytest.raises(Exception, match="503"):
        asyncio.run(client2.request("GET", "/down"))
    assert len(api2.calls()) == 4  # first try + 3 retries


def test_a_path_cannot_leave_the_base_url() -> None:
    client = make_client(FakeAPI(), API_KEY, {"key": "env:FAKE_KEY"})
    for path in ("http://evil.test/v2/x", "/../admin", BASE + "/other"):
        with pytest.raises(FatalError, match="leaves the connection's base URL"):
            asyncio.run(client.request("GET", path))


OAUTH = {"auth": {"oauth": {"type": "oauth2", "grant": "refresh_token", "token_url": BASE + "/oauth/token",
                            "client_auth": "basic", "client_id": "app", "client_secret": "{{ secrets.secret }}",
                            "refresh_token": "{{ secrets.refresh }}", "base_url_from": "api_domain"}}}
OAUTH_SECRETS = {"secret": "env:FAKE_CLIENT_SECRET", "refresh": "env:FAKE_REFRESH"}


def test_oauth_refreshes_on_401_and_stores_the_rotated_refresh_token() -> None:
    api = FakeAPI()
    api.on("POST", "/oauth/token", 200, {"access_token": "a-1", "expires_in": 3600, "refresh_token": "r-000002",
                                         "api_domain": BASE})
    api.on("POST", "/oauth/token", 200, {"access_token": "a-2", "expires_in": 3600, "refresh_token": "r-000003",
                                         "api_domain": BASE})
    api.on("GET", "/v2/me", 401, {"error": "expired"}).on("GET", "/v2/me", 200, {"id": 1})
    state = State(":memory:")
    client = make_client(api, OAUTH, OAUTH_SECRETS, state=state)
    assert asyncio.run(client.request("GET", "/me")).body == {"id": 1}
    tokens = api.calls("POST", "/oauth/token")
    assert len(tokens) == 2
    assert "refresh_token=r-000001" in tokens[0]["body"] and "refresh_token=r-000002" in tokens[1]["body"]
    assert tokens[0]["headers"]["authorization"].startswith("Basic ")
    assert state.credentials.get("fake.refresh_token") == "r-000003"
    assert api.calls("GET", "/v2/me")[-1]["headers"]["authorization"] == "Bearer a-2"
    raw = state.db.fetchall("SELECT ciphertext FROM credentials")
    assert raw and all("r-00000" not in row[0] and "a-2" not in row[0] for row in raw)


def test_invalid_grant_asks_for_reauthorisation_without_leaking_the_token() -> None:
    api = FakeAPI().on("POST", "/oauth/token", 400, {"error": "invalid_grant", "message": "bad r-000001"})
    client = make_client(api, OAUTH, OAUTH_SECRETS)
    with pytest.raises(ReauthorizeError, match="re-authorise") as caught:
        asyncio.run(client.request("GET", "/me"))
    assert "r-000001" not in str(caught.value)


def test_session_login_token_used_in_header() -> None:
    api = FakeAPI().on("POST", "/login", 200, {"session": {"jwt": "jwt-abcdef"}, "ttl": 600}) \
                   .on("GET", "/v2/x", 200, {"ok": True})
    spec = {"auth": {"s": {"type": "session", "login": {"url": BASE + "/login", "json": {"u": "me"}},
                           "token": "session.jwt", "expires_in": "ttl",
                           "header": {"Authorization": "JWT {{ token }}"}}}}
    client = make_client(api, spec)
    asyncio.run(client.request("GET", "/x"))
    asyncio.run(client.request("GET", "/x"))
    assert len(api.calls("POST", "/login")) == 1
    assert api.calls("GET", "/v2/x")[0]["headers"]["authorization"] == "JWT jwt-abcdef"


def test_reader_follows_cursor_and_expands_children_in_batches() -> None:
    api = FakeAPI()
    api.on("GET", "/v2/deals", 200, {"data": [{"id": 1}, {"id": 2}], "next": "c2"})
    api.on("GET", "/v2/deals", 200, {"data": [{"id": 3}], "next": None})
    api.on("GET", "/v2/lines", 200, {"data": [{"deal": 1, "n": "a"}, {"deal": 2, "n": "b"}, {"deal": 1, "n": "c"}]})
    api.on("GET", "/v2/lines", 200, {"data": [{"deal": 3, "n": "d"}]})
    spec = {**API_KEY, "paginators": {"c": {"type": "cursor", "param": "cursor", "next": "next",
                                            "limit": {"param": "limit", "max": 500}}}}
    client = make_client(api, spec, {"key": "env:FAKE_KEY"})
    entity = {"key": "id", "read": {"path": "/deals", "records": "data", "paginator": "c",
                                    "incremental": {"param": "since", "field": "t", "format": "%Y-%m-%dT%H:%M:%SZ"}},
              "expand": {"lines": {"path": "/lines", "params": {"ids": "{{ keys | join(',') }}"}, "batch": 100,
                                   "records": "data", "parent_key": "deal"}}}
    reader = EntityReader(client, "deal", configs.entity(entity))

    async def collect() -> list[list[dict[str, Any]]]:
        return [page async for page in reader.pages(since="2026-01-02T03:04:05.678Z", expand=["lines"])]

    pages = asyncio.run(collect())
    assert [[r["id"] for r in p] for p in pages] == [[1, 2], [3]]
    assert [line["n"] for line in pages[0][0]["lines"]] == ["a", "c"]
    deal_calls = api.calls("GET", "/v2/deals")
    assert deal_calls[0]["params"] == {"since": "2026-01-02T03:04:05Z", "limit": "500"}
    assert deal_calls[1]["params"]["cursor"] == "c2"
    assert [c["params"]["ids"] for c in api.calls("GET", "/v2/lines")] == ["1,2", "3"]


def test_wait_given_as_epoch_seconds() -> None:
    import time

    api = FakeAPI().on("GET", "/v2/t", 429, {}, {"x-reset-at": str(int(time.time()) + 5)}).on("GET", "/v2/t", 200, {})
    waits: list[float] = []
    spec = {**API_KEY, "responses": [{"when": {"status": 429}, "do": "rate_limited",
                                      "wait": {"header": "x-reset-at", "unit": "epoch"}}]}
    asyncio.run(make_client(api, spec, {"key": "env:FAKE_KEY"}, waits=waits).request("GET", "/t"))
    assert len(waits) == 1 and 3.5 <= waits[0] <= 5.2


def test_rate_limit_sent_as_a_403_body_code_is_recognised() -> None:
    api = FakeAPI().on("GET", "/v2/q", 403, [{"errorCode": "REQUEST_LIMIT_EXCEEDED"}]).on("GET", "/v2/q", 200, {})
    waits: list[float] = []
    spec = {**API_KEY, "responses": [{"when": {"status": 403, "body": "[?errorCode=='REQUEST_LIMIT_EXCEEDED']"},
                                      "do": "rate_limited", "wait": {"seconds": 7}}]}
    asyncio.run(make_client(api, spec, {"key": "env:FAKE_KEY"}, waits=waits).request("GET", "/q"))
    assert [round(w) for w in waits] == [7]


def test_client_credentials_token_is_cached_and_renewed_ahead_of_expiry() -> None:
    api = FakeAPI().on("POST", "/oauth/token", 200, {"access_token": "cc-1", "expires_in": 3600}) \
                   .on("GET", "/v2/x", 200, {})
    spec = {"auth": {"cc": {"type": "oauth2", "grant": "client_credentials", "token_url": BASE + "/oauth/token",
                            "client_auth": "body", "client_id": "app", "client_secret": "{{ secrets.secret }}",
                            "refresh_ahead": 300}}}
    state = State(":memory:")
    client = make_client(api, spec, {"secret": "env:FAKE_CLIENT_SECRET"}, state=state)
    for _ in range(3):
        asyncio.run(client.request("GET", "/x"))
    calls = api.calls("POST", "/oauth/token")
    assert len(calls) == 1 and "grant_type=client_credentials" in calls[0]["body"]
    assert "client_secret=s-123456" in calls[0]["body"]
    client.auth.expires_at = __import__("time").time() + 200  # inside the refresh_ahead window
    asyncio.run(client.request("GET", "/x"))
    assert len(api.calls("POST", "/oauth/token")) == 2


def test_secrets_echoed_by_an_api_never_reach_error_messages() -> None:
    api = FakeAPI().on("POST", "/v2/t", 400, {"error": "token k-123456 is not allowed here"})
    client = make_client(api, API_KEY, {"key": "env:FAKE_KEY"})
    with pytest.raises(RecordError) as caught:
        asyncio.run(client.request("POST", "/t", json={}))
    assert "k-123456" not in str(caught.value) and "***" in str(caught.value)


def test_custom_fields_are_read_by_label_and_written_by_key() -> None:
    from ml_connector.http.catalog import FieldCatalog, LazyCatalog

    api = FakeAPI()
    api.on("GET", "/v2/fields", 200, {"data": [{"key": "a" * 40, "name": "ERP Id"}], "more": True})
    api.on("GET", "/v2/fields", 200, {"data": [{"key": "b" * 40, "name": "Region"}], "more": False})
    api.on("GET", "/v2/orgs", 200, {"data": [{"id": 1, "cf": {"a" * 40: "C1", "b" * 40: "EU", "other": 3}}]})
    spec = {**API_KEY, "paginators": {"o": {"type": "offset", "param": "start", "limit": {"param": "limit", "max": 1},
                                            "has_more": "more"}}}
    client = make_client(api, spec, {"key": "env:FAKE_KEY"})
    custom = {"object": "cf", "catalog": {"path": "/fields", "records": "data", "paginator": "o", "key": "key",
                                          "label": "name"}}
    org = configs.entity({"key": "id", "read": {"path": "/orgs", "records": "data"}, "custom_fields": custom})
    reader = EntityReader(client, "org", org, LazyCatalog(client, "org", org.custom_fields))

    async def read() -> list[dict[str, Any]]:
        return [r async for page in reader.pages() for r in page]

    [record] = asyncio.run(read())
    assert record["cf"] == {"ERP Id": "C1", "Region": "EU", "other": 3}
    assert [c["params"]["start"] for c in api.calls("GET", "/v2/fields")] == ["0", "1"]
    assert org.custom_fields is not None
    catalog = asyncio.run(FieldCatalog.load(client, "org", org.custom_fields))
    assert catalog.to_keys({"name": "x", "cf": {"Region": "US"}}) == {"name": "x", "cf": {"b" * 40: "US"}}
    with pytest.raises(FatalError, match="no custom field labelled 'Regoin'"):
        catalog.to_keys({"cf": {"Regoin": "US"}})


@pytest.mark.parametrize("junk", ["<html><h1>502 Bad Gateway</h1></html>", ["not", "an", "object"]])
def test_a_token_answer_that_is_not_a_json_object_is_retried_like_a_bad_gateway(junk: Any) -> None:
    api = FakeAPI()
    api.on("POST", "/oauth/token", 200, junk)  # a proxy's page in a 200, once
    api.on("POST", "/oauth/token", 200, {"access_token": "a-1", "expires_in": 3600, "api_domain": BASE})
    api.on("GET", "/v2/me", 200, {"id": 1})
    waits: list[float] = []
    client = make_client(api, OAUTH, OAUTH_SECRETS, waits=waits)
    assert asyncio.run(client.request("GET", "/me")).body == {"id": 1}
    assert [(c["method"], c["path"]) for c in api.requests] == [
        ("POST", "/oauth/token"), ("POST", "/oauth/token"), ("GET", "/v2/me")]
    assert len(waits) == 1


def test_a_header_whose_template_renders_empty_is_not_sent() -> None:
    """One spec serves two deployments: a header only one of them needs is left out where its setting is empty."""
    api = FakeAPI().on("GET", "/v2/things", 200, {"data": []})
    client = make_client(api, {**API_KEY, "headers": {"Store": "default", "x-api-key": "{{ '' }}"}})
    asyncio.run(client.request("GET", "/things"))
    sent = api.requests[0]["headers"]
    assert sent["store"] == "default" and "x-api-key" not in sent
