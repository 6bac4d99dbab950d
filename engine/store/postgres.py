"""The state on PostgreSQL: the same repositories over a database that many workers share.

Each tenant's rows live in a schema of their own (created when missing; ``search_path`` points the connection at it),
so one database holds many tenants. Migrations are DuckDB's, translated (store/dialect.py), run under an advisory lock
so two workers starting together migrate once. There is no state-wide lock (DuckDB's file lock): workers take a
lock per flow instead (``advisory_lock``), held by their connection, so a killed worker's locks go with it.

The audit table is partitioned by month on ``logged_at`` (a DEFAULT partition catches the rest): pruning drops whole
months instead of deleting row by row, which on PostgreSQL leaves the table bloated until a vacuum, and a query by
time reads only its months. Partitions for this month and the next are created at each open and each prune.
"""

from __future__ import annotations

import hashlib
import logging
import re
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

from ml_connector.extras import import_from_extra
from ml_connector.http.redact import REDACTOR
from ml_connector.store.database import MIGRATIONS, Database, StateError
from ml_connector.store.dialect import placeholders, postgres_migration
from ml_connector.store.fingerprints import FingerprintCache

if TYPE_CHECKING:
    from psycopg import Connection

log = logging.getLogger("ml_connector.state")
SCHEMA_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")
PARTITION = re.compile(r"^audit_(\d{4})_(\d{2})$")


@dataclass(frozen=True)
class PostgresTarget:
    """Where a PostgreSQL state lives: a URL (``postgresql://user@host:5432/db``), the password (resolved from a
    secret reference, never written in the URL of a workspace), the tenant's schema, and the workspace key file
    (None: ``ML_CONNECTOR_KEY`` or a key for this process only)."""

    url: str
    schema: str = "public"
    password: str | None = None
    key_file: Path | None = None


