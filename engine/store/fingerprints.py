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
from array import array
from bisect import bisect_left
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ml_connector.store.database import Database

ASK = 0  # a digest fingerprint that matches nothing: ask the database
MASK = 2**64 - 1
CHUNK = 65_536  # rows fetched at a time while loading (keeps the load's own memory small)
# DuckDB's md5_number is the digest read little-endian: its low 64 bits are the first 8 bytes (checked at load)
SQL_FP = "(md5_number({}) & 18446744073709551615)::UBIGINT"


def fingerprint(text: str) -> int:
    """The low 64 bits of the MD5 of ``text``, as ``SQL_FP`` computes them in DuckDB."""
    return int.from_bytes(hashlib.md5(text.encode(), usedforsecurity=False).digest()[:8], "little")


def digest_fingerprint(digest: str) -> int:
    """A stored hash's fingerprint, never ``ASK``."""
    return fingerprint(digest) | 1


class Fingerprints:
    """One flow's links as loaded: sorted key fingerprints and, beside each, its hash's fingerprint (or ``ASK``)."""

    def __init__(self, keys: array[int], digests: array[int]) -> None:
        self.keys = keys
        self.digests = digests
        self.touched: set[int] = set()  # fingerprints of keys linked since the load (not in ``keys``)

    @classmethod
    def load(cls, db: Database, flow: str, table: str = "id_map", value: str = "payload_hash") -> Fingerprints | None:
        """The flow's rows of ``table`` (by ``source_key``, with ``value`` as the digest), in one scan; None when
        DuckDB's MD5 does not agree with this module's (never guess)."""
        probe = "fingerprint check"
        row = db.fetchone(f"SELECT {SQL_FP.format('?')}", [probe])
        if row is None or int(row[0]) != fingerprint(probe):
            return None
        keys, digests = array("Q"), array("Q")

        def take(chunk: list[tuple[Any, ...]]) -> None:
            for key, digest in chunk:
                keys.append(key)
                digests.append(digest)

        db.fetch_in_chunks(f"SELECT {SQL_FP.format('source_key')} AS k, CASE WHEN {value} IS NULL THEN 0 ELSE "
                           f"{SQL_FP.format(value)} | 1 END FROM {table} WHERE flow = ? ORDER BY k", [flow],
                           CHUNK, take)
        for i in range(1, len(keys)):  # two keys on one fingerprint: neither can be told apart, ask for both
            if keys[i] == keys[i - 1]:
                digests[i] = digests[i - 1] = ASK
        return cls(keys, digests)

    def _index(self, key: str) -> int | None:
        wanted = fingerprint(key)
        i = bisect_left(self.keys, wanted)
        return i if i < len(self.keys) and self.keys[i] == wanted else None

    def same(self, key: str, digest: str) -> bool:
        """True only when the link was loaded with exactly this hash and not touched since."""
        i = self._index(key)
        return i is not None and self.digests[i] != ASK and self.digests[i] == digest_fingerprint(digest)

    def may_be_linked(self, key: str) -> bool:
        """False only when the map certainly holds no link for ``key``: not loaded, not written since (a page of
        records never linked, such as new ones or ones filtered at the source, then costs no query)."""
        return self._index(key) is not None or fingerprint(key) in self.touched

    def forget(self, keys: Iterable[str]) -> None:
        """These links changed (written, unlinked, forgotten): from now on, ask the database about them."""
        for key in keys:
            i = self._index(key)
            if i is not None:
                self.digests[i] = ASK
            else:
                self.touched.add(fingerprint(key))


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
