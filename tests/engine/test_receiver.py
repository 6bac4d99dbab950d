"""The callback receiver: one endpoint per live channel; what it cannot verify never reaches the inbox."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from ml_connector.config.channel import CallbackConfig, VerifyRule
from ml_connector.events.active import ActiveChannel
from ml_connector.events.inbox import Inbox
from ml_connector.events.receiver import Receiver

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
TOKEN = "tok-9f8e7d6c5b4a"
ENDPOINT = "/hooks/crm/changes/account"
pytestmark = pytest.mark.anyio
CALLBACK = CallbackConfig(max_bytes=200, verify=(VerifyRule(path="token", equals="channel.token"),
                                                 VerifyRule(path="channel_id", equals="channel.id")),
                          ids="ids", operation="operation", answer_status=200, answer_body=None)


def channel(callback: CallbackConfig = CALLBACK, expires_at: datetime = NOW + timedelta(days=7),
            entity: str = "account") -> ActiveChannel:
    return ActiveChannel(connection="crm", channel="changes", entity=entity, channel_id="1700000000001",
                         token=TOKEN, expires_at=expires_at, callback=callback)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def inbox(tmp_path: Path) -> Iterator[Inbox]:
    box = Inbox.open(tmp_path / "state.duckdb.inbox")
    yield box
    box.close()


def make(inbox: Inbox, *channels: ActiveChannel) -> tuple[Receiver, list[int]]:
    woken: list[int] = []
    receiver = Receiver(inbox, now=lambda: NOW, on_stored=lambda: woken.append(1))
    receiver.update(list(channels) or [channel()])
    return receiver, woken


async def post(receiver: Receiver, path: str, body: Any = None, *, content: Any = None,
               headers: dict[str, str] | None = None) -> httpx.Response:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=receiver.app), base_url="http://hook") as client:
        if content is None:
            content = json.dumps(body).encode()
        return await client.post(path, content=content, headers=headers or {"content-type": "application/json"})


def good(**changes: Any) -> dict[str, Any]:
    return {"token": TOKEN, "channel_id": 1700000000001, "ids": ["10", 11], "operation": "update", **changes}


def pending(inbox: Inbox, entity: str = "account") -> list[tuple[str, str | None]]:
    return [(i.record_id, i.operation) for i in inbox.pending("crm", entity)]


async def test_a_verified_callback_stores_its_ids_answers_and_wakes_the_service(inbox: Inbox) -> None:
    receiver, woken = make(inbox)
    reply = await post(receiver, ENDPOINT, good())
    assert (reply.status_code, reply.content) == (200, b"")
    assert pending(inbox) == [("10", "update"), ("11", "update")]
    assert woken == [1]


async def test_the_answer_is_the_channels_configured_one(inbox: Inbox) -> None:
    answer = CallbackConfig(max_bytes=200, verify=CALLBACK.verify, ids="ids", operation=None, answer_status=202,
                            answer_body={"ok": True})
    receiver, _ = make(inbox, channel(answer))
    reply = await post(receiver, ENDPOINT, good())
    assert (reply.status_code, reply.json()) == (202, {"ok": True})
    assert pending(inbox) == [("10", None), ("11", None)]


async def test_each_live_channel_has_its_own_endpoint_and_others_are_404(inbox: Inbox) -> None:
    receiver, _ = make(inbox, channel(), channel(entity="contact"))
    assert (await post(receiver, "/hooks/crm/changes/contact", good(ids=["7"]))).status_code == 200
    assert (await post(receiver, "/hooks/crm/changes/deal", good())).status_code == 404
    assert (await post(receiver, "/", good())).status_code == 404
    assert pending(inbox, "contact") == [("7", "update")]
    assert pending(inbox) == []
    receiver.update([channel()])  # contact's channel is gone: so is its endpoint
    assert (await post(receiver, "/hooks/crm/changes/contact", good())).status_code == 404


@pytest.mark.parametrize("body", [
    good(token="tok-wrong-token!"), good(token=None), {k: v for k, v in good().items() if k != "token"},
    good(channel_id=1700000000002), good(channel_id=None), good(token=TOKEN + "x"), good(token=[TOKEN]),
])
async def test_an_unverified_callback_is_401_and_stores_nothing(inbox: Inbox, body: dict[str, Any],
                                                                caplog: pytest.LogCaptureFixture) -> None:
    receiver, woken = make(inbox)
    with caplog.at_level(logging.INFO, logger="ml_connector.events"):
        reply = await post(receiver, ENDPOINT, body)
    assert reply.status_code == 401
    assert pending(inbox) == [] and woken == []
    refusals = [r.getMessage() for r in caplog.records if r.name == "ml_connector.events"]
    assert len(refusals) == 1 and ENDPOINT in refusals[0] and "401" in refusals[0]
    assert TOKEN not in caplog.text and TOKEN not in reply.text


@pytest.mark.parametrize("content", [b"{not json", b"", b"\xff\xfe", b'"just a string"'])
async def test_a_malformed_body_is_400_and_stores_nothing(inbox: Inbox, content: bytes) -> None:
    receiver, _ = make(inbox)
    assert (await post(receiver, ENDPOINT, content=content)).status_code in (400, 401)
    assert pending(inbox) == []


async def test_not_json_is_400(inbox: Inbox) -> None:
    receiver, _ = make(inbox)
    assert (await post(receiver, ENDPOINT, content=b"{not json")).status_code == 400
    assert pending(inbox) == []


@pytest.mark.parametrize("ids", [[{"id": "10"}], [True], None, ["10", None], ["10", ""], {"id": "10"}, True])
async def test_ids_that_are_not_a_list_of_strings_or_numbers_are_400(inbox: Inbox, ids: Any) -> None:
    receiver, _ = make(inbox)
    assert (await post(receiver, ENDPOINT, good(ids=ids))).status_code == 400
    assert pending(inbox) == []


async def test_a_body_over_max_bytes_is_413_and_stores_nothing(inbox: Inbox) -> None:
    receiver, _ = make(inbox)
    big = good(ids=[str(n) for n in range(60)])
    assert len(json.dumps(big)) > CALLBACK.max_bytes
    assert (await post(receiver, ENDPOINT, big)).status_code == 413

    async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: read in chunks, stopped at the cap
        data = json.dumps(big).encode()
        for start in range(0, len(data), 50):
            yield data[start:start + 50]

    assert (await post(receiver, ENDPOINT, content=chunks())).status_code == 413
    assert pending(inbox) == []


async def _raw(receiver: Receiver, headers: list[tuple[bytes, bytes]], parts: list[bytes]) -> tuple[int, int]:
    """Call the ASGI app directly: its status, and how many body parts it asked for."""
    asked = 0
    status = 0

    async def receive() -> dict[str, Any]:
        nonlocal asked
        part = parts[asked] if asked < len(parts) else b""
        asked += 1
        return {"type": "http.request", "body": part, "more_body": asked < len(parts)}

    async def send(message: dict[str, Any]) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]

    scope = {"type": "http", "method": "POST", "path": ENDPOINT, "raw_path": ENDPOINT.encode(), "query_string": b"",
             "headers": headers, "http_version": "1.1", "scheme": "http", "server": ("hook", 80),
             "client": ("127.0.0.1", 1234), "root_path": "", "asgi": {"version": "3.0"}}
    await receiver.app(scope, receive, send)
    return status, asked


async def test_a_content_length_over_the_cap_is_refused_before_reading(inbox: Inbox) -> None:
    receiver, _ = make(inbox)
    status, asked = await _raw(receiver, [(b"content-length", b"100000")], [b"x" * 100] * 1000)
    assert (status, asked) == (413, 0)


async def test_a_stream_over_the_cap_stops_being_read_at_the_cap(inbox: Inbox) -> None:
    receiver, _ = make(inbox)
    status, asked = await _raw(receiver, [], [b"x" * 100] * 1000)
    assert status == 413 and asked <= 3  # 200 bytes allowed: the third part crosses the cap
    assert pending(inbox) == []


async def test_an_expired_channel_is_refused(inbox: Inbox, caplog: pytest.LogCaptureFixture) -> None:
    receiver, woken = make(inbox, channel(expires_at=NOW - timedelta(seconds=1)))
    with caplog.at_level(logging.INFO, logger="ml_connector.events"):
        reply = await post(receiver, ENDPOINT, good())
    assert reply.status_code == 410
    assert pending(inbox) == [] and woken == []
    assert any("expired" in r.getMessage() for r in caplog.records)


async def test_a_duplicate_notice_is_answered_ok_and_stores_no_second_row(inbox: Inbox) -> None:
    receiver, woken = make(inbox)
    assert (await post(receiver, ENDPOINT, good(ids=["10"]))).status_code == 200
    assert (await post(receiver, ENDPOINT, good(ids=["10"]))).status_code == 200
    assert pending(inbox) == [("10", "update")]
    assert woken == [1]  # nothing new: nothing to wake for


async def test_only_post_is_accepted(inbox: Inbox) -> None:
    receiver, _ = make(inbox)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=receiver.app), base_url="http://hook") as client:
        assert (await client.get(ENDPOINT)).status_code == 405
    assert pending(inbox) == []


async def test_a_caller_that_goes_away_mid_body_stores_nothing(inbox: Inbox) -> None:
    receiver, _ = make(inbox)
    sent: list[int] = []

    async def receive() -> dict[str, Any]:
        sent.append(1)
        if len(sent) == 1:
            return {"type": "http.request", "body": b'{"token": ', "more_body": True}
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            statuses.append(message["status"])

    statuses: list[int] = []
    scope = {"type": "http", "method": "POST", "path": ENDPOINT, "raw_path": ENDPOINT.encode(), "query_string": b"",
             "headers": [], "http_version": "1.1", "scheme": "http", "server": ("hook", 80),
             "client": ("127.0.0.1", 1234), "root_path": "", "asgi": {"version": "3.0"}}
    await receiver.app(scope, receive, send)
    assert statuses == [400]
    assert pending(inbox) == []


async def test_a_channel_without_verify_rules_takes_no_callback(inbox: Inbox) -> None:
    open_door = CallbackConfig(max_bytes=200, verify=(), ids="ids", operation=None, answer_status=200,
                               answer_body=None)
    receiver, _ = make(inbox, channel(open_door))
    assert (await post(receiver, ENDPOINT, good())).status_code == 401
    assert pending(inbox) == []
