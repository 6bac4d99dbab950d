"""The inbox on a PostgreSQL state: a table in the tenant's schema, so receivers run as replicas behind one address.

The DuckDB inbox is a file beside the state that one process opens (events/inbox.py); on a shared state many `serve
--listen` replicas (and their ticks) must see one inbox. Its rows live beside the state's own tables, written through
the state's connection set-up (store/postgres.py: schema, password, time zone); the table is the state's migration 12
(store/database.py). A unique index over the pending ids makes a delivery that reached two replicas at once land
once: the second insert does nothing, as a second notice for a pending id does in the file inbox.
"""

from __future__ import annotations

import threading
from datetime import UTC, datetime
from pathlib import Path

from ml_connector.events.inbox import DONE_KEPT, Inbox, InboxItem, Watched, inbox_path
from ml_connector.store import StateTarget
from ml_connector.store.database import Database
from ml_connector.store.postgres import PostgresDatabase, PostgresTarget


def _naive(moment: datetime) -> datetime:
    return moment.astimezone(UTC).replace(tzinfo=None) if moment.tzinfo else moment


class SharedInbox(Inbox):
    """The file inbox's interface over a PostgreSQL schema (a subclass so the receiver, streams and ticks take it
    unchanged; none of the file inbox's DuckDB connection is used)."""

    def __init__(self, db: Database) -> None:  # noqa: D107 (no DuckDB connection: Inbox.__init__ not called)
        self._pg = db
        self._lock = threading.Lock()

    @classmethod
    def open(cls, target: PostgresTarget) -> SharedInbox:  # type: ignore[override]
        return cls(PostgresDatabase(target))  # its table is migration 12 of the state, run under the migration lock

    def add(self, channel: Watched, ids: list[str], operation: str | None, received_at: datetime) -> int:
        """Keep these ids as pending; returns how many rows this call added (pending ones, from any replica, add
        none)."""
        added = 0
        with self._lock:
            for record_id in dict.fromkeys(str(i) for i in ids):
                row = self._pg.fetchone(
                    "INSERT INTO inbox (connection, entity, record_id, operation, received_at) VALUES (?, ?, ?, ?, ?) "
                    "ON CONFLICT (connection, entity, record_id) WHERE done_at IS NULL DO NOTHING RETURNING seq",
                    [channel.connection, channel.entity, record_id, operation, _naive(received_at)])
                added += row is not None
        return added

    def pending(self, connection: str, entity: str, limit: int = 1000) -> list[InboxItem]:
        with self._lock:
            rows = self._pg.fetchall(
                "SELECT seq, connection, entity, record_id, operation, received_at FROM inbox "
                "WHERE connection = ? AND entity = ? AND done_at IS NULL ORDER BY seq LIMIT ?",
                [connection, entity, limit])
        return [InboxItem(seq, c, e, r, op, at.replace(tzinfo=UTC)) for seq, c, e, r, op, at in rows]

    def done(self, seqs: list[int], now: datetime | None = None) -> None:
        if not seqs:
            return
        moment = _naive(now or datetime.now(UTC))
        with self._lock:
            self._pg.execute("UPDATE inbox SET done_at = ? WHERE seq = ANY(?)", [moment, list(seqs)])
            self._pg.execute("DELETE FROM inbox WHERE done_at < ?", [moment - DONE_KEPT])

    def kept(self) -> int:
        with self._lock:
            row = self._pg.fetchone("SELECT count(*) FROM inbox")
        return int(row[0]) if row else 0

    def close(self) -> None:
        with self._lock:
            self._pg.close()


def open_inbox(target: StateTarget, state_path: Path) -> Inbox:
    """The inbox of a state: shared in its PostgreSQL schema, else the file beside the DuckDB state."""
    if isinstance(target, PostgresTarget):
        return SharedInbox.open(target)
    return Inbox.open(inbox_path(state_path))
