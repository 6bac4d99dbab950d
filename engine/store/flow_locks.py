"""Flow leases: a flow never runs twice at once, whichever worker on whichever machine takes its task.

A lease row (flow, holder, expires_at) rather than a session lock: it lives in the state database every worker
shares, survives the connection, and a holder killed mid-flow lets go by itself when its lease runs out (the holder
renews it while the flow runs). Taking is one statement (insert, or take over a row whose lease has run out), so two
workers racing for a flow cannot both win. Times are the database's clock unless a test passes ``now``: workers on
several machines then compare against one clock.
"""

from __future__ import annotations

from datetime import datetime

from ml_connector.store.database import Database

#: The moment a statement works at: the caller's ``now`` or, when it passes None, the database's clock.
_AT = "coalesce(CAST(? AS TIMESTAMP), CAST(now() AS TIMESTAMP))"
_UNTIL = f"{_AT} + CAST(? AS INTEGER) * INTERVAL '1 millisecond'"
#: Flow-run statuses that mean a run did not end on its own (still on, or found killed by a later run).
_UNFINISHED = ("running", "interrupted")


class FlowLocks:
    """Repository for ``flow_locks``."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def take(self, flow: str, holder: str, *, ttl: float, now: datetime | None = None) -> bool:
        """Lease ``flow`` to ``holder`` for ``ttl`` seconds; False when another holder's lease has not run out."""
        ms = round(ttl * 1000)
        with self.db.transaction():
            self.db.execute(
                f"INSERT INTO flow_locks (flow, holder, expires_at) VALUES (?, ?, {_UNTIL}) "
                "ON CONFLICT (flow) DO UPDATE SET holder = excluded.holder, expires_at = excluded.expires_at "
                f"WHERE flow_locks.expires_at <= {_AT} OR flow_locks.holder = excluded.holder",
                [flow, holder, now, ms, now])
            row = self.db.fetchone("SELECT holder FROM flow_locks WHERE flow = ?", [flow])
        return row is not None and row[0] == holder

    def take_over(self, flow: str, holder: str, stale: str, *, ttl: float) -> bool:
        """Take ``flow`` from ``stale``, a holder known to be dead (its lease has not run out yet); False when
        someone else took or let go of it meanwhile."""
        with self.db.transaction():
            self.db.execute(f"UPDATE flow_locks SET holder = ?, expires_at = {_UNTIL} WHERE flow = ? AND holder = ?",
                            [holder, None, round(ttl * 1000), flow, stale])
            row = self.db.fetchone("SELECT holder FROM flow_locks WHERE flow = ?", [flow])
        return row is not None and row[0] == holder

    def renew(self, flow: str, holder: str, *, ttl: float, now: datetime | None = None) -> bool:
        """Extend ``holder``'s lease; False when it lost it (ran out and another worker took the flow)."""
        with self.db.transaction():
            self.db.execute(f"UPDATE flow_locks SET expires_at = {_UNTIL} WHERE flow = ? AND holder = ?",
                            [now, round(ttl * 1000), flow, holder])
            row = self.db.fetchone("SELECT holder FROM flow_locks WHERE flow = ?", [flow])
        return row is not None and row[0] == holder

    def release(self, flow: str, holder: str) -> None:
        """Let go of ``flow`` (only ``holder``'s own lease: a lease lost to another worker stays theirs)."""
        self.db.execute("DELETE FROM flow_locks WHERE flow = ? AND holder = ?", [flow, holder])

    def holder(self, flow: str, *, now: datetime | None = None) -> str | None:
        """Who holds ``flow``'s lease now; None when nobody does (or the last holder's lease ran out)."""
        row = self.db.fetchone(f"SELECT holder FROM flow_locks WHERE flow = ? AND expires_at > {_AT}", [flow, now])
        return row[0] if row else None

    def last_completed(self, flow: str) -> datetime | None:
        """When the last run of ``flow`` that ended on its own finished (a killed run does not count: its flow is
        due again at once, and the queue's redelivery or the next task runs it)."""
        row = self.db.fetchone(
            "SELECT max(f.finished_at) FROM flow_runs f JOIN runs r USING (run_id) WHERE f.flow = ? "
            "AND r.mode = 'run' AND f.finished_at IS NOT NULL AND f.status NOT IN (?, ?)", [flow, *_UNFINISHED])
        return row[0] if row else None

    def completed_after(self, flow: str, after: datetime | None) -> bool:
        """Whether a run of ``flow`` ended on its own (ok, partial, failed...) after ``after`` (None: ever).

        A redelivered task asks this under the lease: its cycle's run already happened when one did, and running
        again would only cost API calls. A killed run (left 'running', later marked 'interrupted') does not count,
        so the task that finds it runs the flow again.
        """
        row = self.db.fetchone(
            "SELECT count(*) FROM flow_runs f JOIN runs r USING (run_id) WHERE f.flow = ? AND r.mode = 'run' "
            "AND f.finished_at IS NOT NULL AND f.status NOT IN (?, ?) AND (CAST(? AS TIMESTAMP) IS NULL "
            "OR f.finished_at > CAST(? AS TIMESTAMP))", [flow, *_UNFINISHED, after, after])
        return bool(row and row[0])
