"""Channel maintenance: each triggered flow's channel registered, renewed before it expires, kept in the state.

A channel kind without `register` is *static*: configured in the source system by hand, at the same URL
(`{public_url}/hooks/{connection}/{channel}/{entity}`). It is live for as long as serve runs: nothing is sent,
renewed or unregistered, it never expires, and its row (status `static`, no token) is written only when it is new
or its URL moved. Signature items of a callback's `verify` get their keys loaded here (events/signature.py): a bad
key stops maintenance with a SetupError, before any channel is registered with a key we could not check.

Called by serve's tick (and `ml-connector channels renew`). A channel is (connection, channel kind, entity): the
source connection and entity of a flow with `trigger: {channel: ...}`. What the state keeps survives a restart, so
a live channel is renewed with its own id and token, never registered twice. An expired one, or one whose
registration failed, is registered anew (a new id and token). One channel failing is recorded (status and reason
in the state, a log line) and the others go on. The token is a secret: encrypted at rest, never logged.
"""

from __future__ import annotations

import logging
import secrets
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from ml_connector.config import ConnectorConfig, MappingConfig
from ml_connector.config.channel import ChannelConfig, ChannelRequest, VerifyRule
from ml_connector.errors import MlConnectorError, SetupError
from ml_connector.events.active import ActiveChannel
from ml_connector.events.signature import prepare_signatures
from ml_connector.http.client import ConnectorClient
from ml_connector.spec import Project
from ml_connector.store import State
from ml_connector.store.channels import ACTIVE, FAILED, RENEW_FAILED, StoredChannel
from ml_connector.sync.runner import Runner

log = logging.getLogger("ml_connector.events")
TOKEN_BYTES = 32  # secrets.token_urlsafe(32): 43 characters, within the 50 systems commonly allow
STATIC = "static"  # the status of a static channel's row: configured in the source system, never expires
STATIC_ID = "-"  # a static channel's id in the state (the source system names none to us)
NEVER = datetime.max.replace(tzinfo=UTC)  # a static channel's expiry in the receiver


class ChannelFailed(MlConnectorError):
    """A channel request that was answered, but not as success (its `ok_when` is false)."""


@dataclass(frozen=True)
class Watch:
    """A channel a triggered flow needs: where, through which kind, for which events."""

    connection: str
    channel: str
    entity: str
    config: ChannelConfig
    events: tuple[str, ...]

    @property
    def label(self) -> str:
        return f"{self.connection}/{self.channel}/{self.entity}"

    def url(self, public_url: str) -> str:
        return public_url.rstrip("/") + f"/hooks/{self.connection}/{self.channel}/{self.entity}"


def watches(project: Project) -> list[Watch]:
    """The channels the project's triggered flows need, once each, in flow order (validate checked them)."""
    found: dict[tuple[str, str, str], Watch] = {}
    for name in project.flows:
        config = project.flows[name].config
        kind = config.trigger.channel if isinstance(config, MappingConfig) and config.trigger is not None else None
        if not isinstance(config, MappingConfig) or kind is None:
            continue  # no trigger, or a stream's (events/stream*.py): no channel
        connection, entity = config.source.connection, config.source.entity
        connector = _connector(project, connection)
        channel = connector.channels.get(kind)
        events = connector.entities[entity].events if entity in connector.entities else None
        if channel is None or events is None:
            raise SetupError(f"flow {name}: no channel {kind!r} for entity {entity!r} of connection "
                             f"{connection} (run `ml-connector validate`)")
        key = (connection, kind, entity)
        found.setdefault(key, Watch(connection, kind, entity, channel, events.names))
    return list(found.values())


def _connector(project: Project, connection: str) -> ConnectorConfig:
    workspace = project.workspace
    entries: Mapping[str, Any] = (workspace.data.get("connections") or {}) if workspace else {}
    if connection not in entries:
        raise SetupError(f"the workspace has no connection named {connection!r}")
    config = project.connectors[entries[connection]["connector"]].config
    if not isinstance(config, ConnectorConfig):
        raise SetupError(f"connector of connection {connection} has spec problems; run `ml-connector validate`")
    return config


