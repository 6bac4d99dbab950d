"""Pending records: deferred (waiting for a reference) or failed (parked with payload for replay)."""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from engine.store.database import Database

DEFERRED = "deferred"
FAILED = "failed"


@dataclass(frozen=True)
class PendingRecord:
    flow: str
    source_key: str
    status: str
    record: dict[str, Any]
    reason: str | None
    attempts: int


class Pending:
    """Repository for records that are not synced yet but must not be lost."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def park(self, flow: str, run_id: str, rows: Iterable[tuple[str, str, dict[str, Any], str]]) -> None:
        """Store (source_key, status, source_record, reason); a record parked again counts one more attempt."""
        latest = {key: (flow, key, status, json.dumps(record, default=str), reason, run_id, run_id)
                  for key, status, record, reason in rows}  # one row per key
        batch = list(latest.values())
        self.db.insert_rows(
            "pending", (("flow", "VARCHAR"), ("source_key", "VARCHAR"), ("status", "VARCHAR"),
                        ("source_record", "JSON"), ("reason", "VARCHAR"), ("first_run", "VARCHAR"),
                        ("last_run", "VARCHAR")), batch, computed={"attempts": "1", "updated_at": "now()"},
            on_conflict="ON CONFLICT (flow, source_key) DO UPDATE SET status = excluded.status, "
                        "source_record = excluded.source_record, reason = excluded.reason, "
                        "attempts = pending.attempts + 1, last_run = excluded.last_run, updated_at = now()")

    def clear(self, flow: str, source_keys: Iterable[str]) -> None:
        keys = list(source_keys)
        if keys:
            self.db.execute("DELETE FROM pending WHERE flow = ? AND source_key IN (SELECT unnest(?::VARCHAR[]))",
                            [flow, keys])

    def attempts(self, flow: str, source_keys: Iterable[str]) -> dict[str, int]:
        keys = list(source_keys)
        if not keys:
            return {}
        rows = self.db.fetchall("SELECT source_key, attempts FROM pending WHERE flow = ? AND source_key IN "
                                "(SELECT unnest(?::VARCHAR[]))", [flow, keys])
        return {key: int(n) for key, n in rows}

    def list(self, flow: str | None = None, status: str | None = None, reason_like: str | None = None,
             run_id: str | None = None, keys: list[str] | None = None) -> list[PendingRecord]:
        sql = "SELECT flow, source_key, status, source_record, reason, attempts FROM pending WHERE true"
        params: list[Any] = []
        for column, value in (("flow", flow), ("status", status), ("last_run", run_id)):
            if value is not None:
                sql += f" AND {column} = ?"
                params.append(value)
        if reason_like:
            sql += " AND reason ILIKE ?"
            params.append(f"%{reason_like}%")
        if keys:
            sql += " AND source_key IN (SELECT unnest(?::VARCHAR[]))"
            params.append(keys)
        sql += " ORDER BY flow, updated_at, source_key"
        return [PendingRecord(f, k, s, json.loads(r), reason, int(a))
                for f, k, s, r, reason, a in self.db.fetchall(sql, params)]

    def counts(self) -> dict[tuple[str, str], int]:
        rows = self.db.fetchall("SELECT flow, status, count(*) FROM pending GROUP BY flow, status")
        return {(flow, status): int(n) for flow, status, n in rows}
