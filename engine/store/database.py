"""The state database: one DuckDB file, versioned migrations, the only place that speaks SQL."""

from __future__ import annotations

import logging
import math
import os
import re
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from datetime import datetime
from pathlib import Path
from typing import IO, Any, TypeVar

import duckdb

from ml_connector.errors import MlConnectorError
from ml_connector.store import checkpoints
from ml_connector.store.fingerprints import FingerprintCache

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
    # 4: when a parked record may be sent again (back-off, grace period) and whether an earlier create may have landed
    """
    ALTER TABLE pending ADD COLUMN next_attempt TIMESTAMP;
    ALTER TABLE pending ADD COLUMN outcome_unknown BOOLEAN NOT NULL DEFAULT false;
    ALTER TABLE pending ADD COLUMN failures INTEGER NOT NULL DEFAULT 0;
    """,
    # 5: two-way flows: what a target record held at the writing flow's fields, as last read or written
    """
    CREATE TABLE target_values (
        flow VARCHAR NOT NULL, target_id VARCHAR NOT NULL, target_values JSON NOT NULL,
        updated_at TIMESTAMP NOT NULL DEFAULT now(), PRIMARY KEY (flow, target_id));
    """,
    # 6: what was sent for a record (the payload, secrets redacted), not only its hash
    """
    ALTER TABLE audit ADD COLUMN payload JSON;
    """,
    # 7: webhook channels registered with source systems (their tokens are kept encrypted in credentials)
    """
    CREATE TABLE channels (
        connection VARCHAR NOT NULL, channel VARCHAR NOT NULL, entity VARCHAR NOT NULL, channel_id VARCHAR NOT NULL,
        url VARCHAR NOT NULL, status VARCHAR NOT NULL, reason VARCHAR, expires_at TIMESTAMP,
        updated_at TIMESTAMP NOT NULL DEFAULT now(), PRIMARY KEY (connection, channel, entity));
    """,
    # 8: change streams: the replay id each subscription resumes after
    """
    CREATE TABLE stream_positions (
        connection VARCHAR NOT NULL, stream VARCHAR NOT NULL, topic VARCHAR NOT NULL, replay_id BLOB NOT NULL,
        saved_at TIMESTAMP NOT NULL, PRIMARY KEY (connection, stream, topic));
    """,
    # 9: unchanged records of a flow run are one summary row (source_key NULL, count N), not one row each
    """
    ALTER TABLE audit ALTER COLUMN source_key DROP NOT NULL;
    ALTER TABLE audit ADD COLUMN count INTEGER NOT NULL DEFAULT 1;
    """,
    # 10: records filtered with an audit row of their own already: filtered again, only counted (store/filtered.py)
    """
    CREATE TABLE filtered (
        flow VARCHAR NOT NULL, source_key VARCHAR NOT NULL, reason VARCHAR NOT NULL DEFAULT '',
        filtered_at TIMESTAMP NOT NULL DEFAULT now(), PRIMARY KEY (flow, source_key));
    """,
    # 11: flow leases: which worker runs a flow, until when (store/flow_locks.py; a killed holder's lease runs out)
    """
    CREATE TABLE flow_locks (flow VARCHAR PRIMARY KEY, holder VARCHAR NOT NULL, expires_at TIMESTAMP NOT NULL);
    """,
    # 12: the inbox of a shared state (events/shared_inbox.py: receiver replicas behind one address see one inbox).
    # A DuckDB state's inbox is a file of its own (events/inbox.py: a receiver never waits for a run's file lock), so
    # on DuckDB this table stays empty. IF NOT EXISTS: shared states made before this migration created it at open.
    """
    CREATE SEQUENCE IF NOT EXISTS inbox_seq;
    CREATE TABLE IF NOT EXISTS inbox (
        seq BIGINT PRIMARY KEY DEFAULT nextval('inbox_seq'), connection VARCHAR NOT NULL, entity VARCHAR NOT NULL,
        record_id VARCHAR NOT NULL, operation VARCHAR, received_at TIMESTAMP NOT NULL, done_at TIMESTAMP);
    """,
]


class StateError(MlConnectorError):
    """The state database cannot be opened (locked by another process, unreadable, newer schema)."""


class StateLocked(StateError):
    """Another process holds the state file (a manual run, a service tick): it is free again once that ends."""


