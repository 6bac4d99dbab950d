"""Where a subscriber keeps its position and marks full reads: the state directly, or a buffer serve's tick saves.

`StatePositions` writes through to an open state (tests, a one-off subscription). Serve opens the state only for
its ticks (a manual `run` may hold it in between), so its subscribers write to `BufferedPositions`, which each
tick saves: the full-read marks first, then the positions. The ids of a batch are in the inbox (a file of its own)
before its position is buffered, so a crash before the save only replays events whose ids are pending already.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol

from ml_connector.store import State
from ml_connector.store.stream_positions import StreamPosition


@dataclass(frozen=True)
class StreamTopic:
    """One subscription: a connection's stream, the topic of one entity, and the flows that entity triggers."""

    connection: str
    stream: str
    entity: str
    topic: str
    flows: tuple[str, ...]

    @property
    def label(self) -> str:
        return f"{self.connection}/{self.stream}/{self.entity}"


class Positions(Protocol):
    """What a subscriber needs to resume, and to say that a gap cannot be replayed."""

    def get(self, topic: StreamTopic) -> StreamPosition | None: ...

    def save(self, topic: StreamTopic, replay_id: bytes, at: datetime) -> None: ...

    def forget(self, topic: StreamTopic) -> None: ...

    def full_read(self, topic: StreamTopic) -> None:
        """The flows of the topic's entity read everything on their next run (their watermarks are dropped)."""


class StatePositions:
    """Positions kept in an open state."""

    def __init__(self, state: State) -> None:
        self.state = state

    def get(self, topic: StreamTopic) -> StreamPosition | None:
        return self.state.stream_positions.get(topic.connection, topic.stream, topic.topic)

    def save(self, topic: StreamTopic, replay_id: bytes, at: datetime) -> None:
        self.state.stream_positions.save(topic.connection, topic.stream, topic.topic, replay_id, at)

    def forget(self, topic: StreamTopic) -> None:
        self.state.stream_positions.forget(topic.connection, topic.stream, topic.topic)

    def full_read(self, topic: StreamTopic) -> None:
        for flow in topic.flows:
            self.state.watermarks.reset(flow)


_FORGOTTEN = StreamPosition(b"", datetime.min.replace(tzinfo=UTC))


class BufferedPositions:
    """Positions read from the state once, changed in memory, saved by `save_to` (serve's tick)."""

    def __init__(self, state: State, topics: list[StreamTopic], on_change: Callable[[], None] | None = None) -> None:
        """``on_change``: called when a full read was marked (serve wakes its loop to save it)."""
        self._loaded = {topic: StatePositions(state).get(topic) for topic in topics}
        self._changed: dict[StreamTopic, StreamPosition] = {}
        self._full_reads: set[StreamTopic] = set()
        self._on_change = on_change

    def get(self, topic: StreamTopic) -> StreamPosition | None:
        position = self._changed.get(topic, self._loaded.get(topic))
        return None if position is _FORGOTTEN else position

    def save(self, topic: StreamTopic, replay_id: bytes, at: datetime) -> None:
        self._changed[topic] = StreamPosition(replay_id, at)

    def forget(self, topic: StreamTopic) -> None:
        self._changed[topic] = _FORGOTTEN

    def full_read(self, topic: StreamTopic) -> None:
        self._full_reads.add(topic)
        if self._on_change is not None:
            self._on_change()

    def save_to(self, state: State) -> list[str]:
        """Write what changed since the last save: full-read marks first (a crash then leaves the old position,
        whose refusal marks them again), then positions. Returns the flows just marked for a full read."""
        target = StatePositions(state)
        marked, self._full_reads = self._full_reads, set()
        for topic in marked:
            target.full_read(topic)
        changed, self._changed = self._changed, {}
        for topic, position in changed.items():
            if position is _FORGOTTEN:
                target.forget(topic)
            else:
                target.save(topic, position.replay_id, position.saved_at)
            self._loaded[topic] = None if position is _FORGOTTEN else position
        return sorted({flow for topic in marked for flow in topic.flows})
