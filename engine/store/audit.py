"""The audit trail: one row per record per run, queryable with SQL."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from ml_connector.store.database import Database


@dataclass(frozen=True)
class AuditRow:
    run_id: str
    flow: str
    source_key: str
    target_id: str | None
    action: str  # create | update | skip | defer | park | filter
    outcome: str  # ok | unchanged | deferred | failed | filtered | planned
    attempts: int = 1
    error: str | None = None
    payload_hash: str | None = None
    note: str | None = None  # something else worth knowing, e.g. "future-stamped: …"


class Audit:
    """Repository for audit rows."""

    COLUMNS = ("run_id", "flow", "source_key", "target_id", "action", "outcome", "attempts", "error",
               "payload_hash", "note")

    TYPED_COLUMNS = (("run_id", "VARCHAR"), ("flow", "VARCHAR"), ("source_key", "VARCHAR"), ("target_id", "VARCHAR"),
                     ("action", "VARCHAR"), ("outcome", "VARCHAR"), ("attempts", "INTEGER"), ("error", "VARCHAR"),
                     ("payload_hash", "VARCHAR"), ("note", "VARCHAR"))

    def __init__(self, db: Database) -> None:
        self.db = db

    def add(self, rows: Iterable[AuditRow]) -> None:
        batch = [(r.run_id, r.flow, r.source_key, r.target_id, r.action, r.outcome, r.attempts, r.error,
                  r.payload_hash, r.note) for r in rows]
        self.db.insert_rows("audit", self.TYPED_COLUMNS, batch)

    def query(self, *, run_id: str | None = None, flow: str | None = None, source_key: str | None = None,
              outcome: str | None = None, limit: int = 50) -> list[dict[str, Any]]:
        sql = f"SELECT {', '.join(self.COLUMNS)}, logged_at FROM audit WHERE true"
        params: list[Any] = []
        for column, value in (("run_id", run_id), ("flow", flow), ("source_key", source_key),
                              ("outcome", outcome)):
            if value is not None:
                sql += f" AND {column} = ?"
                params.append(value)
        sql += " ORDER BY logged_at DESC, source_key LIMIT ?"
        params.append(limit)
        names = (*self.COLUMNS, "logged_at")
        return [dict(zip(names, row, strict=True)) for row in self.db.fetchall(sql, params)]

    def prune(self, older_than_days: float) -> int:
        """Delete audit rows older than that many days; returns how many went. Parked records stay in ``pending``."""
        row = self.db.fetchone("SELECT count(*) FROM audit WHERE logged_at < now() - to_seconds(?)",
                               [older_than_days * 86400])
        self.db.execute("DELETE FROM audit WHERE logged_at < now() - to_seconds(?)", [older_than_days * 86400])
        return int(row[0]) if row else 0
