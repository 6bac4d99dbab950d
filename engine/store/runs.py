"""Runs and flow runs: what ran when, with what summary (also drives per-flow schedules)."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from ml_connector.store.database import Database


class Runs:
    """Repository for ``runs`` and ``flow_runs``."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def start(self, run_id: str, mode: str) -> None:
        """Record a run as running; a run still 'running' was killed, when this process is the state's only user
        (DuckDB). A shared state (PostgreSQL) leaves the others' running runs alone: whoever takes a flow's lock
        after a killed worker says that worker's flow run was interrupted (``interrupt_flow``)."""
        with self.db.transaction():
            for table in ("runs", "flow_runs") if not self.db.shared else ():
                self.db.execute(f"UPDATE {table} SET status = 'interrupted', finished_at = now() "
                                "WHERE status = 'running'")
            self.db.execute("INSERT INTO runs (run_id, started_at, status, mode) VALUES (?, now(), 'running', ?)",
                            [run_id, mode])

    def interrupt_flow(self, flow: str) -> int:
        """Say that the runs of ``flow`` still 'running' were interrupted (call it holding the flow's lock: no one
        else runs it, so a running one was killed); returns how many."""
        with self.db.transaction():
            row = self.db.fetchone("SELECT count(*) FROM flow_runs WHERE flow = ? AND status = 'running'", [flow])
            self.db.execute("UPDATE flow_runs SET status = 'interrupted', finished_at = now() "
                            "WHERE flow = ? AND status = 'running'", [flow])
            # the killed worker's run itself, once none of its flows still runs (`status` lists runs)
            self.db.execute("UPDATE runs SET status = 'interrupted', finished_at = now() WHERE status = 'running' "
                            "AND run_id IN (SELECT run_id FROM flow_runs WHERE flow = ? AND status = 'interrupted') "
                            "AND NOT EXISTS (SELECT 1 FROM flow_runs f WHERE f.run_id = runs.run_id "
                            "AND f.status = 'running')", [flow])
        return int(row[0]) if row else 0

    def finish(self, run_id: str, status: str, summary: dict[str, Any]) -> None:
        self.db.execute("UPDATE runs SET finished_at = now(), status = ?, summary = ? WHERE run_id = ?",
                        [status, json.dumps(summary, default=str), run_id])

    def start_flow(self, run_id: str, flow: str) -> None:
        self.db.execute("INSERT INTO flow_runs (run_id, flow, started_at, status) VALUES (?, ?, now(), 'running')",
                        [run_id, flow])

    def finish_flow(self, run_id: str, flow: str, status: str, summary: dict[str, Any]) -> None:
        self.db.execute("UPDATE flow_runs SET finished_at = now(), status = ?, summary = ? "
                        "WHERE run_id = ? AND flow = ?", [status, json.dumps(summary, default=str), run_id, flow])

    def last_finished(self, flow: str) -> datetime | None:
        row = self.db.fetchone("SELECT max(f.finished_at) FROM flow_runs f JOIN runs r USING (run_id) "
                               "WHERE f.flow = ? AND f.finished_at IS NOT NULL AND r.mode = 'run'", [flow])
        return row[0] if row else None

    def recent(self, limit: int = 10) -> list[dict[str, Any]]:
        rows = self.db.fetchall("SELECT run_id, started_at, finished_at, status, mode, summary FROM runs "
                                "ORDER BY started_at DESC LIMIT ?", [limit])
        names = ("run_id", "started_at", "finished_at", "status", "mode", "summary")
        out = []
        for row in rows:
            item = dict(zip(names, row, strict=True))
            item["summary"] = json.loads(item["summary"]) if item["summary"] else None
            out.append(item)
        return out

    def flow_status(self) -> list[dict[str, Any]]:
        rows = self.db.fetchall(
            "SELECT flow, max(started_at), max(finished_at), (array_agg(status ORDER BY started_at DESC))[1] "
            "FROM flow_runs GROUP BY flow ORDER BY flow")
        return [{"flow": f, "last_started": s, "last_finished": e, "last_status": st} for f, s, e, st in rows]

    def get(self, run_id: str | None = None) -> dict[str, Any] | None:
        """One run (None: the latest sync, not a change made by hand), with its summary; None when unknown."""
        sql = "SELECT run_id, started_at, finished_at, status, mode, summary FROM runs "
        rows = (self.db.fetchall(sql + "WHERE run_id = ?", [run_id]) if run_id is not None
                else self.db.fetchall(sql + "WHERE mode IN ('run', 'replay') ORDER BY started_at DESC LIMIT 1"))
        if not rows:
            return None
        item = dict(zip(("run_id", "started_at", "finished_at", "status", "mode", "summary"), rows[0], strict=True))
        item["summary"] = json.loads(item["summary"]) if item["summary"] else None
        return item

    def flows_of(self, run_id: str) -> list[dict[str, Any]]:
        """The flow runs of one run, in the order they started, each with its summary (and progress timeline)."""
        rows = self.db.fetchall("SELECT flow, started_at, finished_at, status, summary FROM flow_runs "
                                "WHERE run_id = ? ORDER BY started_at, flow", [run_id])
        return [{"flow": f, "started_at": s, "finished_at": e, "status": st,
                 "summary": json.loads(summary) if summary else {}} for f, s, e, st, summary in rows]
