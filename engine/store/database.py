"""The state database: one DuckDB file, versioned migrations, the only place that speaks SQL."""

from __future__ import annotations

import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import duckdb

from engine.errors import MlConnectorError

MIGRATIONS: list[str] = [
    # 1: the first schema
    """
    CREATE TABLE runs (
        run_id VARCHAR PRIMARY KEY, started_at TIMESTAMP NOT NULL, finished_at TIMESTAMP,
        status VARCHAR NOT NULL, mode VARCHAR NOT NULL, summary JSON);
    CREATE TABLE flow_runs (
        run_id VARCHAR NOT NULL, flow VARCHAR NOT NULL, started_at TIMESTAMP NOT NULL,
        finished_at TIMESTAMP, status VARCHAR NOT NULL, summary JSON, PRIMARY KEY (run_id, flow));
    CREATE TABLE audit (
        run_id VARCHAR NOT NULL, flow VARCHAR NOT NULL, source_key VARCHAR NOT NULL, target_id VARCHAR,
        action VARCHAR NOT NULL, outcome VARCHAR NOT NULL, attempts INTEGER NOT NULL DEFAULT 1,
        error VARCHAR, payload_hash VARCHAR, logged_at TIMESTAMP NOT NULL DEFAULT now());
    CREATE TABLE id_map (
        flow VARCHAR NOT NULL, source_key VARCHAR NOT NULL, target_id VARCHAR NOT NULL,
        payload_hash VARCHAR, updated_at TIMESTAMP NOT NULL DEFAULT now(), PRIMARY KEY (flow, source_key));
    CREATE INDEX id_map_by_target ON id_map (flow, target_id);
    CREATE TABLE watermarks (
        flow VARCHAR PRIMARY KEY, value VARCHAR NOT NULL, updated_at TIMESTAMP NOT NULL DEFAULT now());
    CREATE TABLE pending (
        flow VARCHAR NOT NULL, source_key VARCHAR NOT NULL, status VARCHAR NOT NULL,
        source_record JSON NOT NULL, reason VARCHAR, attempts INTEGER NOT NULL DEFAULT 1,
        first_run VARCHAR, last_run VARCHAR, updated_at TIMESTAMP NOT NULL DEFAULT now(),
        PRIMARY KEY (flow, source_key));
    CREATE TABLE credentials (
        name VARCHAR PRIMARY KEY, ciphertext VARCHAR NOT NULL, updated_at TIMESTAMP NOT NULL DEFAULT now());
    """,
    # 2: when each flow last read its whole source (reconciliation)
    """
    CREATE TABLE full_reads (flow VARCHAR PRIMARY KEY, finished_at TIMESTAMP NOT NULL);
    """,
    # 3: what else an audit row must say about its record (e.g. stamped after the read began)
    """
    ALTER TABLE audit ADD COLUMN note VARCHAR;
    """,
]


class StateError(MlConnectorError):
    """The state database cannot be opened (locked by another process, unreadable, newer schema)."""


class Database:
    """A DuckDB connection with migrations applied; thread-safe through one lock."""

    def __init__(self, path: str | Path) -> None:
        self.path = str(path)
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        try:
            self._conn = duckdb.connect(self.path)
        except duckdb.IOException as exc:
            raise StateError(f"cannot open the state database {self.path}: another ml-connector process may be "
                             f"using it ({str(exc).splitlines()[0]})") from exc
        self._conn.execute("SET TimeZone = 'UTC'")
        self._lock = threading.RLock()
        self._migrate()

    def _migrate(self) -> None:
        self._conn.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
        row = self._conn.execute("SELECT max(version) FROM schema_version").fetchone()
        current = (row[0] if row else None) or 0
        if current > len(MIGRATIONS):
            raise StateError(f"the state database {self.path} has schema version {current}, newer than this "
                             f"ml-connector knows ({len(MIGRATIONS)}); upgrade ml-connector")
        for version, sql in enumerate(MIGRATIONS, start=1):
            if version <= current:
                continue
            with self.transaction():
                self._conn.execute(sql)
                self._conn.execute("INSERT INTO schema_version VALUES (?)", [version])

    @contextmanager
    def transaction(self) -> Iterator[None]:
        with self._lock:
            self._conn.execute("BEGIN TRANSACTION")
            try:
                yield
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")

    def execute(self, sql: str, params: Sequence[Any] | None = None) -> duckdb.DuckDBPyConnection:
        with self._lock:
            return self._conn.execute(sql, params or [])

    def insert_rows(self, table: str, columns: Sequence[tuple[str, str]], rows: Sequence[Sequence[Any]], *,
                    computed: Mapping[str, str] | None = None, on_conflict: str = "") -> None:
        """Insert many rows in one statement, passing one array per column (DuckDB unnests them columnar).

        ``columns`` are (name, SQL type) pairs matching each row; ``computed`` adds columns set by an SQL
        expression (e.g. ``now()``); ``on_conflict`` is appended as is (e.g. ``ON CONFLICT (k) DO UPDATE …``).
        """
        if not rows:
            return
        extra = dict(computed or {})
        names = [name for name, _ in columns] + list(extra)
        unnested = ", ".join(f"unnest(?::{sql_type}[]) AS {name}" for name, sql_type in columns)
        selected = ", ".join([name for name, _ in columns] + list(extra.values()))
        statement = (f"INSERT INTO {table} ({', '.join(names)}) SELECT {selected} FROM (SELECT {unnested}) "
                     f"{on_conflict}")
        arrays = [list(column) for column in zip(*rows, strict=True)]
        with self._lock:
            self._conn.execute(statement, arrays)

    def fetchall(self, sql: str, params: Sequence[Any] | None = None) -> list[tuple[Any, ...]]:
        with self._lock:
            return self._conn.execute(sql, params or []).fetchall()

    def fetchone(self, sql: str, params: Sequence[Any] | None = None) -> tuple[Any, ...] | None:
        with self._lock:
            return self._conn.execute(sql, params or []).fetchone()

    def close(self) -> None:
        with self._lock:
            self._conn.close()