def open_error(path: str, exc: duckdb.Error) -> StateError:
    """What DuckDB's refusal to open ``path`` means for a user: locked, truncated, corrupted or read-only."""
    detail = str(exc).splitlines()[0].removeprefix("IO Error: ")
    if "lock on file" in detail or "Conflicting lock" in detail:
        return StateLocked(f"cannot open the state database {path}: another ml-connector process is using it "
                           f"({detail})")
    if "Could not read enough bytes" in detail:
        return StateError(f"the state database {path} is truncated ({detail}); restore it from a backup")
    if "not a valid DuckDB database" in detail or "Corrupt" in detail or "checksum" in detail.lower():
        return StateError(f"the state database {path} is not a valid state database (corrupted, or another kind "
                          "of file); restore it from a backup")
    for reason in ("Permission denied", "Read-only file system"):
        if reason in detail:
            return StateError(f"the state database {path} cannot be written (read-only or not ours: {reason})")
    return StateError(f"cannot open the state database {path}: {detail}")


def _create_owner_only(path: Path) -> None:
    """Make the folders and the empty database a new state needs, readable by their owner only (0700, 0600).

    The state holds id maps, audit rows and encrypted secrets; DuckDB creates files by the process umask, so a
    new file is created here under a umask that leaves group and others out.
    """
    missing = [folder for folder in (path.parent, *path.parent.parents) if not folder.exists()]
    for folder in reversed(missing):
        try:
            folder.mkdir(mode=0o700, exist_ok=True)
        except OSError as exc:
            raise StateError(f"cannot create the folder {folder} for the state database: {exc.strerror}") from exc
    if path.exists():
        return
    previous = os.umask(0o077)
    try:
        duckdb.connect(str(path)).close()
    except duckdb.Error as exc:
        raise open_error(str(path), exc) from exc
    finally:
        os.umask(previous)


log = logging.getLogger("ml_connector.state")
T = TypeVar("T")
#: Log bytes past which a write folds the log into the file. Twice DuckDB's default: each checkpoint rewrites every
#: index whole (duckdb/duckdb#24848), about 1 s and a transient peak at a million links, and the rows written
#: since stay within the cap either way. Measured replaying a million-record first sync's state writes alone:
#: 16 MiB peaked at 146 MiB at 100k links and 196-199 at 1M; 32 MiB at 158 and 189; 64 MiB at 161 and 187.
CHECKPOINT_LOG_BYTES = 32 * 2**20
MEMORY_ENV = "ML_CONNECTOR_DUCKDB_MEMORY"
MEMORY_FLOOR_MB = 64  # DuckDB's memory cap of a state file (``memory_limit``), unless its indexes need more
INDEX_BASE_MB = 24
INDEX_ENTRY_BYTES = 16
LEAN_LIMIT = "8MB"  # while a chunked scan streams a whole flow's rows (``fetch_in_chunks``)
ROOMY_LIMIT = "50%"  # of the machine's memory, while maintenance over a whole flow or table runs (``roomy``)
#: Rows per row group of a state file (DuckDB's default is 122,880). A page's lookup reads the groups its key range
#: touches (store/key_range.py): with small groups that is about the same at 10k or 1M links (issue 24, target 5).
ROW_GROUP_ROWS = 8_192  # 16,384 measured 1.5-1.8x at 1M vs 10k links; 8,192: 1.2-1.6x (the rest is per query)


def memory_limit(index_entries: int = 0) -> str:
    """DuckDB's memory limit for a state file: by default it takes 80% of the machine as cache, and a run's RSS grew
    with the state (a first sync of a million records peaked at 446 MiB with 256 MB). A run works a page at a time,
    which 64 MB holds, but DuckDB keeps the indexes it writes to (id map, parked, filtered records) in memory it
    cannot give back: measured, 24 MB failed a commit at a million links and 32 MB held, so the cap grows past 64 MB
    with the state at 16 bytes an index entry over a 24 MB base (about twice what was measured; a state of five
    million links gets ~180 MB). A write or checkpoint the cap refuses anyway runs again with it lifted
    (``Database.atomically``), so the cap bounds memory and never fails a run. Lower caps do not make a first sync
    flatter: 40 and 48 MB cut the 100k sync's peak at least as much as the million's (issue 24). Maintenance over a
    whole flow or table lifts it for its statements (``Database.roomy``). ``$ML_CONNECTOR_DUCKDB_MEMORY`` (e.g.
    ``1GB``) sets another."""
    configured = os.environ.get(MEMORY_ENV)
    if configured:
        return configured
    return f"{max(MEMORY_FLOOR_MB, math.ceil(INDEX_BASE_MB + index_entries * INDEX_ENTRY_BYTES / 1e6))}MB"

