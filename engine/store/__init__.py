"""State: repositories, one per concept, over DuckDB (a file, the default) or PostgreSQL (shared by workers)."""

from __future__ import annotations

from pathlib import Path

from ml_connector.store.audit import Audit, AuditRow
from ml_connector.store.channels import Channels
from ml_connector.store.credentials import CredentialError, Credentials, load_or_create_key
from ml_connector.store.database import Database, StateError
from ml_connector.store.filtered import Filtered
from ml_connector.store.idmap import IdMapEntry, IdMaps
from ml_connector.store.pending import DEFERRED, FAILED, Pending, PendingRecord
from ml_connector.store.postgres import PostgresDatabase, PostgresTarget
from ml_connector.store.runs import Runs
from ml_connector.store.stream_positions import StreamPositions
from ml_connector.store.watermarks import Watermarks

StateTarget = str | Path | PostgresTarget


def open_database(target: StateTarget) -> Database:
    """A DuckDB file (or ":memory:") by path, a PostgreSQL schema by ``PostgresTarget``.

    A test session may run every DuckDB state on PostgreSQL instead (store/redirect.py, off unless its environment
    variable is set)."""
    from ml_connector.store import redirect

    if isinstance(target, PostgresTarget):
        return PostgresDatabase(target)
    redirected = redirect.postgres_target(target)
    if redirected is not None:
        return PostgresDatabase(redirected)
    return Database(target)


class State:
    """All repositories over one database."""

    def __init__(self, target: StateTarget) -> None:
        self.db = open_database(target)
        self.id_maps = IdMaps(self.db)
        self.watermarks = Watermarks(self.db)
        self.pending = Pending(self.db)
        self.audit = Audit(self.db)
        self.filtered = Filtered(self.db)
        self.runs = Runs(self.db)
        try:
            self.credentials = Credentials(self.db, load_or_create_key(self.db))
        except CredentialError:  # the key is unusable: leave the state closed, as this process found it
            self.db.close()
            raise
        self.channels = Channels(self.db, self.credentials)
        self.stream_positions = StreamPositions(self.db)

    def close(self) -> None:
        self.db.close()


__all__ = ["DEFERRED", "FAILED", "Audit", "AuditRow", "CredentialError", "Credentials", "Database", "Filtered",
           "IdMapEntry", "IdMaps", "Pending", "PendingRecord", "PostgresTarget", "Runs", "State", "StateError",
           "StateTarget", "Watermarks", "open_database"]
