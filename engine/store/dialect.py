"""The few differences between the SQL the repositories write (DuckDB's) and what PostgreSQL accepts.

The repositories write one SQL for both backends (``?`` placeholders, ``unnest(?::VARCHAR[])``, ``ON CONFLICT``);
PostgreSQL gets it with ``%s`` placeholders. The schema history (``database.MIGRATIONS``) is DuckDB DDL; each
migration reaches PostgreSQL through ``postgres_migration``: text columns compare byte-wise (``COLLATE "C"``, as
DuckDB does, so a key range ``BETWEEN min AND max`` computed in Python holds every key), BLOB is BYTEA, and the
audit table is partitioned by month (see engine/store/postgres.py).
"""

from __future__ import annotations

import re
from functools import lru_cache


@lru_cache(maxsize=1024)
def placeholders(sql: str) -> str:
    """``?`` becomes ``%s`` and a literal ``%`` becomes ``%%``, outside quoted strings and identifiers."""
    out: list[str] = []
    quote: str | None = None
    for char in sql:
        if quote is not None:
            out.append("%%" if char == "%" else char)
            if char == quote:
                quote = None
        elif char in ("'", '"'):
            quote = char
            out.append(char)
        elif char == "?":
            out.append("%s")
        elif char == "%":
            out.append("%%")
        else:
            out.append(char)
    return "".join(out)


AUDIT_TABLE_END = "payload_hash VARCHAR, logged_at TIMESTAMP NOT NULL DEFAULT now());"
INBOX_TABLE_END = "received_at TIMESTAMP NOT NULL, done_at TIMESTAMP);"
#: Changes of one migration's text for PostgreSQL, by version: (DuckDB text, PostgreSQL text), each must match.
REPLACEMENTS: dict[int, list[tuple[str, str]]] = {
    1: [(AUDIT_TABLE_END, AUDIT_TABLE_END.removesuffix(";") + " PARTITION BY RANGE (logged_at);\n"
         "    CREATE TABLE audit_default PARTITION OF audit DEFAULT;")],
    # a delivery that reached two replicas at once lands once (DuckDB has no partial index; its inbox is one process's)
    12: [(INBOX_TABLE_END, INBOX_TABLE_END + "\n    CREATE UNIQUE INDEX IF NOT EXISTS inbox_pending ON inbox "
          "(connection, entity, record_id) WHERE done_at IS NULL;")],
}
_TYPES = [(re.compile(r"\bVARCHAR\b"), 'TEXT COLLATE "C"'), (re.compile(r"\bBLOB\b"), "BYTEA")]


class DialectError(Exception):
    """A migration's PostgreSQL form cannot be made (a replacement no longer matches its text)."""


def postgres_migration(version: int, sql: str) -> str:
    """Migration ``version`` (DuckDB DDL) as PostgreSQL runs it."""
    for old, new in REPLACEMENTS.get(version, []):
        if old not in sql:
            raise DialectError(f"migration {version}: {old!r} not found for its PostgreSQL form")
        sql = sql.replace(old, new)
    for pattern, replacement in _TYPES:
        sql = pattern.sub(replacement, sql)
    return sql
