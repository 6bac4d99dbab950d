"""What a flow's id map holds, as 64-bit fingerprints in memory, so an unchanged record costs no query.

Finding 1,000 keys in a DuckDB table scans the table (an ART index answers a long IN list one row fetch at a time,
slower still), so a page's lookup grew with the state: 3 ms at 10k links, 70 ms at 1M. One scan at the start of a
flow run loads (key, hash) fingerprints, sorted in buckets, 16 bytes per link (16 MiB at 1M); a page then costs a
hash and a bisect of the few keys a bucket's guide points to per record, about the same at any size.

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
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from ml_connector.store.database import Database

ASK = 0  # a digest fingerprint that matches nothing: ask the database
MASK = 2**64 - 1
SHIFT = 56  # a key fingerprint's bucket is its top byte
BUCKETS = 1 << (64 - SHIFT)
#: Keys per entry of a bucket's guide: a lookup bisects about this many, at 10k or 1M links. Bisecting a whole bucket
#: (~40 keys at 10k links, ~3,900 at 1M) made a page's diff 1.26x slower at 1M; a guide takes ~0.3 bytes a link.
GUIDE_KEYS = 8
CHUNK = 8_192  # rows fetched at a time while loading (keeps the load's own memory small)
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
    """One flow's links as loaded: key fingerprints in 256 buckets by their top byte, each sorted, and beside each
    its hash's fingerprint (or ``ASK``).

    Buckets let the load take rows in whatever order the database streams them and sort them a bucket at a time: a
    sorted scan made the database hold the whole result (and fill its cache to the cap), the largest moment of an
    unchanged run over a million links (issue 24, target 2)."""

    def __init__(self, keys: list[array[int]], digests: list[array[int]], byteorder: Byteorder = "little") -> None:
        self._keys = keys
        self._digests = digests
        self.byteorder = byteorder
        self._guide_bits = array("B", bytes(BUCKETS))  # a bucket's guide splits it by this many more bits of the key
        self._guides = [array("I", [0, len(bucket)]) for bucket in keys]
        self.touched = FingerprintSet()  # fingerprints of keys linked since the load (not in ``keys``)

    @classmethod
    def of(cls, rows: Iterable[tuple[int, int]], byteorder: Byteorder = "little") -> Fingerprints:
        """From (key fingerprint, digest fingerprint) rows in any order."""
        loaded = cls._empty(byteorder)
        loaded._add(rows)
        loaded._sort()
        return loaded

    @classmethod
    def load(cls, db: Database, flow: str, table: str = "id_map", value: str = "payload_hash") -> Fingerprints | None:
        """The flow's rows of ``table`` (by ``source_key``, with ``value`` as the digest), in one streamed scan; None
        when the database's MD5 does not agree with this module's (never guess). PostgreSQL's signed values are
        taken modulo 2^64."""
        probe = "fingerprint check"
        byteorder: Byteorder = "big" if db.fingerprint_byteorder == "big" else "little"
        fp = db.fingerprint_sql
        row = db.fetchone(f"SELECT {fp('?')}", [probe])
        if row is None or int(row[0]) & MASK != fingerprint(probe, byteorder):
            return None
        loaded = cls._empty(byteorder)
        db.fetch_in_chunks(f"SELECT {fp('source_key')}, CASE WHEN {value} IS NULL THEN 0 ELSE {fp(value)} | 1 END "
                           f"FROM {table} WHERE flow = ?", [flow], CHUNK, loaded._add)
        loaded._sort()
        return loaded

    @classmethod
    def _empty(cls, byteorder: Byteorder) -> Fingerprints:
        """Empty buckets, filled by ``_add`` then put in order by ``_sort``."""
        return cls([array("Q") for _ in range(BUCKETS)], [array("Q") for _ in range(BUCKETS)], byteorder)

    def _add(self, rows: Iterable[tuple[int, int]]) -> None:
        keys, digests = self._keys, self._digests
        for key, digest in rows:
            key &= MASK
            bucket = key >> SHIFT
            keys[bucket].append(key)
            digests[bucket].append(digest & MASK)

    def _sort(self) -> None:
        """Each bucket in key order; two keys on one fingerprint cannot be told apart: ask for both."""
        for bucket, keys in enumerate(self._keys):
            if len(keys) < 2:
                continue
            pairs = sorted(zip(keys, self._digests[bucket], strict=True))
            self._keys[bucket] = keys = array("Q", (key for key, _ in pairs))
            self._digests[bucket] = digests = array("Q", (digest for _, digest in pairs))
            del pairs
            for i in range(1, len(keys)):
                if keys[i] == keys[i - 1]:
                    digests[i] = digests[i - 1] = ASK
        for bucket, keys in enumerate(self._keys):
            self._guide(bucket, keys)

    def _guide(self, bucket: int, keys: array[int]) -> None:
        """Where each 2^-bits slice of the bucket's range starts, ``GUIDE_KEYS`` keys a slice or so (fingerprints
        are uniform): found by bisecting, a C call per slice rather than a Python step per key."""
        bits = max(0, (len(keys) // GUIDE_KEYS).bit_length() - 1)
        shift = SHIFT - bits
        start = bucket << SHIFT
        guide = array("I", (bisect_left(keys, start + (part << shift)) for part in range(1 << bits)))
        guide.append(len(keys))
        self._guide_bits[bucket] = bits
        self._guides[bucket] = guide

    @property
    def keys(self) -> array[int]:
        """Every loaded key fingerprint in order (a copy: for checks, not lookups)."""
        every = array("Q")
        for keys in self._keys:
            every.extend(keys)
        return every

    def nbytes(self) -> int:
        """What the numbers take (the arrays' buffers)."""
        return sum(column.buffer_info()[1] * column.itemsize
                   for column in (*self._keys, *self._digests, *self._guides, self._guide_bits))

    def _window(self, wanted: int) -> tuple[int, int, int]:
        """The bucket of a key fingerprint and the part of it that can hold it (``lo``, ``hi``), from its guide."""
        bucket = wanted >> SHIFT
        bits = self._guide_bits[bucket]
        part = (wanted >> (SHIFT - bits)) & ((1 << bits) - 1)
        guide = self._guides[bucket]
        return bucket, guide[part], guide[part + 1]

    def _index(self, key: str) -> tuple[array[int], int] | None:
        """The bucket's digests and the key's place in them (None: not loaded)."""
        wanted = fingerprint(key, self.byteorder)
        bucket, lo, hi = self._window(wanted)
        keys = self._keys[bucket]
        i = bisect_left(keys, wanted, lo, hi)
        return (self._digests[bucket], i) if i < hi and keys[i] == wanted else None

    def same(self, key: str, digest: str) -> bool:
        """True only when the link was loaded with exactly this hash and not touched since."""
        found = self._index(key)
        if found is None:
            return False
        digests, i = found
        return digests[i] != ASK and digests[i] == digest_fingerprint(digest, self.byteorder)

    def may_be_linked(self, key: str) -> bool:
        """False only when the map certainly holds no link for ``key``: not loaded, not written since (a page of
        records never linked, such as new ones or ones filtered at the source, then costs no query)."""
        return self._index(key) is not None or fingerprint(key, self.byteorder) in self.touched

    def forget(self, keys: Iterable[str]) -> None:
        """These links changed (written, unlinked, forgotten): from now on, ask the database about them."""
        for key in keys:
            found = self._index(key)
            if found is not None:
                digests, i = found
                digests[i] = ASK
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
