"""Serve's change streams: one subscriber per (connection, stream, entity) that a flow's `trigger: {stream: ...}`
needs, running beside the ticks.

Serve opens the state only for a tick, so the subscribers are started in the first tick (positions read, the
credentials copied into memory for their token renewals) and never touch the state afterwards: their positions
and full-read marks are buffered and saved by every tick (`save`). A subscriber that stops for good (its
credentials refused after renewal, a refusal no retry changes) is reported once; its flows still run on schedule.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

import httpx

from ml_connector.config import MappingConfig
from ml_connector.config.stream import StreamConfig
from ml_connector.errors import MlConnectorError, SetupError
from ml_connector.events.channels import _connector
from ml_connector.events.inbox import Inbox
from ml_connector.events.stream import StreamSubscriber
from ml_connector.events.stream_state import BufferedPositions, StreamTopic
from ml_connector.http.client import ConnectorClient
from ml_connector.spec import Project
from ml_connector.store import State
from ml_connector.sync.runner import Runner

log = logging.getLogger("ml_connector.events")
STOP_WAIT = 2.0  # seconds a cancelled subscriber has to end before it is cancelled again
STOP_TRIES = 5


def stream_flows(project: Project) -> dict[tuple[str, str, str], list[str]]:
    """(source connection, stream, source entity) -> the flows its events trigger, in dependency order."""
    found: dict[tuple[str, str, str], list[str]] = {}
    for name in project.flow_order():
        config = project.flows[name].config
        if isinstance(config, MappingConfig) and config.trigger is not None and config.trigger.stream is not None:
            key = (config.source.connection, config.trigger.stream, config.source.entity)
            found.setdefault(key, []).append(name)
    return found


def stream_config(project: Project, connection: str, stream: str) -> StreamConfig:
    config = _connector(project, connection).streams.get(stream)
    if config is None:
        raise SetupError(f"connection {connection}: its connector has no stream {stream!r} (run `ml-connector "
                         "validate`)")
    return config


class MemoryVault:
    """The credential store as it was when serve started, kept in memory: a renewed token is cached here, so the
    subscribers never open the state between ticks."""

    def __init__(self, values: Mapping[str, str]) -> None:
        self._values = dict(values)

    @classmethod
    def copy_of(cls, state: State) -> MemoryVault:
        found = {name: state.credentials.get(name) for name in state.credentials.names()}
        return cls({name: value for name, value in found.items() if value is not None})

    def get(self, name: str) -> str | None:
        return self._values.get(name)

    def put(self, name: str, value: str) -> None:
        self._values[name] = value


class ClientAccess:
    """A connection's template context for a stream, with the token its auth holds (a new one when asked)."""

    def __init__(self, client: ConnectorClient) -> None:
        self.client = client

    async def context(self, renew: bool) -> Mapping[str, Any]:
        auth = self.client.auth
        if renew:
            auth.invalidate()
        headers: dict[str, str] = {}
        await auth.apply(self.client.http, headers, {})  # obtains a token when it has none
        token = getattr(auth, "token", None)
        base = httpx.URL(self.client.base_url)
        site = str(base.copy_with(path="/", query=None, fragment=None)).rstrip("/")
        return {**self.client.context, "stream": {"token": token, "base_url": self.client.base_url, "site": site}}


def topic_of(config: StreamConfig, client: ConnectorClient, connection: str, stream: str, entity: str) -> str:
    try:
        return str(config.topic.evaluate({**client.context, "stream": {"entity": entity}}))
    except Exception as exc:  # a template that fails is a spec error of this stream
        raise SetupError(f"connection {connection}: stream {stream}: the topic template failed: {exc}") from exc


