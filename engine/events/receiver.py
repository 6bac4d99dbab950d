"""The callback receiver: one `POST` endpoint per live channel, answering within milliseconds.

A callback is only a trigger: its ids go to the inbox and the flow re-reads the records itself. So the receiver
does the least that is safe: it bounds the body (``callback.max_bytes``), checks its signatures (on the raw body,
events/signature.py), parses it, checks every verify rule in constant time, reads the ids, stores them and answers
with the channel's answer at once: the flow runs later, in serve's tick, which the callback only wakes. Whatever
it cannot verify (too large, not JSON, a wrong or missing token or signature, an expired channel) is refused without
touching the inbox, with one log line that names the endpoint and the reason, never the secret.

It never opens the state database (another process may hold it): it verifies against the channels serve hands it
after each channel maintenance (`update`).
"""

from __future__ import annotations

import hmac
import json
import logging
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import Any

import jmespath
from jmespath.exceptions import JMESPathError
from starlette.applications import Starlette
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from ml_connector.config.channel import SignatureRule, VerifyRule
from ml_connector.events.active import ActiveChannel
from ml_connector.events.inbox import Inbox
from ml_connector.events.signature import SignatureRefused
from ml_connector.http.redact import REDACTOR

log = logging.getLogger("ml_connector.events")
METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]


class Refused(Exception):
    """A callback not taken: the status answered and the reason logged (no secret in it)."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


def _text(value: Any) -> str | None:
    """A callback value as text for comparison: strings and numbers (an id may arrive as a JSON number)."""
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        return None
    return value if isinstance(value, str) else str(value)


def _expected(channel: ActiveChannel, name: str) -> str:
    """The channel's value a verify rule names (`channel.token` or `channel.id`); a channel without it (a static
    one) takes nothing, for an empty value would match an empty field."""
    value = {"channel.token": channel.token, "channel.id": channel.channel_id}.get(name)
    if value == "":
        raise Refused(401, f"verify rule compares with {name}, which this channel does not have")
    if value is not None:
        return value
    raise Refused(401, f"verify rule compares with {name!r}, which is not channel.token or channel.id")


def _search(path: str, payload: Any, what: str) -> Any:
    try:
        return jmespath.search(path, payload)
    except JMESPathError as exc:  # a spec the loader let through: refuse, never crash the receiver
        raise Refused(400, f"{what} {path!r} cannot be evaluated: {exc}") from exc


def verify_signatures(channel: ActiveChannel, headers: Any, body: bytes) -> None:
    """Every signature item holds over the raw body, else Refused(401). A channel whose signature items were not
    prepared (no loaded key for each) takes nothing."""
    wanted = sum(isinstance(rule, SignatureRule) for rule in channel.callback.verify)
    if len(channel.signatures) != wanted:
        raise Refused(401, "the channel's signature keys were not loaded")
    try:
        for check in channel.signatures:
            check.check(headers, body)
    except SignatureRefused as exc:
        raise Refused(401, str(exc)) from None


def verify(channel: ActiveChannel, payload: Any) -> None:
    """Every rule holds (constant-time comparison), else Refused(401). A channel without rules takes nothing: the
    endpoint is public, and an unauthenticated callback could make us read any record id."""
    if not channel.callback.verify:
        raise Refused(401, "the channel declares no callback.verify rule; no callback is taken unverified")
    for rule in channel.callback.verify:
        if not isinstance(rule, VerifyRule):
            continue  # a signature: checked on the raw body (verify_signatures)
        found = _text(_search(rule.path, payload, "verify path")) if isinstance(payload, dict) else None
        expected = _expected(channel, rule.equals)
        # compare_digest on bytes: its time does not depend on where the values differ
        if found is None or not hmac.compare_digest(found.encode(), expected.encode()):
            raise Refused(401, f"{rule.path} is missing or does not match {rule.equals}")


def read_ids(channel: ActiveChannel, payload: Any) -> tuple[list[str], str | None]:
    """The record ids and the operation a verified callback names: a list, or one id (a string or number, taken as
    a list of one); Refused(400) when an id is missing, empty or not a string or number."""
    callback = channel.callback
    ids = _search(callback.ids, payload, "ids")
    if _text(ids) is not None:
        ids = [ids]
    if not isinstance(ids, list) or any(_text(i) in (None, "") for i in ids):
        raise Refused(400, f"ids at {callback.ids!r} are not a list of strings or numbers, or one is empty")
    operation = _text(_search(callback.operation, payload, "operation")) if callback.operation else None
    return [str(_text(i)) for i in ids], operation


async def read_body(request: Request, limit: int) -> bytes:
    """The body, read in chunks and given up at ``limit`` bytes; a declared length over it is refused unread."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.strip().isdigit() and int(declared) > limit:
        raise Refused(413, f"Content-Length {int(declared)} is over callback.max_bytes ({limit})")
    body = bytearray()
    try:
        async for chunk in request.stream():
            body.extend(chunk)
            if len(body) > limit:
                raise Refused(413, f"body is over callback.max_bytes ({limit})")
    except ClientDisconnect as exc:
        raise Refused(400, "the caller went away before the body was complete") from exc
    return bytes(body)


def parse(body: bytes) -> Any:
    try:
        return json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise Refused(400, "body is not JSON") from exc


class Receiver:
    """The ASGI app (``app``) and the channels it answers for."""

    def __init__(self, inbox: Inbox, *, now: Callable[[], datetime] = lambda: datetime.now(UTC),
                 on_stored: Callable[[], None] | None = None) -> None:
        """``on_stored``: called when a callback added ids (serve wakes its loop with it)."""
        self.inbox = inbox
        self.now = now
        self.on_stored = on_stored
        self._channels: dict[str, ActiveChannel] = {}
        self.app = Starlette(routes=[Route("/{path:path}", self._handle, methods=METHODS)])

    def update(self, channels: Iterable[ActiveChannel]) -> None:
        """Answer for exactly these channels from now on (serve calls this after each channel maintenance)."""
        self._channels = {channel.endpoint: channel for channel in channels}

    @property
    def endpoints(self) -> list[str]:
        return sorted(self._channels)

    async def _handle(self, request: Request) -> Response:
        path = request.url.path
        channel = self._channels.get(path)
        if channel is None:
            return self._refuse(path, Refused(404, "no live channel has this endpoint"))
        if request.method != "POST":
            return self._refuse(path, Refused(405, f"{request.method} is not a callback"))
        try:
            if channel.expires_at < self.now():
                raise Refused(410, f"the channel expired at {channel.expires_at.isoformat()}")
            body = await read_body(request, channel.callback.max_bytes)
            verify_signatures(channel, request.headers, body)
            payload = parse(body)
            verify(channel, payload)
            ids, operation = read_ids(channel, payload)
        except Refused as refused:
            return self._refuse(path, refused)
        added = self.inbox.add(channel, ids, operation, self.now())
        log.debug("callback %s: %d ids, %d new", path, len(ids), added)
        if added and self.on_stored is not None:
            self.on_stored()
        callback = channel.callback
        if callback.answer_body is None:
            return Response(status_code=callback.answer_status)
        return JSONResponse(callback.answer_body, status_code=callback.answer_status)

    @staticmethod
    def _refuse(path: str, refused: Refused) -> Response:
        log.warning("callback refused (%d): %s: %s", refused.status, path[:200], REDACTOR(refused.reason))
        return Response(status_code=refused.status)