async def maintain_channels(project: Project, state: State, *, public_url: str, now: datetime,
                            transport: httpx.AsyncBaseTransport | None = None) -> list[ActiveChannel]:
    """Register missing channels, renew those within `renew_before` of expiry, register expired ones anew.

    Returns the live channels (for the receiver). `now` is the clock; `transport` replaces the network in tests.
    """
    runner = Runner(project, state, transport=transport)
    live: list[ActiveChannel] = []
    try:
        for watch in watches(project):
            checks = prepare_signatures(watch.config.callback.verify, runner.client(watch.connection).context,
                                        watch.label)
            if watch.config.register is None:
                active: ActiveChannel | None = _static(state, watch, watch.url(public_url), now)
            else:
                active = await _maintain(runner, state, watch, watch.config.register, public_url, now)
            if active is not None:
                live.append(replace(active, signatures=checks))
    finally:
        await runner.aclose()
    return live


def _static(state: State, watch: Watch, url: str, now: datetime) -> ActiveChannel:
    """A static channel: live at once; its row written only when new or moved (a renewal leaves it untouched)."""
    for index, rule in enumerate(watch.config.callback.verify):
        if isinstance(rule, VerifyRule):
            raise SetupError(f"channel {watch.label}: callback.verify[{index}] compares with {rule.equals}, which a "
                             "static channel (no register) does not have: verify its callbacks with a signature")
    stored = state.channels.get(watch.connection, watch.channel, watch.entity)
    if stored is None or (stored.status, stored.url, stored.channel_id) != (STATIC, url, STATIC_ID):
        state.channels.save(_row(watch, STATIC_ID, url, STATIC, None, None, now), None)
        log.info("channel %s: static, configured in the source system to call %s", watch.label, url)
    return ActiveChannel(connection=watch.connection, channel=watch.channel, entity=watch.entity, channel_id="",
                         token="", expires_at=NEVER, callback=watch.config.callback.runtime())


async def _maintain(runner: Runner, state: State, watch: Watch, register: ChannelRequest, public_url: str,
                    now: datetime) -> ActiveChannel | None:
    stored = state.channels.get(watch.connection, watch.channel, watch.entity)
    token = state.channels.token(watch.connection, watch.channel, watch.entity) if stored else None
    url = watch.url(public_url)
    expires_at = stored.expires_at if stored is not None and stored.status in (ACTIVE, RENEW_FAILED) else None
    if stored is not None and token is not None and expires_at is not None and expires_at > now:
        if expires_at - now > timedelta(seconds=watch.config.renew_before) and stored.url == url:
            return _active(watch, stored.channel_id, token, expires_at)
        moved = stored.url != url  # a new public URL: a renew request may not carry it, registering again does
        request = register if moved else watch.config.renew or register
        return await _send(runner, state, watch, request, stored.channel_id, token, url, now, stored)
    channel_id, token = new_channel_id(watch.config.id_kind), secrets.token_urlsafe(TOKEN_BYTES)
    return await _send(runner, state, watch, register, channel_id, token, url, now, None)


async def _send(runner: Runner, state: State, watch: Watch, request: ChannelRequest, channel_id: str, token: str,
                url: str, now: datetime, renewing: StoredChannel | None) -> ActiveChannel | None:
    """One register or renew request; its outcome stored. A failed renewal leaves the channel live until it
    expires; a failed registration leaves nothing live."""
    action = "renew" if renewing is not None else "register"
    asked = now + timedelta(seconds=watch.config.lifetime)
    context = channel_context(watch, channel_id, token, url, asked)
    try:
        body = await _call(runner.client(watch.connection), request, context)
        expires_at = _granted(request, body, now, watch.config.default_lifetime, watch.label)
    except MlConnectorError as exc:
        reason = str(exc).replace(token, "***")
        log.warning("channel %s: %s failed: %s", watch.label, action, reason)
        if renewing is not None:
            state.channels.save(_row(watch, channel_id, url, RENEW_FAILED, reason, renewing.expires_at, now), token)
            return _active(watch, channel_id, token, renewing.expires_at) if renewing.expires_at else None
        state.channels.save(_row(watch, channel_id, url, FAILED, reason, None, now), None)
        return None
    state.channels.save(_row(watch, channel_id, url, ACTIVE, None, expires_at, now), token)
    log.info("channel %s: %sed (id %s, expires %s)", watch.label, "renew" if renewing else "register", channel_id,
             expires_at.isoformat())
    return _active(watch, channel_id, token, expires_at)


