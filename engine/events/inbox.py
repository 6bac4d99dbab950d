"""The inbox: record ids a verified callback announced, kept until the flow has recorded those records.

It is a DuckDB file of its own beside the state (``<state>.inbox``): the receiver answers a callback within
milliseconds and must never wait for the state, which a manual `run` may hold. An id is pending once per
(connection, entity): a second notice for a record not yet synced adds nothing (the flow re-reads the record as it is
then, so one read covers both changes). Items are marked done only after the flow recorded their records, so a crash
leaves them pending for the next tick.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Protocol

import duckdb

from ml_connector.store import StateError

SCHEMA = """
CREATE SEQUENCE IF NOT EXISTS inbox_seq;
CREATE TABLE IF NOT EXISTS inbox (
    seq BIGINT PRIMARY KEY DEFAULT nextval('inbox_seq'), connection VARCHAR NOT NULL, entity VARCHAR NOT NULL,
    record_id VARCHAR NOT NULL, operation VARCHAR, received_at TIMESTAMP NOT NULL, done_at TIMESTAMP);
"""


DONE_KEPT = timedelta(days=1)  # a done row is kept this long (what was received, for a look after the fact)


class InboxError(StateError):
    """The inbox file cannot be opened (another serve holds it, or it is not an inbox): exit 2, like the state."""


class Watched(Protocol):
    """What the inbox needs of a channel (an ActiveChannel): whose records its ids are."""

    @property
    def connection(self) -> str: ...

    @property
    def entity(self) -> str: ...


@dataclass(frozen=True)
class InboxItem:
    """One announced record id, pending until its flow recorded the record."""

    seq: int
    connection: str
    entity: str
    record_id: str
    operation: str | None
    received_at: datetime  # UTC


def inbox_path(state_path: Path) -> Path:
    """Where the inbox of a state file lives: beside it, ``<state>.inbox``."""
    return state_path.with_name(state_path.name + ".inbox")


def _naive(moment: datetime) -> datetime:
    return moment.astimezone(UTC).replace(tzinfo=None) if moment.tzinfo else moment


class Inbox:
    """Thread-safe (one connection behind a lock): the receiver adds, serve's tick reads and marks done."""

    def __init__(self, db: duckdb.DuckDBPyConnection) -> None:
        self._db = db
        self._lock = threading.Lock()

    @classmethod
    def open(cls, path: Path) -> Inbox:
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            db = duckdb.connect(str(path))
            db.execute(SCHEMA)
        except duckdb.Error as exc:
            raise InboxError(f"cannot open the inbox {path}: {' '.join(str(exc).split())}") from exc
        return cls(db)

    def add(self, channel: Watched, ids: list[str], operation: str | None, received_at: datetime) -> int:
        """Keep these ids as pending; returns how many rows were added (ids already pending add none)."""
        wanted = list(dict.fromkeys(str(i) for i in ids))
        if not wanted:
            return 0
        with self._lock:
            db = self._db
            db.execute("BEGIN TRANSACTION")
            try:
                rows = db.execute(
                    "SELECT record_id FROM inbox WHERE connection = ? AND entity = ? AND done_at IS NULL "
                    "AND record_id IN (SELECT unnest(?::VARCHAR[]))", [channel.connection, channel.entity, wanted]
                ).fetchall()
                pending = {row[0] for row in rows}
                new = [i for i in wanted if i not in pending]
                if new:
                    db.executemany("INSERT INTO inbox (connection, entity, record_id, operation, received_at) "
                                   "VALUES (?, ?, ?, ?, ?)",
                                   [[channel.connection, channel.entity, i, operation, _naive(received_at)]
                                    for i in new])
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise
        return len(new)

    def pending(self, connection: str, entity: str, limit: int = 1000) -> list[InboxItem]:
        """The oldest pending items of one entity, in arrival order."""
        with self._lock:
            rows = self._db.execute(
                "SELECT seq, connection, entity, record_id, operation, received_at FROM inbox "
                "WHERE connection = ? AND entity = ? AND done_at IS NULL ORDER BY seq LIMIT ?",
                [connection, entity, limit]).fetchall()
        return [InboxItem(seq, c, e, r, op, at.replace(tzinfo=UTC)) for seq, c, e, r, op, at in rows]

    def done(self, seqs: list[int], now: datetime | None = None) -> None:
        """These items' records are recorded (synced, parked, deleted or skipped): no longer pending. Rows done
        more than ``DONE_KEPT`` ago go: every callback adds one, and the inbox must not grow with every notice."""
        if not seqs:
            return
        moment = _naive(now or datetime.now(UTC))
        with self._lock:
            self._db.execute("UPDATE inbox SET done_at = ? WHERE seq IN (SELECT unnest(?::BIGINT[]))",
                             [moment, list(seqs)])
            self._db.execute("DELETE FROM inbox WHERE done_at < ?", [moment - DONE_KEPT])

    def kept(self) -> int:
        """Rows the inbox holds: pending, and done within ``DONE_KEPT``."""
        with self._lock:
            row = self._db.execute("SELECT count(*) FROM inbox").fetchone()
        return int(row[0]) if row else 0

    def close(self) -> None:
        with self._lock:
            self._db.close()
