"""A change-stream subscriber: the other kind of change feed, where the engine connects out instead of being called.

One subscriber follows one topic (one entity of one connection's stream). It asks for `batch` events at a time and
again only when they have all come (flow control), decodes each payload with the schema the event names (fetched
once per schema id), and puts the ids of changed records into the inbox, the same one callbacks fill: the flows
the entity triggers re-read those records by id. Gap events carry ids but no data; they are queued the same way.
An id that names no record but all of them (an overflow) marks the entity's flows for a full read instead.

After each batch its replay id is kept (and a keepalive's latest id), and a new subscription resumes after it. A
kept id the source refuses as invalid or expired (the `invalid_replay` error code), or one older than the
source's retention, cannot be resumed from: the flows are marked for a full read and the subscription starts at
the latest event. UNAVAILABLE (or a stream that ends, or one whose first request could not be sent) is retried
with a doubling wait; UNAUTHENTICATED asks the connection for a new token once per failure. Anything else stops
the subscriber with the status and error code.
"""

from __future__ import annotations

import asyncio
import importlib
import logging
from collections import deque
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from types import ModuleType
from typing import Any, Protocol

import grpc

from ml_connector.config.stream import StreamConfig
from ml_connector.errors import MlConnectorError, SetupError
from ml_connector.events.inbox import Watched
from ml_connector.events.stream_decode import SchemaCache, changed_field_names
from ml_connector.events.stream_state import Positions, StreamTopic

log = logging.getLogger("ml_connector.events")
SEEN = 100  # recent events kept for `seen` (diagnostics, tests)
PRESET_LATEST, PRESET_CUSTOM = "LATEST", "CUSTOM"

__all__ = ["Access", "ChangeEvent", "StreamFailed", "StreamInbox", "StreamSubscriber", "StreamTopic"]


class StreamFailed(MlConnectorError):
    """The stream was refused for a reason another attempt will not change (a status named with its error code)."""


class Access(Protocol):
    """The connection's template context (`connection`, `secrets`, `stream`: token, base_url); ``renew``: a new
    token first (the last one was refused)."""

    async def context(self, renew: bool) -> Mapping[str, Any]: ...


class StreamInbox(Protocol):
    """What the subscriber needs of the inbox."""

    def add(self, channel: Watched, ids: list[str], operation: str | None, received_at: datetime) -> int: ...


@dataclass(frozen=True)
class ChangeEvent:
    """One decoded event, as far as the engine reads it."""

    replay_id: bytes
    change_type: str
    ids: tuple[str, ...]
    changed_fields: tuple[str, ...]
    origin: str | None


def load_protocol(module: str) -> tuple[ModuleType, ModuleType]:
    """The generated message and stub modules (``<module>_pb2``, ``<module>_pb2_grpc``)."""
    try:
        return importlib.import_module(f"{module}_pb2"), importlib.import_module(f"{module}_pb2_grpc")
    except ImportError as exc:
        raise SetupError(f"stream proto {module!r}: the generated modules cannot be imported ({exc})") from exc


def transport_security(config: StreamConfig, context: Mapping[str, Any], label: str) -> grpc.ChannelCredentials | None:
    """TLS credentials for the target (roots from `ca_file` when given), or None when `tls` says false."""
    try:
        tls = config.tls.evaluate(context)
        ca_file = str(config.ca_file.evaluate(context) or "") if config.ca_file is not None else ""
    except Exception as exc:  # a template that fails is a spec error of this stream
        raise SetupError(f"stream {label}: the tls or ca_file template failed: {exc}") from exc
    if not isinstance(tls, bool):
        text = str(tls).strip().lower()
        if text not in ("true", "false", "1", "0", "yes", "no", ""):
            raise SetupError(f"stream {label}: tls is {tls!r}, not true or false")
        tls = text in ("true", "1", "yes", "")  # empty: the stricter choice
    if not tls:
        return None
    if not ca_file:
        return grpc.ssl_channel_credentials()
    try:
        with open(ca_file, "rb") as roots:
            return grpc.ssl_channel_credentials(root_certificates=roots.read())
    except OSError as exc:
        raise SetupError(f"stream {label}: cannot read ca_file {ca_file}: {exc.strerror}") from exc


def _trailer(exc: grpc.aio.AioRpcError, key: str) -> str | None:
    for name, value in exc.trailing_metadata() or ():
        if name == key:
            return value if isinstance(value, str) else bytes(value).decode(errors="replace")
    return None


class _Ended(Exception):
    """The stream ended without a status error (the server closed it, or `reconnect` was asked)."""


