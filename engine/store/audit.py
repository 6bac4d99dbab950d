"""The audit trail: one row per record per run, queryable with SQL, exportable to CSV or Parquet.

Records a run left unchanged share one summary row per flow run (source_key NULL, ``count`` N): a row each would
grow the state by every record on every full run although nothing happened to them. So do records filtered again: a
record's first filtering keeps a row of its own (store/filtered.py remembers it), later ones are counted into one
``filter``/``filtered`` summary row (one per audit note). Every other outcome (created, updated, failed, parked,
deferred, deleted, a record with a note) keeps a row per record.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ml_connector.http.redact import REDACTOR
from ml_connector.store.database import Database
from ml_connector.store.filtered import Filtered, cutoff_of

EXPORT_FORMATS = ("csv", "parquet")


@dataclass(frozen=True)
class AuditRow:
    run_id: str
    flow: str
    source_key: str | None  # None: a summary row standing for ``count`` records
    target_id: str | None
    action: str  # create | update | skip | defer | park | filter
    outcome: str  # ok | unchanged | deferred | failed | filtered | planned
    attempts: int = 1
    error: str | None = None
    payload_hash: str | None = None
    note: str | None = None  # something else worth knowing, e.g. "future-stamped: …"
    payload: Mapping[str, Any] | None = None  # what was sent (stored with every secret in use masked)
    count: int = 1  # how many records the row stands for (more than one only on a summary row)

UNCHANGED_SUMMARY = ("skip", "unchanged")  # action and outcome of the summary row of a flow run's unchanged records
FILTERED_SUMMARY = ("filter", "filtered")  # ... of its records filtered again (each had a row of its own once)


def stored_payload(payload: Mapping[str, Any] | None) -> str | None:
    """The payload as stored: JSON text with every secret and token value in use replaced by ``***``.

    Masking the serialised text catches a secret wherever a template put it (a nested field, part of a string).
    """
    return None if payload is None else REDACTOR(json.dumps(payload, sort_keys=True, default=str))


class Audit:
    """Repository for audit rows."""

    COLUMNS = ("run_id", "flow", "source_key", "target_id", "action", "outcome", "attempts", "error",
               "payload_hash", "note", "payload", "count")

    TYPED_COLUMNS = (("run_id", "VARCHAR"), ("flow", "VARCHAR"), ("source_key", "VARCHAR"), ("target_id", "VARCHAR"),
                     ("action", "VARCHAR"), ("outcome", "VARCHAR"), ("attempts", "INTEGER"), ("error", "VARCHAR"),
                     ("payload_hash", "VARCHAR"), ("note", "VARCHAR"), ("payload", "JSON"), ("count", "INTEGER"))

    def __init__(self, db: Database) -> None:
        self.db = db

    def add(self, rows: Iterable[AuditRow]) -> None:
        batch = [(r.run_id, r.flow, r.source_key, r.target_id, r.action, r.outcome, r.attempts, r.error,
                  r.payload_hash, r.note, stored_payload(r.payload), r.count) for r in rows]
        self.db.insert_rows("audit", self.TYPED_COLUMNS, batch)

    def add_summary(self, run_id: str, flow: str, action: str, outcome: str, count: int,
                    note: str | None = None) -> None:
        """One row standing for ``count`` records of a flow run with nothing new to say (none for no record)."""
        if count > 0:
            self.add([AuditRow(run_id, flow, None, None, action, outcome, count=count, note=note)])

    def add_unchanged(self, run_id: str, flow: str, count: int) -> None:
        """One row for the ``count`` records of a flow run found unchanged (nothing sent, nothing else to say)."""
        self.add_summary(run_id, flow, *UNCHANGED_SUMMARY, count)

    @staticmethod
    def _select(run_id: str | None, flow: str | None, source_key: str | None, outcome: str | None,
                limit: int | None) -> tuple[str, list[Any]]:
        """The SELECT of the rows a filter asks for, newest first, and its parameters."""
        sql = f"SELECT {', '.join(Audit.COLUMNS)}, logged_at FROM audit WHERE true"
        params: list[Any] = []
        for column, value in (("run_id", run_id), ("flow", flow), ("source_key", source_key),
                              ("outcome", outcome)):
            if value is not None:
                sql += f" AND {column} = ?"
                params.append(value)
        sql += " ORDER BY logged_at DESC, source_key"
        if limit is not None:
            sql += " LIMIT ?"
            params.append(limit)
        return sql, params

    def query(self, *, run_id: str | None = None, flow: str | None = None, source_key: str | None = None,
              outcome: str | None = None, limit: int = 50) -> list[dict[str, Any]]:
        sql, params = self._select(run_id, flow, source_key, outcome, limit)
        names = (*self.COLUMNS, "logged_at")
        rows = [dict(zip(names, row, strict=True)) for row in self.db.fetchall(sql, params)]
        for row in rows:
            row["payload"] = json.loads(row["payload"]) if row["payload"] is not None else None
        return rows

    def export(self, path: Path, fmt: str, *, run_id: str | None = None, flow: str | None = None,
               source_key: str | None = None, outcome: str | None = None, limit: int | None = None) -> int:
        """Write the selected rows to ``path`` as CSV (with a header) or Parquet; returns how many were written."""
        if fmt not in EXPORT_FORMATS:
            raise ValueError(f"unknown export format {fmt!r}")
        sql, params = self._select(run_id, flow, source_key, outcome, limit)
        options = "FORMAT csv, HEADER" if fmt == "csv" else "FORMAT parquet"
        self.db.copy_to(sql, params, str(path), options)
        count = self.db.fetchone(f"SELECT count(*) FROM ({sql}) AS selected", params)
        return int(count[0]) if count else 0

    def prune(self, older_than_days: float) -> int:
        """Delete audit rows older than that many days; returns how many went. Parked records stay in ``pending``.

        On PostgreSQL the audit is partitioned by month: the months wholly before the cutoff are dropped (no row by
        row delete, no table bloat), the rest of the cutoff's month is deleted row by row."""
        cutoff = cutoff_of(older_than_days)
        with self.db.roomy(), self.db.transaction():
            dropped = self.db.drop_audit_before(cutoff)
            row = self.db.fetchone("SELECT count(*) FROM audit WHERE logged_at < ?", [cutoff])
            self.db.execute("DELETE FROM audit WHERE logged_at < ?", [cutoff])
            Filtered(self.db).prune(older_than_days)  # a record whose own filter row goes is news again
        return dropped + (int(row[0]) if row else 0)
