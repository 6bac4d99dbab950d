"""The matcher's memory of what this run wrote (match key -> target id), in ~25 bytes a record instead of ~150.

A first sync of a million records must stay flat in memory, yet a later source record with the same match value
must find the record this run created (not create a duplicate). So a key is kept only as a 128-bit fingerprint
(blake2b, two 64-bit halves in ``array('Q')``s) and an id as an int64 when it is a canonical decimal integer, else
in a small side dict. Answers are exact up to a fingerprint collision: a false hit needs two of the keys written
to share 128 bits, a chance of about n^2 / 2^129 (around 10^-27 for a million keys).

Entries land in a small dict; when it holds ``flush_at`` entries it becomes a sorted run, and runs of similar size
merge (a binary counter), so there are O(log n) runs and a lookup bisects each. The latest write wins: lookups
search the dict first, then the runs newest first; a merge keeps the newer run's entry for a shared fingerprint.
"""

from __future__ import annotations

import hashlib
import heapq
from array import array
from bisect import bisect_left
from collections.abc import Iterator

_LOW = (1 << 64) - 1
_INT64_MIN, _INT64_MAX = -(1 << 63), (1 << 63) - 1


def fingerprint(key: str) -> int:
    """The 128-bit fingerprint a key is kept as (the key itself is never stored)."""
    digest = hashlib.blake2b(key.encode("utf-8", "surrogatepass"), digest_size=16, usedforsecurity=False)
    return int.from_bytes(digest.digest(), "big")


def as_int64(target_id: str) -> int | None:
    """The id as an int64 when it is one written canonically ("42", "-5"; not "007", "+1", " 1", "1_0")."""
    if not 0 < len(target_id) <= 20:
        return None
    try:
        number = int(target_id)
    except ValueError:
        return None
    return number if _INT64_MIN <= number <= _INT64_MAX and str(number) == target_id else None


class _Run:
    """Sorted fingerprints (high, low halves) with their ids; an id that is not an int64 lives in ``text``."""

    __slots__ = ("high", "low", "ids", "text")

    def __init__(self) -> None:
        self.high = array("Q")
        self.low = array("Q")
        self.ids = array("q")
        self.text: dict[int, str] = {}

    def __len__(self) -> int:
        return len(self.high)

    def index(self, fp: int) -> int | None:
        keys, high, low, n = self.high, fp >> 64, fp & _LOW, len(self.high)
        at = bisect_left(keys, high)
        while at < n and keys[at] == high:
            if self.low[at] == low:
                return at
            at += 1
        return None

    def get(self, fp: int) -> str | None:
        at = self.index(fp)
        if at is None:
            return None
        text = self.text.get(fp) if self.text else None
        return text if text is not None else str(self.ids[at])

    @classmethod
    def of(cls, entries: dict[int, str]) -> _Run:
        run = cls()
        for fp in sorted(entries):
            target_id = entries[fp]
            number = as_int64(target_id)
            run.high.append(fp >> 64)
            run.low.append(fp & _LOW)
            run.ids.append(0 if number is None else number)
            if number is None:
                run.text[fp] = target_id
        return run

    @classmethod
    def merged(cls, old: _Run, new: _Run, chunk: int) -> _Run:
        """One run holding both (which it consumes); for a fingerprint in both, the newer run's id.

        Merged from the largest fingerprint down, giving back the inputs' consumed tails every ``chunk`` rows, so
        a merge holds about one copy of the entries, not two (the output is reversed in place at the end).
        """
        out = cls()
        out.text = {fp: text for fp, text in old.text.items() if new.index(fp) is None}
        out.text.update(new.text)
        oh, ol, oi, nh, nl, ni = old.high, old.low, old.ids, new.high, new.low, new.ids
        put_high, put_low, put_id = out.high.append, out.low.append, out.ids.append
        i, j = len(oh) - 1, len(nh) - 1  # the last row of each not yet taken
        step = chunk
        while i >= 0 and j >= 0:
            a, b = oh[i], nh[j]
            if a > b or (a == b and ol[i] > nl[j]):
                put_high(a)
                put_low(ol[i])
                put_id(oi[i])
                i -= 1
            else:
                if a == b and ol[i] == nl[j]:
                    i -= 1  # overwritten by the newer run
                put_high(b)
                put_low(nl[j])
                put_id(ni[j])
                j -= 1
            step -= 1
            if not step:
                step = chunk
                _drop_tails((oh, ol, oi), i + 1)
                _drop_tails((nh, nl, ni), j + 1)
        for rest, end in (((oh, ol, oi), i + 1), ((nh, nl, ni), j + 1)):  # one of the two is exhausted
            while end:
                begin = max(0, end - chunk)
                for column, source in zip((out.high, out.low, out.ids), rest, strict=True):
                    column.extend(source[begin:end][::-1])
                _drop_tails(rest, begin)
                end = begin
        for column in (out.high, out.low, out.ids):
            column.reverse()
        return out


def _drop_tails(columns: tuple[array[int], ...], keep: int) -> None:
    for column in columns:
        del column[keep:]


class WrittenIds:
    """match key -> target id, with the part of the mapping API the matcher uses (set, get, in, len, clear)."""

    def __init__(self, flush_at: int = 4096, merge_chunk: int = 1 << 16) -> None:
        if flush_at < 1 or merge_chunk < 1:
            raise ValueError("flush_at and merge_chunk must be at least 1")
        self.flush_at = flush_at
        self.merge_chunk = merge_chunk  # rows a merge takes before it gives back the inputs' consumed tails
        self._fresh: dict[int, str] = {}
        self._runs: list[_Run] = []  # oldest first
        self._count: int | None = 0  # None: not known since the last write (counted on demand)

    @property
    def run_count(self) -> int:
        return len(self._runs)

    def __len__(self) -> int:
        """The number of distinct keys: counted on demand (O(n)), so that a write need not look its key up."""
        if self._count is None:
            self._count = self._distinct()
        return self._count

    def __bool__(self) -> bool:
        return bool(self._fresh) or bool(self._runs)

    def _distinct(self) -> int:
        sources: list[Iterator[tuple[int, int]]] = [zip(run.high, run.low, strict=True) for run in self._runs]
        sources.append((fp >> 64, fp & _LOW) for fp in sorted(self._fresh))
        count, last = 0, None
        for pair in heapq.merge(*sources):
            if pair != last:
                count, last = count + 1, pair
        return count

    def _lookup(self, fp: int) -> str | None:
        found = self._fresh.get(fp)
        if found is not None:
            return found
        for run in reversed(self._runs):
            found = run.get(fp)
            if found is not None:
                return found
        return None

    def get(self, key: str, default: str | None = None) -> str | None:
        found = self._lookup(fingerprint(key))
        return default if found is None else found

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and self._lookup(fingerprint(key)) is not None

    def __setitem__(self, key: str, target_id: str) -> None:
        self._fresh[fingerprint(key)] = target_id
        self._count = None
        if len(self._fresh) >= self.flush_at:
            self._flush()

    def _flush(self) -> None:
        self._runs.append(_Run.of(self._fresh))
        self._fresh = {}
        while len(self._runs) >= 2 and len(self._runs[-2]) <= len(self._runs[-1]):
            newer = self._runs.pop()
            self._runs[-1] = _Run.merged(self._runs[-1], newer, self.merge_chunk)

    def clear(self) -> None:
        self._fresh = {}
        self._runs = []
        self._count = 0
