"""Seeders: how a table finds, dates and builds its *virtual* seeded records.

A seeded record is never stored: its key, lastModifiedDate and fields are pure functions of the seed,
so a table only keeps a sorted ``(ms, key)`` index and builds a record dict when it is read.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Protocol

from ml_connector.sandbox.qad import data


class Seeder(Protocol):
    """The seeded records of one entity."""

    count: int

    def entries(self) -> Iterable[tuple[int, str]]:
        """(lastModifiedDate ms, key) of every seeded record."""
        ...

    def ms(self, key: str) -> int | None:
        """Seeded lastModifiedDate of ``key``, or None when ``key`` is not a seeded record."""
        ...

    def fields(self, key: str) -> dict[str, Any]:
        """Business fields of seeded record ``key`` (which must exist)."""
        ...

    def salt(self, key: str) -> int:
        """Per-record hash for the seeded system fields (user, concurrencyHash)."""
        ...


@dataclass
class IndexedSeeder:
    """Records ``0 .. count-1`` whose key encodes their index (``C000123`` is record 122)."""

    base: int
    count: int
    key_of: Callable[[int], str]
    index_of: Callable[[str], int | None]
    build: Callable[[int, int], dict[str, Any]]  # (index, lastModifiedDate ms) -> business fields
    stamp: Callable[[int], int] | None = None  # lastModifiedDate ms of record i, when a later posting dates it

    def entries(self) -> Iterable[tuple[int, str]]:
        return ((self._ms(i), self.key_of(i)) for i in range(self.count))

    def _ms(self, i: int) -> int:
        return self.stamp(i) if self.stamp is not None else data.seeded_lmd_ms(self.base, i)

    def position(self, key: str) -> int | None:
        i = self.index_of(key)
        return i if i is not None and i < self.count else None

    def ms(self, key: str) -> int | None:
        i = self.position(key)
        return None if i is None else self._ms(i)

    def fields(self, key: str) -> dict[str, Any]:
        i = self.position(key)
        assert i is not None, key
        return self.build(i, self._ms(i))

    def salt(self, key: str) -> int:
        i = self.position(key)
        assert i is not None, key
        return data.mix64(self.base ^ (i << 1) ^ 0x5EED)
