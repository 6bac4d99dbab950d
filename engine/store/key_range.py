"""The ``BETWEEN min AND max`` bound of a key lookup, which lets the database skip the row groups outside it.

Python's min and max order keys by code point, as both backends compare text (DuckDB; PostgreSQL with
``COLLATE "C"``, store/dialect.py), except a key holding NUL: PostgreSQL stores NUL as U+FFFD
(store/postgres.py), which sorts elsewhere, so the bound would leave such keys out. Those lookups go unbounded.
"""

from __future__ import annotations


def key_range(keys: list[str]) -> tuple[str, list[str]]:
    """The SQL (``AND source_key BETWEEN ? AND ?``, with a trailing space, or nothing) and its parameters."""
    if any("\0" in key for key in keys):
        return "", []
    return "AND source_key BETWEEN ? AND ? ", [min(keys), max(keys)]
