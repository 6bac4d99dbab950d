"""What a flow's id map holds, as 64-bit fingerprints in memory, so an unchanged record costs no query.

Finding 1,000 keys in a DuckDB table scans the table (an ART index answers a long IN list one row fetch at a time,
slower still), so a page's lookup grew with the state: 3 ms at 10k links, 70 ms at 1M. One scan at the start of a
flow run loads (key, hash) fingerprints, sorted, 16 bytes per link (16 MiB at 1M); a page then costs a hash and a
binary search per record, the same at any size.

The fingerprints only ever say "stored exactly as now" or "ask the database": a link written, unlinked or forgotten
during the run becomes "ask" (so a rolled-back write cannot make them lie), a key loaded twice (a 64-bit collision)
is "ask", and a key that is not loaded (linked during the run) is asked for. A false "unchanged" needs a new record
whose key and hash both collide with one stored link: 2^-128 per record. A key neither loaded nor written since is
certainly not linked: records never linked (new ones, ones filtered or deleted at the source) cost no query either.
"""

from __future__ import annotations

import hashlib
import heapq
import sys
from array import array
from bisect import bisect_left
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from ml_connector.store.database import Database

ASK = 0  # a digest fingerprint that matches nothing: ask the database
MASK = 2**64 - 1
CHUNK = 65_536  # rows fetched at a time while loading (keeps the load's own memory small)
# The database computes them (``Database.fingerprint_sql``): DuckDB's md5_number reads the digest little-endian (its
# low 64 bits are the first 8 bytes), PostgreSQL reads the first 8 bytes big-endian as a signed bigint (taken modulo
# 2^64 here); the probe at load checks that the database agrees.
Byteorder = Literal["little", "big"]


def fingerprint(text: str, byteorder: Byteorder = "little") -> int:
    """The first 8 bytes of the MD5 of ``text`` as an unsigned 64-bit number, read in ``byteorder``."""
    return int.from_bytes(hashlib.md5(text.encode(), usedforsecurity=False).digest()[:8], byteorder)


def digest_fingerprint(digest: str, byteorder: Byteorder = "little") -> int:
    """A stored hash's fingerprint, never ``ASK``."""
    return fingerprint(digest, byteorder) | 1


class Fingerprints:
    """One flow's links as loaded: sorted key fingerprints and, beside each, its hash's fingerprint (or ``ASK``)."""

    def __init__(self, keys: array[int], digests: array[int], byteorder: Byteorder = "little") -> None:
        self.keys = keys
        self.digests = digests
        self.byteorder = byteorder
        self.touched = FingerprintSet()  # fingerprints of keys linked since the load (not in ``keys``)

    @classmethod
    def load(cls, db: Database, flow: str, table: str = "id_map", value: str = "payload_hash") -> Fingerprints | None:
        """The flow's rows of ``table`` (by ``source_key``, with ``value`` as the digest), in one scan; None when
        database's MD5 does not agree with this module's (never guess).

        The order is the unsigned one (``k < 0`` first puts PostgreSQL's signed values in it; DuckDB's are unsigned).
        """
        probe = "fingerprint check"
        byteorder: Byteorder = "big" if db.fingerprint_byteorder == "big" else "little"
        fp = db.fingerprint_sql
        row = db.fetchone(f"SELECT {fp('?')}", [probe])
        if row is None or int(row[0]) & MASK != fingerprint(probe, byteorder):
            return None
        keys, digests = array("Q"), array("Q")

        def take(chunk: list[tuple[Any, ...]]) -> None:
            for key, digest in chunk:
                keys.append(key & MASK)
                digests.append(digest & MASK)

        db.fetch_in_chunks(f"SELECT k, d FROM (SELECT {fp('source_key')} AS k, CASE WHEN {value} IS NULL THEN 0 "
                           f"ELSE {fp(value)} | 1 END AS d FROM {table} WHERE flow = ?) AS fps ORDER BY (k < 0), k",
                           [flow], CHUNK, take)
        for i in range(1, len(keys)):  # two keys on one fingerprint: neither can be told apart, ask for both
            if keys[i] == keys[i - 1]:
                digests[i] = digests[i - 1] = ASK
        return cls(keys, digests, byteorder)

    def _index(self, key: str) -> int | None:
        wanted = fingerprint(key, self.byteorder)
        i = bisect_left(self.keys, wanted)
        return i if i < len(self.keys) and self.keys[i] == wanted else None

    def same(self, key: str, digest: str) -> bool:
        """True only when the link was loaded with exactly this hash and not touched since."""
        i = self._index(key)
        return (i is not None and self.digests[i] != ASK
                and self.digests[i] == digest_fingerprint(digest, self.byteorder))

    def may_be_linked(self, key: str) -> bool:
        """False only when the map certainly holds no link for ``key``: not loaded, not written since (a page of
        records never linked, such as new ones or ones filtered at the source, then costs no query)."""
        return self._index(key) is not None or fingerprint(key, self.byteorder) in self.touched

    def forget(self, keys: Iterable[str]) -> None:
        """These links changed (written, unlinked, forgotten): from now on, ask the database about them."""
        for key in keys:
            i = self._index(key)
            if i is not None:
                self.digests[i] = ASK
            else:
                self.touched.add(fingerprint(key, self.byteorder))


class FingerprintSet:
    """A set of 64-bit fingerprints in ~8 bytes each: new ones in a small set, merged into one sorted array when it
    holds ``flush_at``. A first sync links every record after the load; a Python set of their fingerprints took ~60
    bytes each (55 MiB at a million). The merge streams into a new array: sorting the two as one list held every
    number as a Python object for a moment (a 36 MiB spike at a million)."""

    __slots__ = ("_sorted", "_recent", "_flush_at")

    def __init__(self, flush_at: int = 65_536) -> None:
        self._sorted = array("Q")
        self._recent: set[int] = set()
        self._flush_at = flush_at

    def __contains__(self, number: object) -> bool:
        if not isinstance(number, int):
            return False
        if number in self._recent:
            return True
        i = bisect_left(self._sorted, number)
        return i < len(self._sorted) and self._sorted[i] == number

    def __len__(self) -> int:
        return len(self._sorted) + len(self._recent)

    def add(self, number: int) -> None:
        if number in self:
            return
        self._recent.add(number)
        if len(self._recent) >= self._flush_at:
            merged = array("Q")
            merged.extend(heapq.merge(self._sorted, sorted(self._recent)))  # one number at a time, never a list
            self._sorted, self._recent = merged, set()

    def nbytes(self) -> int:
        """What the numbers take: the array's buffer and the small set."""
        return self._sorted.buffer_info()[1] * self._sorted.itemsize + sys.getsizeof(self._recent) + sum(
            sys.getsizeof(number) for number in self._recent)


class FingerprintCache:
    """The loaded fingerprints of a database, by flow (kept on the ``Database`` so every repository over it, the
    id maps and the links, marks what it changes)."""

    def __init__(self) -> None:
        self.flows: dict[str, Fingerprints | None] = {}  # None: not used in this flow run (small map, no MD5 match)
        self.pages: dict[str, int] = {}  # pages diffed with a query so far, by flow (before loading)

    def forget(self, flow: str, keys: Iterable[str] | None) -> None:
        """Links of ``flow`` changed (None: any of them)."""
        loaded = self.flows.get(flow)
        if loaded is None:
            return
        if keys is None:
            self.flows[flow] = None
        else:
            loaded.forget(keys)