def channel_context(watch: Watch, channel_id: str, token: str, url: str, expires_at: datetime) -> dict[str, Any]:
    """What a channel request's templates see as `channel` (a numeric id as a number, as such APIs take it)."""
    return {"id": int(channel_id) if watch.config.id_kind == "number" else channel_id, "token": token, "url": url,
            "expires_at": expires_at.astimezone(UTC).isoformat(timespec="seconds"), "events": list(watch.events),
            "entity": watch.entity}


async def _call(client: ConnectorClient, request: ChannelRequest, channel: Mapping[str, Any]) -> Any:
    """Send a channel request through the connection's client (auth, hosts, response rules, quotas apply)."""
    context = {**client.context, "channel": channel}
    try:
        path = str(request.path.evaluate(context))
        query = request.query.evaluate(context) or {}
        body = request.body.evaluate(context) if request.body is not None else None
    except Exception as exc:  # a template that fails is a spec error of this channel
        raise SetupError(f"a channel request template failed: {exc}") from exc
    reply = await client.request(request.method, path, params=query, json=body, reads=False)
    if request.ok_when is not None and not request.ok_when.evaluate(reply.body):
        raise ChannelFailed(f"{request.method} {path} -> HTTP {reply.status}: `{request.ok_when.source}` is not "
                            f"true of the answer")
    return reply.body


def _granted(request: ChannelRequest, body: Any, now: datetime, default_lifetime: float, label: str) -> datetime:
    """The expiry the answer grants; none (or one that does not parse): `default_lifetime` from now."""
    fallback = now + timedelta(seconds=default_lifetime)
    value = request.expiry.evaluate(body) if request.expiry is not None else None
    if value in (None, ""):
        return fallback
    try:
        if isinstance(value, (int, float)) and not isinstance(value, bool):  # epoch milliseconds
            return datetime.fromtimestamp(value / 1000, UTC)
        moment = datetime.fromisoformat(str(value))
    except (ValueError, OverflowError, OSError):
        log.warning("channel %s: the expiry %r does not parse; believed to last %g s", label, value, default_lifetime)
        return fallback
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).astimezone(UTC)


def new_channel_id(kind: str) -> str:
    """A fresh channel id: a 13-digit decimal number, or a UUID."""
    if kind == "uuid":
        return str(uuid.uuid4())
    return str(10**12 + secrets.randbelow(9 * 10**12))


def _row(watch: Watch, channel_id: str, url: str, status: str, reason: str | None, expires_at: datetime | None,
         now: datetime) -> StoredChannel:
    return StoredChannel(watch.connection, watch.channel, watch.entity, channel_id, url, status, reason, expires_at,
                         now)


def _active(watch: Watch, channel_id: str, token: str, expires_at: datetime) -> ActiveChannel:
    return ActiveChannel(connection=watch.connection, channel=watch.channel, entity=watch.entity,
                         channel_id=channel_id, token=token, expires_at=expires_at,
                         callback=watch.config.callback.runtime())


async def delete_channel(project: Project, state: State, connection: str, channel: str, entity: str, *,
                         transport: httpx.AsyncBaseTransport | None = None) -> StoredChannel:
    """Send the channel's unregister request (when its connector declares one), then forget it."""
    stored = state.channels.get(connection, channel, entity)
    if stored is None:
        raise SetupError(f"no channel {connection}/{channel}/{entity} is registered")
    config = _connector(project, connection).channels.get(channel)
    token = state.channels.token(connection, channel, entity) or ""
    if config is not None and config.unregister is not None and stored.status != FAILED:
        events = _connector(project, connection).entities.get(entity)
        watch = Watch(connection, channel, entity, config, events.events.names if events and events.events else ())
        runner = Runner(project, state, transport=transport)
        try:
            context = channel_context(watch, stored.channel_id, token, stored.url,
                                      stored.expires_at or stored.updated_at)
            await _call(runner.client(connection), config.unregister, context)
        finally:
            await runner.aclose()
    state.channels.forget(connection, channel, entity)
    log.info("channel %s/%s/%s: deleted (id %s)", connection, channel, entity, stored.channel_id)
    return stored
