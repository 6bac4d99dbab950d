"""Pending records: deferred (waiting for a reference) or failed (parked with payload for replay)."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from ml_connector.store.database import Database

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
    next_attempt: datetime | None = None  # not sent again before then (UTC); None: at the next run
    outcome_unknown: bool = False  # an earlier create of this record may have landed: look for it first
    failures: int = 0  # runs in a row that this record failed


@dataclass(frozen=True)
class Parking:
    """How a record is parked, besides its reason."""

    next_attempt: datetime | None = None
    outcome_unknown: bool = False
    failures: int = 0


class Pending:
    """Repository for records that are not synced yet but must not be lost."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def park(self, flow: str, run_id: str, rows: Iterable[tuple[str, str, dict[str, Any], str]],
             parking: Mapping[str, Parking] | None = None) -> None:
        """Store (source_key, status, source_record, reason); a record parked again counts one more attempt.

        ``parking`` says, by source key, when a record may be sent again and whether an earlier create may have
        landed (a key it does not name: at the next run).
        """
        given = parking or {}
        latest = {}
        for key, status, record, reason in rows:  # one row per key
            how = given.get(key, Parking())
            latest[key] = (flow, key, status, json.dumps(record, default=str), reason, run_id, run_id,
                           how.next_attempt, how.outcome_unknown, how.failures)
        batch = list(latest.values())
        self.db.insert_rows(
            "pending", (("flow", "VARCHAR"), ("source_key", "VARCHAR"), ("status", "VARCHAR"),
                        ("source_record", "JSON"), ("reason", "VARCHAR"), ("first_run", "VARCHAR"),
                        ("last_run", "VARCHAR"), ("next_attempt", "TIMESTAMP"), ("outcome_unknown", "BOOLEAN"),
                        ("failures", "INTEGER")), batch, computed={"attempts": "1", "updated_at": "now()"},
            on_conflict="ON CONFLICT (flow, source_key) DO UPDATE SET status = excluded.status, "
                        "source_record = excluded.source_record, reason = excluded.reason, "
                        "attempts = pending.attempts + 1, last_run = excluded.last_run, updated_at = now(), "
                        "next_attempt = excluded.next_attempt, outcome_unknown = excluded.outcome_unknown, "
                        "failures = excluded.failures")

    def keep(self, flow: str, rows: Iterable[tuple[str, dict[str, Any]]]) -> None:
        """A parked record met again while it waits: keep the newer source version, as it is (no attempt)."""
        for key, record in rows:
            self.db.execute("UPDATE pending SET source_record = ? WHERE flow = ? AND source_key = ?",
                            [json.dumps(record, default=str), flow, key])

    def clear(self, flow: str, source_keys: Iterable[str]) -> None:
        keys = list(source_keys)
        if keys:
            self.db.execute("DELETE FROM pending WHERE flow = ? AND source_key IN (SELECT unnest(?::VARCHAR[]))",
                            [flow, keys])

    def standing(self, flow: str, source_keys: Iterable[str]) -> dict[str, PendingRecord]:
        """The parked records of these keys, by key (a flow with no parked record, the usual case, costs one small
        query instead of a search for a page of keys)."""
        keys = list(source_keys)
        if not keys or self.db.fetchone("SELECT 1 FROM pending WHERE flow = ? LIMIT 1", [flow]) is None:
            return {}
        return {p.source_key: p for p in self.list(flow=flow, keys=keys)}

    def list(self, flow: str | None = None, status: str | None = None, reason_like: str | None = None,
             run_id: str | None = None, keys: list[str] | None = None) -> list[PendingRecord]:
        sql = ("SELECT flow, source_key, status, source_record, reason, attempts, next_attempt, outcome_unknown, "
               "failures FROM pending WHERE true")
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
        return [PendingRecord(f, k, s, json.loads(r), reason, int(a), due, bool(unknown), int(n))
                for f, k, s, r, reason, a, due, unknown, n in self.db.fetchall(sql, params)]

    def discard(self, flow: str, keys: Iterable[str] = (), status: str | None = None) -> tuple[PendingRecord, ...]:
        """Remove parked records a person gave up on (these keys, or all of ``status``); returns what went."""
        wanted = list(keys)
        gone = self.list(flow=flow, status=status, keys=wanted or None) if wanted or status else []
        self.clear(flow, [p.source_key for p in gone])
        return tuple(gone)

    def counts(self) -> dict[tuple[str, str], int]:
        rows = self.db.fetchall("SELECT flow, status, count(*) FROM pending GROUP BY flow, status")
        return {(flow, status): int(n) for flow, status, n in rows}
