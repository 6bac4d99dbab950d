"""Watermarks: how far each flow's incremental read has safely progressed, and when it last read everything."""

from __future__ import annotations

from datetime import datetime

from ml_connector.store.database import Database


class Watermarks:
    """Repository for per-flow watermarks (opaque strings in the source's own format)."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def get(self, flow: str) -> str | None:
        row = self.db.fetchone("SELECT value FROM watermarks WHERE flow = ?", [flow])
        return row[0] if row else None

    def set(self, flow: str, value: str) -> None:
        self.db.execute(
            "INSERT INTO watermarks (flow, value, updated_at) VALUES (?, ?, now()) "
            "ON CONFLICT (flow) DO UPDATE SET value = excluded.value, updated_at = now()", [flow, value])

    def reset(self, flow: str) -> None:
        self.db.execute("DELETE FROM watermarks WHERE flow = ?", [flow])

    def last_full_read(self, flow: str) -> datetime | None:
        row = self.db.fetchone("SELECT finished_at FROM full_reads WHERE flow = ?", [flow])
        return row[0] if row else None

    def full_read_done(self, flow: str) -> None:
        self.db.execute("INSERT INTO full_reads (flow, finished_at) VALUES (?, now()) "
                        "ON CONFLICT (flow) DO UPDATE SET finished_at = now()", [flow])
