"""Stream positions: the replay id each change-stream subscription resumes after, so a restart misses nothing.

The id is the source's opaque bytes, stored as given. `saved_at` says how old it is: a source keeps events for a
limited time, and an id older than that cannot be trusted to resume from.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from ml_connector.store.database import Database


@dataclass(frozen=True)
class StreamPosition:
    """Where one subscription (connection, stream, topic) resumes, and when that was stored."""

    replay_id: bytes
    saved_at: datetime  # UTC


class StreamPositions:
    """Repository of stream positions."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def get(self, connection: str, stream: str, topic: str) -> StreamPosition | None:
        row = self.db.fetchone("SELECT replay_id, saved_at FROM stream_positions WHERE connection = ? AND "
                               "stream = ? AND topic = ?", [connection, stream, topic])
        if row is None:
            return None
        replay_id, saved_at = row
        return StreamPosition(bytes(replay_id), saved_at.replace(tzinfo=UTC))

    def save(self, connection: str, stream: str, topic: str, replay_id: bytes, saved_at: datetime) -> None:
        moment = saved_at.astimezone(UTC).replace(tzinfo=None)
        self.db.execute("INSERT INTO stream_positions (connection, stream, topic, replay_id, saved_at) "
                        "VALUES (?, ?, ?, ?, ?) ON CONFLICT (connection, stream, topic) DO UPDATE SET "
                        "replay_id = excluded.replay_id, saved_at = excluded.saved_at",
                        [connection, stream, topic, replay_id, moment])

    def forget(self, connection: str, stream: str, topic: str) -> None:
        self.db.execute("DELETE FROM stream_positions WHERE connection = ? AND stream = ? AND topic = ?",
                        [connection, stream, topic])
