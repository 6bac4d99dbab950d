"""Channels: the webhook channels registered with source systems, so a restart renews them instead of starting over.

A row holds what is not secret (ids, expiry, status, the reason of the last failure); the channel's token is a
secret and lives encrypted in the credential store under `token_name(...)` (re-encrypted by key rotation too).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from ml_connector.store.credentials import Credentials
from ml_connector.store.database import Database

ACTIVE = "active"  # registered, live until expires_at
RENEW_FAILED = "renew_failed"  # live until expires_at; the last renewal failed (tried again next maintenance)
FAILED = "failed"  # the registration failed: not live (registered anew next maintenance)
TOKEN_SUFFIX = ".channel_token"  # engine-kept, not a user's secret (see credentials.TOKEN_SUFFIXES)


def token_name(connection: str, channel: str, entity: str) -> str:
    """The credential name of a channel's token."""
    return f"{connection}.{channel}.{entity}{TOKEN_SUFFIX}"


@dataclass(frozen=True)
class StoredChannel:
    """A channel as the state keeps it (never its token)."""

    connection: str
    channel: str
    entity: str
    channel_id: str
    url: str
    status: str
    reason: str | None
    expires_at: datetime | None
    updated_at: datetime


def _naive(moment: datetime | None) -> datetime | None:
    return None if moment is None else moment.astimezone(UTC).replace(tzinfo=None)


def _aware(moment: datetime | None) -> datetime | None:
    return None if moment is None else moment.replace(tzinfo=UTC)


class Channels:
    """Repository of registered channels; tokens go through the encrypted credential store."""

    COLUMNS = "connection, channel, entity, channel_id, url, status, reason, expires_at, updated_at"

    def __init__(self, db: Database, credentials: Credentials) -> None:
        self.db = db
        self.credentials = credentials

    def get(self, connection: str, channel: str, entity: str) -> StoredChannel | None:
        row = self.db.fetchone(f"SELECT {self.COLUMNS} FROM channels WHERE connection = ? AND channel = ? "
                               "AND entity = ?", [connection, channel, entity])
        return _stored(row) if row else None

    def all(self) -> list[StoredChannel]:
        rows = self.db.fetchall(f"SELECT {self.COLUMNS} FROM channels ORDER BY connection, channel, entity")
        return [_stored(row) for row in rows]

    def token(self, connection: str, channel: str, entity: str) -> str | None:
        """The channel's token, decrypted (None when none is kept)."""
        return self.credentials.get(token_name(connection, channel, entity))

    def save(self, stored: StoredChannel, token: str | None) -> None:
        """Keep a channel; `token` None drops the kept token (a channel that is not live needs none)."""
        name = token_name(stored.connection, stored.channel, stored.entity)
        with self.db.transaction():
            self.db.execute(
                f"INSERT INTO channels ({self.COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) "
                "ON CONFLICT (connection, channel, entity) DO UPDATE SET channel_id = excluded.channel_id, "
                "url = excluded.url, status = excluded.status, reason = excluded.reason, "
                "expires_at = excluded.expires_at, updated_at = excluded.updated_at",
                [stored.connection, stored.channel, stored.entity, stored.channel_id, stored.url, stored.status,
                 stored.reason, _naive(stored.expires_at), _naive(stored.updated_at)])
            if token is None:
                self.db.execute("DELETE FROM credentials WHERE name = ?", [name])
            else:
                self.credentials.put(name, token)

    def forget(self, connection: str, channel: str, entity: str) -> None:
        """Drop the channel and its token."""
        with self.db.transaction():
            self.db.execute("DELETE FROM channels WHERE connection = ? AND channel = ? AND entity = ?",
                            [connection, channel, entity])
            self.db.execute("DELETE FROM credentials WHERE name = ?", [token_name(connection, channel, entity)])


def _stored(row: tuple[object, ...]) -> StoredChannel:
    connection, channel, entity, channel_id, url, status, reason, expires_at, updated_at = row
    assert isinstance(updated_at, datetime) and (expires_at is None or isinstance(expires_at, datetime))
    return StoredChannel(str(connection), str(channel), str(entity), str(channel_id), str(url), str(status),
                         None if reason is None else str(reason), _aware(expires_at), _aware(updated_at) or updated_at)