class StreamSubscriber:
    """Follows one topic until cancelled (or until a refusal no retry can change: `StreamFailed`)."""

    def __init__(self, config: StreamConfig, topic: StreamTopic, *, inbox: StreamInbox, positions: Positions,
                 access: Access, now: Callable[[], datetime] = lambda: datetime.now(UTC),
                 sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
                 on_stored: Callable[[], None] | None = None) -> None:
        """``on_stored``: called when a batch added ids to the inbox (serve wakes its loop with it)."""
        self.config = config
        self.topic = topic
        self.inbox = inbox
        self.positions = positions
        self.access = access
        self.now = now
        self.sleep = sleep
        self.on_stored = on_stored
        self.pb, self.pb_grpc = load_protocol(config.proto)
        self.seen: deque[ChangeEvent] = deque(maxlen=SEEN)
        self.schemas = SchemaCache(self._fetch_schema)
        self._stub: Any = None
        self._metadata: tuple[tuple[str, str], ...] = ()
        self._call: Any = None
        self._reconnecting = False
        self._responded = False  # the current subscription has had a response
        self._topic_checked = False

    # --- the loop ------------------------------------------------------------------------------------------------

    async def run(self) -> None:
        failures = 0  # in a row, without a response in between
        renew = renewed = False  # renewed: a new token was asked for since the last response
        while True:
            error: grpc.aio.AioRpcError | None = None
            try:
                await self._session(renew)
            except _Ended:
                pass
            except grpc.aio.AioRpcError as exc:
                error = exc
            if self._responded:
                failures, renewed = 0, False
            renew = False
            if self._reconnecting:
                self._reconnecting = False
                continue
            if error is not None:
                code, error_code = error.code(), _trailer(error, "error-code")
                if error_code == self.config.invalid_replay:
                    self._restart_from_latest(f"the source refused the stored replay id ({error_code})")
                    continue
                if code == grpc.StatusCode.UNAUTHENTICATED:
                    if renewed:
                        raise StreamFailed(f"stream {self.topic.label}: credentials refused after renewal "
                                           f"({error_code or code.name})") from error
                    log.info("stream %s: the token was refused; asking for a new one", self.topic.label)
                    renew = renewed = True
                    continue
                if code != grpc.StatusCode.UNAVAILABLE:
                    raise StreamFailed(f"stream {self.topic.label}: {code.name}"
                                       f"{f' ({error_code})' if error_code else ''}: {error.details()}") from error
            failures += 1
            wait = min(self.config.backoff_max, self.config.backoff * 2 ** (failures - 1))
            log.info("stream %s: reconnecting in %g s", self.topic.label, wait)
            await self.sleep(wait)

    async def reconnect(self) -> None:
        """End the current subscription; the loop subscribes again at once, from the kept position."""
        self._reconnecting = True
        if self._call is not None:
            self._call.cancel()

    async def _session(self, renew: bool) -> None:
        self._responded = False
        context = dict(await self.access.context(renew))
        try:
            target = str(self.config.target.evaluate(context))
            metadata = self.config.metadata.evaluate(context) or {}
        except Exception as exc:  # a template that fails is a spec error of this stream
            raise SetupError(f"stream {self.topic.label}: a template failed: {exc}") from exc
        self._metadata = tuple((str(key), str(value)) for key, value in metadata.items())
        security = transport_security(self.config, context, self.topic.label)
        channel = (grpc.aio.secure_channel(target, security) if security is not None
                   else grpc.aio.insecure_channel(target))
        async with channel:
            self._stub = self.pb_grpc.PubSubStub(channel)
            if not self._topic_checked:
                info = await self._stub.GetTopic(self.pb.TopicRequest(topic_name=self.topic.topic),
                                                 metadata=self._metadata)
                if not info.can_subscribe:
                    raise StreamFailed(f"stream {self.topic.label}: topic {self.topic.topic} cannot be subscribed to")
                self._topic_checked = True
            await self._subscribe()

    async def _subscribe(self) -> None:
        self._call = call = self._stub.Subscribe(metadata=self._metadata)  # written to as it goes (flow control)
        try:
            try:
                await call.write(self._first_request())
            except grpc.aio.AioRpcError as exc:
                # grpc reports a send on a call the server has already ended as INTERNAL from the write, not with
                # the server's status: the stream closed, which the loop retries (the next try reads the status)
                if exc.code() != grpc.StatusCode.INTERNAL:
                    raise
                log.info("stream %s: the subscription closed before its first request went out", self.topic.label)
                raise _Ended() from exc
            while (response := await call.read()) is not grpc.aio.EOF:
                self._responded = True
                await self._handle(response)
                if response.events and response.pending_num_requested <= 0:  # drained: ask for the next batch
                    await call.write(self.pb.FetchRequest(topic_name=self.topic.topic,
                                                          num_requested=self.config.batch))
        except asyncio.CancelledError:  # `reconnect` cancelled the call; a cancelled task goes on cancelling
            task = asyncio.current_task()
            if not self._reconnecting or (task is not None and task.cancelling()):
                raise
        finally:
            self._call = None
            call.cancel()
        raise _Ended()

    def _first_request(self) -> Any:
        position = self.positions.get(self.topic)
        if position is not None and self.now() - position.saved_at > timedelta(seconds=self.config.retention):
            self._restart_from_latest(f"the stored replay id is from {position.saved_at.isoformat()}, older than "
                                      f"the source keeps events")
            position = None
        if position is None:
            return self.pb.FetchRequest(topic_name=self.topic.topic, replay_preset=PRESET_LATEST,
                                        num_requested=self.config.batch)
        return self.pb.FetchRequest(topic_name=self.topic.topic, replay_preset=PRESET_CUSTOM,
                                    replay_id=position.replay_id, num_requested=self.config.batch)

    def _restart_from_latest(self, reason: str) -> None:
        if self.positions.get(self.topic) is None:
            raise StreamFailed(f"stream {self.topic.label}: {reason}, and no replay id was asked for")
        log.warning("stream %s: %s; the flows %s will read everything, the subscription starts at the latest event",
                    self.topic.label, reason, ", ".join(self.topic.flows))
        self.positions.full_read(self.topic)
        self.positions.forget(self.topic)

    async def _fetch_schema(self, schema_id: str) -> str:
        info = await self._stub.GetSchema(self.pb.SchemaRequest(schema_id=schema_id), metadata=self._metadata)
        return str(info.schema_json)

    # --- one response ---------------------------------------------------------------------------------------------

    async def _handle(self, response: Any) -> None:
        now = self.now()
        events = [await self._decode(consumed) for consumed in response.events]
        added = self._queue([event for event in events if event is not None], now)
        replay = bytes(response.events[-1].replay_id) if response.events else bytes(response.latest_replay_id)
        if replay:
            self.positions.save(self.topic, replay, now)
        if added and self.on_stored is not None:
            self.on_stored()

    async def _decode(self, consumed: Any) -> ChangeEvent | None:
        """The event's header as the engine reads it; one that cannot be read marks a full read (its ids are
        unknown) and is left out."""
        event, config = consumed.event, self.config
        try:
            schema = await self.schemas.get(event.schema_id)
            record = schema.decode(event.payload)
            header = record.get(config.header)
            if not isinstance(header, Mapping):
                raise ValueError(f"no header record at {config.header!r}")
            ids = header.get(config.ids) or []
            changed: Sequence[str] = header.get(config.changed_fields.path) or []
            if config.changed_fields.encoding == "bitmap":
                changed = changed_field_names(schema, changed)
            origin = header.get(config.origin.path) if config.origin is not None else None
            decoded = ChangeEvent(bytes(consumed.replay_id), str(header.get(config.change_type) or ""),
                                  tuple(str(i) for i in ids), tuple(changed),
                                  None if origin is None else str(origin))
        except grpc.aio.AioRpcError:  # the schema could not be fetched: the batch is not kept, it comes again
            raise
        except Exception as exc:  # a payload or bitmap that does not decode (whatever the Avro reader raises)
            log.warning("stream %s: event %s cannot be read (%s); the flows %s will read everything",
                        self.topic.label, event.id, exc, ", ".join(self.topic.flows))
            self.positions.full_read(self.topic)
            return None
        self.seen.append(decoded)
        return decoded

    def _own(self, event: ChangeEvent) -> bool:
        """Our own write (its origin carries `own`): its echo needs no re-read. Gaps are always re-read."""
        own = self.config.origin.own if self.config.origin is not None else None
        return bool(own and event.origin and own in event.origin and event.change_type not in self.config.gaps)

    def _queue(self, events: list[ChangeEvent], now: datetime) -> int:
        added = 0
        for event in events:
            if self._own(event):
                log.debug("stream %s: %s of %s is our own write", self.topic.label, event.change_type, event.ids)
                continue
            records = [i for i in event.ids if i not in self.config.wildcard_ids]
            if len(records) < len(event.ids):
                log.warning("stream %s: a %s event names all records; the flows %s will read everything",
                            self.topic.label, event.change_type, ", ".join(self.topic.flows))
                self.positions.full_read(self.topic)
            added += self.inbox.add(self.topic, records, event.change_type, now)
        return added