def shown_url(url: str) -> str:
    """The URL without its password (for messages and ``Database.path``)."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    netloc = f"{parts.username}@{host}" if parts.username else host
    if parts.port:
        netloc += f":{parts.port}"
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


def lock_id(schema: str, key: str) -> int:
    """A lock name as PostgreSQL's 64-bit advisory lock key, per schema (tenants' locks never meet)."""
    digest = hashlib.blake2b(f"{schema}\0{key}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


def first_line(exc: BaseException) -> str:
    return REDACTOR(str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__)


class PostgresDatabase(Database):
    """A PostgreSQL connection (autocommit; ``transaction`` for atomic groups) with migrations applied."""

    shared = True
    fingerprint_byteorder = "big"
    refuses_nul = "PostgreSQL"  # its text stores NUL as U+FFFD: a key holding one would not find its own link

    def __init__(self, target: PostgresTarget) -> None:  # no DuckDB set-up to inherit: Database.__init__ not called
        psycopg = import_from_extra("psycopg", "cluster")
        self._psycopg = psycopg
        self.path = f"{shown_url(target.url)} (schema {target.schema})"  # one database holds many tenants' states
        self.schema = target.schema
        self._key_file = target.key_file
        self._lock = threading.RLock()
        self._in_transaction = False
        self._held: set[str] = set()
        self.fingerprints = FingerprintCache()
        if not SCHEMA_NAME.match(target.schema):
            raise StateError(f"the state's PostgreSQL schema {target.schema!r} must be lower-case letters, digits "
                             "and underscores (at most 63, not starting with a digit)")
        password = target.password if target.password is not None else urlsplit(target.url).password
        REDACTOR.add(password)
        try:
            self._pg: Connection[Any] = psycopg.connect(
                target.url, password=target.password, autocommit=True, connect_timeout=15,
                options="-c TimeZone=UTC", application_name="ml-connector")
        except psycopg.Error as exc:
            raise StateError(f"cannot connect to the state database {self.path}: {first_line(exc)}") from None
        from psycopg.types.string import StrDumperUnknown, TextLoader

        class NulFreeDumper(StrDumperUnknown):
            """PostgreSQL text cannot hold NUL (DuckDB's can): one becomes U+FFFD, the same way in every value and
            lookup, instead of a run failing on a key or an error message that holds one."""

            def dump(self, obj: str) -> Any:
                return super().dump(obj.replace("\0", "\ufffd"))

        self._pg.adapters.register_dumper(str, NulFreeDumper)
        for json_type in ("json", "jsonb"):  # the repositories parse JSON themselves, as they get it from DuckDB
            self._pg.adapters.register_loader(json_type, TextLoader)
        try:
            with self._io():
                self._pg.execute(f'SET search_path TO "{self.schema}"')
            self._migrate()
            self.create_audit_partitions(datetime.now(UTC))
        except BaseException:
            self._pg.close()
            raise

    @property
    def key_file(self) -> Path | None:
        return self._key_file

    def fingerprint_sql(self, expression: str) -> str:
        return f"('x' || left(md5(({expression})::text), 16))::bit(64)::bigint"

    def _migrate(self) -> None:
        migrating = lock_id(self.schema, "migrations")
        with self._io():
            self._pg.execute("SELECT pg_advisory_lock(%s)", [migrating])
            try:
                self._pg.execute(f'CREATE SCHEMA IF NOT EXISTS "{self.schema}"')
                self._pg.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
                row = self._pg.execute("SELECT max(version) FROM schema_version").fetchone()
                current = (row[0] if row else None) or 0
                if current > len(MIGRATIONS):
                    raise StateError(f"the state database {self.path} has schema version "
                                     f"{current}, newer than this ml-connector knows ({len(MIGRATIONS)}); upgrade "
                                     "ml-connector")
                for version, sql in enumerate(MIGRATIONS, start=1):
                    if version > current:
                        with self._pg.transaction():
                            self._pg.execute(postgres_migration(version, sql).encode())
                            self._pg.execute("INSERT INTO schema_version VALUES (%s)", [version])
            finally:
                self._pg.execute("SELECT pg_advisory_unlock(%s)", [migrating])

    @contextmanager
    def _io(self) -> Iterator[None]:
        """A lost or refused connection said as a state error, without the password."""
        try:
            yield
        except self._psycopg.OperationalError as exc:
            raise StateError(f"the state database {self.path} cannot be used: {first_line(exc)}") from exc

    @contextmanager
    def roomy(self) -> Iterator[None]:
        """PostgreSQL's memory is the server's to manage: nothing to lift."""
        yield

    @contextmanager
    def transaction(self) -> Iterator[None]:
        with self._lock, self._io(), self._pg.transaction():
            self._in_transaction = True
            try:
                yield
            finally:
                self._in_transaction = False

    def execute(self, sql: str, params: Sequence[Any] | None = None) -> Any:
        with self._lock, self._io():
            return self._pg.execute(placeholders(sql).encode(), list(params or []))

    def _write(self, statement: str, params: Sequence[Any]) -> None:
        with self._lock, self._io():
            self._pg.execute(placeholders(statement).encode(), list(params))

    def fetchall(self, sql: str, params: Sequence[Any] | None = None) -> list[tuple[Any, ...]]:
        with self._lock, self._io():
            return self._pg.execute(placeholders(sql).encode(), list(params or [])).fetchall()

    def fetchone(self, sql: str, params: Sequence[Any] | None = None) -> tuple[Any, ...] | None:
        with self._lock, self._io():
            return self._pg.execute(placeholders(sql).encode(), list(params or [])).fetchone()

    def fetch_in_chunks(self, sql: str, params: Sequence[Any] | None, size: int,
                        sink: Callable[[list[tuple[Any, ...]]], None]) -> None:
        """A server-side cursor: the rows come ``size`` at a time, never all at once."""
        with self._lock, self._io(), self._pg.transaction(), self._pg.cursor(name="chunks") as cursor:
            cursor.itersize = size
            cursor.execute(placeholders(sql).encode(), list(params or []))
            while chunk := cursor.fetchmany(size):
                sink(chunk)

    def advisory_lock(self, key: str) -> bool:
        with self._lock, self._io():
            if key in self._held:
                return False
            row = self._pg.execute("SELECT pg_try_advisory_lock(%s)", [lock_id(self.schema, key)]).fetchone()
            if row is None or not row[0]:
                return False
            self._held.add(key)
            return True

    def unlock(self, key: str) -> None:
        with self._lock, self._io():
            if key in self._held:
                self._pg.execute("SELECT pg_advisory_unlock(%s)", [lock_id(self.schema, key)])
                self._held.discard(key)

    def copy_to(self, sql: str, params: Sequence[Any], path: str, options: str) -> None:
        """COPY TO a file would write on the database server: the rows go through an in-memory DuckDB instead,
        which writes the same CSV and Parquet as a DuckDB state."""
        import duckdb

        local = duckdb.connect(":memory:")
        try:
            with self._lock, self._io(), self._pg.transaction(), self._pg.cursor(name="export") as cursor:
                cursor.execute(placeholders(sql).encode(), list(params))
                names = [column.name for column in cursor.description or []]
                types = [_duck_type(column.type_code) for column in cursor.description or []]
                local.execute("CREATE TABLE exported (" + ", ".join(f'"{n}" {t}' for n, t in zip(names, types,
                                                                                               strict=True)) + ")")
                unnested = ", ".join(f"unnest(?::{t}[])" for t in types)
                while chunk := cursor.fetchmany(10_000):
                    arrays = [list(column) for column in zip(*chunk, strict=True)]
                    local.execute(f"INSERT INTO exported SELECT {unnested}", arrays)
            target = path.replace("'", "''")
            local.execute(f"COPY exported TO '{target}' ({options})")
        finally:
            local.close()

    def create_audit_partitions(self, moment: datetime) -> None:
        """This month's and the next month's audit partitions (rows outside them go to the DEFAULT partition; a
        month whose rows are already there, after a process ran for months without reopening, stays there)."""
        start = datetime(moment.year, moment.month, 1)
        for _ in range(2):
            end = datetime(start.year + start.month // 12, start.month % 12 + 1, 1)
            name = f"audit_{start:%Y_%m}"
            try:
                with self.transaction():
                    self.execute(f"CREATE TABLE IF NOT EXISTS {name} PARTITION OF audit FOR VALUES FROM "
                                 f"('{start:%Y-%m-%d}') TO ('{end:%Y-%m-%d}')")
            except self._psycopg.errors.CheckViolation:
                log.info("audit rows of %s stay in the default partition", name)
            except (self._psycopg.errors.DuplicateTable, self._psycopg.errors.UniqueViolation):  # another worker
                pass
            start = end

    def drop_audit_before(self, cutoff: datetime) -> int:
        rows = self.fetchall("SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
                             "JOIN pg_class p ON p.oid = i.inhparent WHERE p.relname = 'audit' "
                             "AND p.relnamespace = current_schema()::regnamespace")
        dropped = 0
        for (name,) in rows:
            month = PARTITION.match(name)
            if month is None:
                continue
            year, number = int(month[1]), int(month[2])
            end = datetime(year + number // 12, number % 12 + 1, 1)
            if end <= cutoff:
                counted = self.fetchone(f"SELECT count(*) FROM {name}")
                self.execute(f"DROP TABLE {name}")
                dropped += int(counted[0]) if counted else 0
        self.create_audit_partitions(datetime.now(UTC))
        return dropped

    def close(self) -> None:
        with self._lock, suppress(self._psycopg.Error):
            try:
                if self._held:  # at once: the server notices a closed connection a moment later
                    self._pg.execute("SELECT pg_advisory_unlock_all()")
            finally:
                self._held.clear()
                self._pg.close()


_DUCK_TYPES = {16: "BOOLEAN", 17: "BLOB", 20: "BIGINT", 21: "SMALLINT", 23: "INTEGER", 114: "JSON", 3802: "JSON",
               701: "DOUBLE", 1114: "TIMESTAMP", 1184: "TIMESTAMPTZ", 1700: "DOUBLE"}


def _duck_type(oid: int) -> str:
    """The DuckDB type of a PostgreSQL column (by type oid; text and the rest as VARCHAR)."""
    return _DUCK_TYPES.get(oid, "VARCHAR")