class Streams:
    """The subscribers of one serve: `start` in the first tick, `save` in every tick, `stop` on the way out."""

    def __init__(self, project: Project, inbox: Inbox, *, on_stored: Callable[[], None] | None = None,
                 now: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self.project = project
        self.inbox = inbox
        self.on_stored = on_stored
        self.now = now
        self.subscribers: list[StreamSubscriber] = []
        self.tasks: list[asyncio.Task[None]] = []
        self.positions: BufferedPositions | None = None
        self._clients: list[ConnectorClient] = []
        self._reported: set[str] = set()
        self.full_reads: set[str] = set()  # flows to read in full at the next tick (the stream lost its place)

    @staticmethod
    def needed(project: Project) -> bool:
        return bool(stream_flows(project))

    @property
    def started(self) -> bool:
        return self.positions is not None

    def start(self, state: State) -> list[StreamTopic]:
        """Build and run the subscribers (once); returns their topics."""
        if self.positions is not None:
            return [subscriber.topic for subscriber in self.subscribers]
        runner = Runner(self.project, state)
        vault = MemoryVault.copy_of(state)
        clients: dict[str, ConnectorClient] = {}
        planned: list[tuple[StreamTopic, StreamConfig, ConnectorClient]] = []
        for (connection, stream, entity), flows in stream_flows(self.project).items():
            config = stream_config(self.project, connection, stream)
            if connection not in clients:
                clients[connection] = ConnectorClient(runner.connection(connection), vault)
            client = clients[connection]
            topic = StreamTopic(connection, stream, entity, topic_of(config, client, connection, stream, entity),
                                tuple(flows))
            planned.append((topic, config, client))
        self._clients = list(clients.values())
        self.positions = BufferedPositions(state, [topic for topic, _, _ in planned], on_change=self.on_stored)
        for topic, config, client in planned:
            subscriber = StreamSubscriber(config, topic, inbox=self.inbox, positions=self.positions,
                                          access=ClientAccess(client), now=self.now, on_stored=self.on_stored)
            self.subscribers.append(subscriber)
            task = asyncio.create_task(subscriber.run(), name=f"stream {topic.label}")
            task.add_done_callback(self._ended)  # a subscriber that stopped is reported by the next tick
            self.tasks.append(task)
        return [topic for topic, _, _ in planned]

    def _ended(self, _: asyncio.Task[None]) -> None:
        if self.on_stored is not None:
            self.on_stored()

    def take_full_reads(self) -> list[str]:
        """The flows whose entity the stream can no longer vouch for: read them in full now, not at their schedule."""
        flows, self.full_reads = sorted(self.full_reads), set()
        return flows

    def save(self, state: State) -> list[str]:
        """Keep what the subscribers buffered; returns a line for each subscriber that stopped since last asked."""
        if self.positions is not None:
            self.full_reads.update(self.positions.save_to(state))
        lines = []
        for subscriber, task in zip(self.subscribers, self.tasks, strict=True):
            label = subscriber.topic.label
            if task.done() and not task.cancelled() and label not in self._reported:
                self._reported.add(label)
                error = task.exception()
                said = str(error) if isinstance(error, MlConnectorError) else f"stream {label}: {error!r}"
                lines.append(f"{said}; the subscription stopped, its flows run on their schedule only")
        return lines

    async def stop(self) -> None:
        for task in await stop_tasks(self.tasks):
            log.warning("%s did not stop when cancelled; serve stops without it", task.get_name())
        for client in self._clients:
            await client.aclose()


async def stop_tasks(tasks: list[asyncio.Task[None]], *, wait: float = STOP_WAIT,
                     tries: int = STOP_TRIES) -> list[asyncio.Task[None]]:
    """Cancel ``tasks`` and wait for them; returns those still running after ``tries`` cancellations.

    A cancellation can be lost below us: gRPC's call preparation completes normally when cancelled (grpc/aio
    `_prepare_rpc`), so a subscriber awaiting it never sees the CancelledError and waits on a read that never ends
    (serve then ignored SIGTERM). Each try cancels what is still running again. A task's own end (an error, a
    cancellation) is taken here; a cancellation of the caller passes on.
    """
    pending = {task for task in tasks if not task.done()}
    for _ in range(tries):
        if not pending:
            break
        for task in pending:
            task.cancel()
        _, pending = await asyncio.wait(pending, timeout=wait)
    for task in tasks:
        if task.done() and not task.cancelled():
            task.exception()  # taken: a subscriber's failure was reported by `save`
    return [task for task in tasks if task in pending]