_REFUSED = re.compile(r"(could not allocate|failed to pin|failed to allocate) (block|data)")


def refused_by_the_cap(exc: duckdb.Error) -> bool:
    """DuckDB's memory cap refused a block: an OutOfMemoryException; at COMMIT a TransactionException; in a
    checkpoint an IOException (the database then invalidated)."""
    return isinstance(exc, duckdb.OutOfMemoryException) or (
        isinstance(exc, duckdb.TransactionException | duckdb.IOException) and _REFUSED.search(str(exc)) is not None)


_HELD: dict[tuple[str, str], int] = {}  # process-local flow locks of DuckDB states: (state, key) -> holder id
_HELD_LOCK = threading.Lock()


class Database:
    """A DuckDB connection with migrations applied; thread-safe through one lock.

    One process at a time holds a DuckDB state (StateLocked for another); engine/store/postgres.py's
    ``PostgresDatabase`` has the same methods over a database many workers share.
    """

    shared = False  # whether other processes use this state at the same time (PostgreSQL: yes)
    fingerprint_byteorder = "little"  # how ``fingerprint_sql`` reads the MD5 digest (store/fingerprints.py)
    refuses_nul: str | None = None  # a backend whose text cannot hold NUL: its name, for the record it parks

    def __init__(self, path: str | Path) -> None:
        self.path = str(path)
        if self.path != ":memory:":
            _create_owner_only(Path(self.path))
        wal = Path(self.path + ".wal")
        self._wal = str(wal)
        self._lock_file: IO[bytes] | None = None
        if self.path != ":memory:":
            try:
                self._lock_file = checkpoints.lock(self.path)
            except checkpoints.Locked as exc:
                raise StateLocked(f"cannot open the state database {self.path}: another ml-connector process is "
                                  f"using it ({exc})") from None
            checkpoints.recover(self.path, self._wal)
        wal_existed = self.path != ":memory:" and wal.exists()  # before connecting: DuckDB replays and removes it
        self._roomy = 0  # ``roomy`` blocks open (nested ones too): the cap is lifted until the last one ends
        self._conn = duckdb.connect(":memory:")
        try:
            self._configure()
        except duckdb.Error as exc:
            self._conn.close()
            self._release()
            raise open_error(self.path, exc) from exc
        self._lock = threading.RLock()
        self._in_transaction = False
        self.fingerprints = FingerprintCache()  # id-map fingerprints of the flows running (store/fingerprints.py)
        with self.roomy():  # a migration may rewrite a whole table
            self._migrate()
        if self.path != ":memory:":
            self._open_session(wal_existed, wal)

    def _configure(self, limit: str | None = None) -> None:
        """Settings first, then the state file, attached with small row groups (``ROW_GROUP_ROWS``); ``limit``:
        another memory limit than the cap while it is attached."""
        self._conn.execute("SET TimeZone = 'UTC'")
        if self.path == ":memory:":
            return
        self._cap = memory_limit()
        self._conn.execute("SET memory_limit = ?", [limit or self._cap])  # a bounded cache, the rest on disk
        self._conn.execute("SET temp_directory = ?", [self.path + ".tmp"])  # where spilled work goes (as DuckDB's)
        # Every checkpoint is this class's (`_checkpoint`): DuckDB's own remove the log until the next write (a kill
        # there looked like a lost log), and they are not protected against a kill tearing the file.
        self._conn.execute("SET checkpoint_threshold = '1000 GiB'")
        self._conn.execute("PRAGMA disable_checkpoint_on_shutdown")
        quoted = "'" + self.path.replace("'", "''") + "'"
        self._conn.execute(f"ATTACH {quoted} AS ml_state (ROW_GROUP_SIZE {ROW_GROUP_ROWS})")
        self._conn.execute("USE ml_state")

    @contextmanager
    def roomy(self) -> Iterator[None]:
        """Lift the memory cap for a statement over a whole flow or table (repush of all links, an audit prune): the
        cap keeps a run flat, and a state that refused such maintenance would be worse than a process that grows
        for a moment. DuckDB takes what it needs, up to half the machine; the cap is back afterwards."""
        if self.path == ":memory:":
            yield
            return
        with self._lock:
            self._roomy += 1
            self._conn.execute("SET memory_limit = ?", [ROOMY_LIMIT])
            try:
                yield
            finally:
                self._roomy -= 1
                if not self._roomy:
                    self._cap_again()

    def _set_cap(self) -> bool:
        """Apply ``self._cap``; False when refused: rows written since the last checkpoint stay in memory until one
        folds them into the file, and DuckDB refuses a cap below them."""
        try:
            self._conn.execute("SET memory_limit = ?", [self._cap])
        except duckdb.OutOfMemoryException:
            return False
        return True

    def _cap_again(self) -> None:
        """Put the cap back after ``roomy``: refused, checkpoint first and try again; still refused (or inside a
        transaction, where no checkpoint runs), the next checkpoint puts it back (``_fit_cap``)."""
        if self._set_cap():
            return
        if not self._in_transaction:
            self._checkpoint()
            if self._set_cap():
                return
        log.warning("the state database %s keeps a raised memory limit until its next checkpoint", self.path)

    def _open_session(self, wal_existed: bool, wal: Path) -> None:
        """Refuse a file whose last session ended uncleanly without its write-ahead log, then open a session.

        DuckDB silently opens the last checkpoint when the ``.wal`` beside the file is gone (a copy of the file
        alone, a deleted log), losing every change since. A session is marked open in the checkpointed file and
        one more write follows at once, so a process that dies leaves both the mark and a non-empty log behind:
        the mark without the log means the log was lost.
        """
        self._conn.execute("CREATE TABLE IF NOT EXISTS state_session (open BOOLEAN NOT NULL)")
        row = self._conn.execute("SELECT bool_or(open) FROM state_session").fetchone()
        if row and row[0] and not wal_existed:
            # Said loudly, not refused: the 30-minute soak met this after a SIGKILL with no log deleted (a false
            # alarm, cause not yet known) and the refusal then stopped every later run for good.
            log.warning("the state database %s was not closed cleanly and its write-ahead log %s is missing: if the "
                        "log was lost, the changes since its last checkpoint are gone (id maps, audit, watermarks); "
                        "put the .wal file back beside it, or restore both from a backup", self.path, wal)
        self._mark_open()
        self._checkpoint()

    def _mark_open(self) -> None:
        """Write the mark as a new row: DuckDB logs nothing for an UPDATE that leaves a value as it was."""
        with self.transaction():
            self._conn.execute("DELETE FROM state_session")
            self._conn.execute("INSERT INTO state_session VALUES (true)")

    def _checkpoint(self, *, reopen: bool = True) -> None:
        """Fold the log into the file (a copy kept until it is done: see engine.store.checkpoints), then write to
        a new log at once, so an open session always has one."""
        if os.path.exists(self._wal):
            checkpoints.keep_a_copy(self.path)
        try:
            self._conn.execute("CHECKPOINT")
        except duckdb.Error as exc:  # another connection of this process is mid-transaction: the mark stays logged
            if refused_by_the_cap(exc):
                self._checkpoint_after_a_refusal(exc)
        checkpoints.drop_the_copy(self.path)
        self._fit_cap()
        if reopen:
            self._mark_open()  # the log is not empty from now on

    def _checkpoint_after_a_refusal(self, exc: duckdb.Error) -> None:
        """A checkpoint the cap refused has invalidated the database for this connection (DuckDB: "detach and
        reattach it"; nothing runs on a connection whose default database is invalid): connect again, the file put
        back as it was before this checkpoint and its log replayed, and checkpoint with the cap lifted. Not lifted
        for every checkpoint: a million-record first sync that did was 10 MiB higher by its 600th page (226 vs
        216 MiB at a 48 MB cap)."""
        log.info("the state database %s: a checkpoint refused by the memory cap runs again with the cap lifted (%s)",
                 self.path, str(exc).splitlines()[0])
        with suppress(duckdb.Error):
            self._conn.close()
        if os.path.exists(checkpoints.copy_path(self.path)):
            checkpoints.put_back(self.path)
        self._conn = duckdb.connect(":memory:")
        self._configure(limit=ROOMY_LIMIT)  # the log's replay holds what the cap could not
        self._conn.execute("CHECKPOINT")

    def _fit_cap(self) -> None:
        """The cap as the state's indexes need it now (``memory_limit``): at open and at each checkpoint, so a first
        sync that grows the id map by a million links raises it as it goes (inside ``roomy``, its end applies it)."""
        row = self._conn.execute(
            "SELECT (SELECT 2 * count(*) FROM id_map) + (SELECT count(*) FROM pending) "
            "+ (SELECT count(*) FROM filtered) + (SELECT count(*) FROM target_values)").fetchone()
        self._cap = memory_limit(int(row[0]) if row else 0)
        if not self._roomy:
            self._set_cap()  # refused: rows still in memory, the next checkpoint tries again

    def _checkpoint_when_the_log_is_large(self) -> None:
        if self.path == ":memory:" or self._in_transaction:
            return
        with suppress(FileNotFoundError):
            if os.path.getsize(self._wal) > CHECKPOINT_LOG_BYTES:
                self._checkpoint()

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
    def _io(self) -> Iterator[None]:
        """DuckDB's I/O failures (a full disk, a file gone read-only, a database it gave up on) said as such."""
        try:
            yield
        except (duckdb.IOException, duckdb.FatalException) as exc:
            detail = str(exc).splitlines()[0].removeprefix("IO Error: ").removeprefix("FATAL Error: ")
            raise StateError(f"the state database {self.path} cannot be written: {detail}") from exc

    @contextmanager
    def transaction(self) -> Iterator[None]:
        with self._lock, self._io():
            self._conn.execute("BEGIN TRANSACTION")
            self._in_transaction = True
            try:
                yield
            except BaseException:
                with suppress(duckdb.Error):  # a failed write may have ended the transaction already
                    self._conn.execute("ROLLBACK")
                raise
            finally:
                self._in_transaction = False
            self._conn.execute("COMMIT")
            self._checkpoint_when_the_log_is_large()

    def atomically(self, work: Callable[[], T]) -> T:
        """``work``'s statements in one transaction, written even when DuckDB's cap refuses them: index nodes and
        rows written since the last checkpoint stay in memory, and a commit that needs a block beside them fails
        (a page's confirmed links must not be lost to that). The refused transaction is gone whole; the log is
        folded into the file, which lets them go, and ``work`` runs once more with the cap lifted. ``work`` holds
        state writes only (it may run twice)."""
        def transacted() -> T:
            with self.transaction():
                return work()

        with self._lock:
            return self._roomy_if_refused(transacted)

    def _roomy_if_refused(self, statement: Callable[[], T]) -> T:
        """A statement (or a whole transaction) that the cap refuses: after a checkpoint, once more with the cap
        lifted (``atomically`` says why; a statement inside a transaction is the transaction's to retry)."""
        try:
            return statement()
        except duckdb.Error as exc:
            if self._in_transaction or self.path == ":memory:" or not refused_by_the_cap(exc):
                raise
            log.info("the state database %s: a write refused by the memory cap runs again after a checkpoint (%s)",
                     self.path, str(exc).splitlines()[0])
        self._checkpoint()
        with self.roomy():
            return statement()

    def execute(self, sql: str, params: Sequence[Any] | None = None) -> duckdb.DuckDBPyConnection:
        with self._lock, self._io():
            cursor = self._roomy_if_refused(lambda: self._conn.execute(sql, params or []))
            self._checkpoint_when_the_log_is_large()
            return cursor

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
        statement = (f"INSERT INTO {table} ({', '.join(names)}) SELECT {selected} FROM (SELECT {unnested}) AS "
                     f"unnested {on_conflict}")
        self._write(statement, [list(column) for column in zip(*rows, strict=True)])

    def _write(self, statement: str, params: Sequence[Any]) -> None:
        """Run a write of this class's own (not one a caller sees as ``execute``)."""
        with self._lock, self._io():
            self._roomy_if_refused(lambda: self._conn.execute(statement, params))
            self._checkpoint_when_the_log_is_large()

    def fetchall(self, sql: str, params: Sequence[Any] | None = None) -> list[tuple[Any, ...]]:
        with self._lock, self._io():
            return self._roomy_if_refused(lambda: self._conn.execute(sql, params or []).fetchall())

    def fetch_in_chunks(self, sql: str, params: Sequence[Any] | None, size: int,
                        sink: Callable[[list[tuple[Any, ...]]], None]) -> None:
        """Hand the rows to ``sink`` ``size`` at a time (a large result never held whole), under the lock: the
        connection is shared, and another statement would end this one's result."""
        with self._lock, self._io(), self._lean():
            cursor = self._conn.execute(sql, params or [])
            while chunk := cursor.fetchmany(size):
                sink(chunk)

    @contextmanager
    def _lean(self) -> Iterator[None]:
        """A lean cap while a scan streams (``LEAN_LIMIT``): it needs a few blocks at a time, but under the run's cap
        DuckDB keeps every block it read cached up to that cap, and loading a million links' fingerprints set a
        run's peak memory that way. Refused (rows not yet checkpointed hold more) or inside ``roomy``: as it is."""
        lowered = False
        if self.path != ":memory:" and not self._roomy:
            with suppress(duckdb.OutOfMemoryException):
                self._conn.execute("SET memory_limit = ?", [LEAN_LIMIT])
                lowered = True
        try:
            yield
        finally:
            if lowered:
                self._cap_again()

    def fetchone(self, sql: str, params: Sequence[Any] | None = None) -> tuple[Any, ...] | None:
        with self._lock, self._io():
            return self._roomy_if_refused(lambda: self._conn.execute(sql, params or []).fetchone())

    @property
    def key_file(self) -> Path | None:
        """Where the workspace key lives beside the state (None: an in-memory state, with a key of its own)."""
        return None if self.path == ":memory:" else Path(self.path).with_suffix(".key")

    def fingerprint_sql(self, expression: str) -> str:
        """The 64-bit fingerprint of a text expression, as store/fingerprints.py computes it in Python."""
        return f"(md5_number({expression}) & 18446744073709551615)::UBIGINT"

    def advisory_lock(self, key: str) -> bool:
        """Take the lock named ``key`` in this state (e.g. ``flow:<name>``) if no one holds it, not even this
        state itself; False when it is held. DuckDB: a lock within this process, the only one that can open the
        file; PostgreSQL: ``pg_try_advisory_lock``, shared by every worker and released when the holder dies."""
        with _HELD_LOCK:
            if (self._lock_name(), key) in _HELD:
                return False
            _HELD[(self._lock_name(), key)] = id(self)
            return True

    def unlock(self, key: str) -> None:
        """Release a lock this state holds (one it does not hold is left alone)."""
        with _HELD_LOCK:
            if _HELD.get((self._lock_name(), key)) == id(self):
                del _HELD[(self._lock_name(), key)]

    def _lock_name(self) -> str:
        return f"memory:{id(self)}" if self.path == ":memory:" else os.path.realpath(self.path)

    def _release_flow_locks(self) -> None:
        with _HELD_LOCK:
            for held in [held for held, owner in _HELD.items() if owner == id(self)]:
                del _HELD[held]

    def copy_to(self, sql: str, params: Sequence[Any], path: str, options: str) -> None:
        """Write a query's rows to a local file (``options``: DuckDB COPY options, e.g. ``FORMAT csv, HEADER``)."""
        target = path.replace("'", "''")
        self.execute(f"COPY ({sql}) TO '{target}' ({options})", params)

    def create_audit_partitions(self, moment: datetime) -> None:
        """PostgreSQL keeps the audit in monthly partitions; DuckDB's audit is one table."""

    def drop_audit_before(self, cutoff: datetime) -> int:
        """Drop whole audit partitions older than ``cutoff`` (none on DuckDB); returns the rows they held."""
        return 0

    def close(self) -> None:
        self._release_flow_locks()
        with self._lock, self._io():
            try:
                if self.path != ":memory:":
                    self._conn.execute("UPDATE state_session SET open = false")
                    self._checkpoint(reopen=False)
            finally:  # closed even when the mark cannot be written, or the file stays locked for this process
                self._conn.close()
                self._release()

    def _release(self) -> None:
        if self._lock_file is not None:
            self._lock_file.close()
            self._lock_file = None
