"""One indexed Pipedrive collection: records by id, sorted indexes, secondary and search indexes, paging.

Pages and lookups cost about the same at 1,000,000 records as at 100: every sort order has a ``SortedList`` of
``(value, id)`` keys, equality filters have ``value -> ids`` sets, search keys map normalised values to ids.
A page walks forward from the cursor position and stops as soon as it has ``limit + 1`` matches.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from sortedcontainers import SortedList

from ml_connector.sandbox.pipedrive.fields import SINGULAR, FieldCatalog, exact_strings, search_strings

Key = tuple[Any, int]
Book = dict[Any, Any]  # value -> id (int) or ids (set[int]); one id stays a bare int to save memory
CANDIDATE_LIMIT = 250_000

DEFAULTS: dict[str, dict[str, Any]] = {
    "organizations": {
        "id": None,
        "name": None,
        "owner_id": 18,
        "add_time": None,
        "update_time": None,
        "is_deleted": False,
        "visible_to": 3,
        "label_ids": [],
        "address": None,
        "custom_fields": None,
    },
    "persons": {
        "id": None,
        "name": None,
        "first_name": None,
        "last_name": None,
        "owner_id": 18,
        "org_id": None,
        "add_time": None,
        "update_time": None,
        "is_deleted": False,
        "visible_to": 3,
        "label_ids": [],
        "picture_id": None,
        "emails": [],
        "phones": [],
        "custom_fields": None,
    },
    "deals": {
        "id": None,
        "title": None,
        "creator_user_id": 18,
        "owner_id": 18,
        "person_id": None,
        "org_id": None,
        "pipeline_id": 1,
        "stage_id": 1,
        "value": 0,
        "currency": "EUR",
        "add_time": None,
        "update_time": None,
        "stage_change_time": None,
        "status": "open",
        "is_deleted": False,
        "is_archived": False,
        "archive_time": None,
        "probability": None,
        "lost_reason": None,
        "visible_to": 3,
        "close_time": None,
        "won_time": None,
        "lost_time": None,
        "local_won_date": None,
        "local_lost_date": None,
        "local_close_date": None,
        "expected_close_date": None,
        "label_ids": [],
        "origin": "ManuallyCreated",
        "origin_id": None,
        "channel": None,
        "channel_id": None,
        "acv": None,
        "arr": None,
        "mrr": None,
        "custom_fields": None,
    },
    "products": {
        "id": None,
        "name": None,
        "code": None,
        "description": None,
        "unit": None,
        "tax": 0,
        "category": None,
        "is_linkable": True,
        "is_deleted": False,
        "visible_to": 3,
        "owner_id": 18,
        "add_time": None,
        "update_time": None,
        "billing_frequency": "one-time",
        "billing_frequency_cycles": None,
        "prices": [],
        "custom_fields": None,
    },
}
SORT_FIELDS = {
    "organizations": ("id", "update_time", "add_time"),
    "persons": ("id", "update_time", "add_time"),
    "deals": ("id", "update_time", "add_time"),
    "products": ("id", "update_time", "add_time", "name"),
}
SECONDARY = {
    "organizations": (),
    "persons": ("org_id",),
    "deals": ("org_id", "person_id", "status"),
    "products": (),
}
SEARCH_FIELDS = {
    "organizations": ("address", "custom_fields", "notes", "name"),
    "persons": ("custom_fields", "email", "notes", "phone", "name"),
    "deals": ("custom_fields", "notes", "title"),
    "products": ("code", "custom_fields", "name"),
}


@dataclass
class Query:
    """A list request after parameter parsing."""

    sort_by: str = "id"
    desc: bool = False
    after: Key | None = None
    limit: int = 100
    ids: frozenset[int] | None = None
    equals: dict[str, Any] = field(default_factory=dict)
    statuses: set[str] | None = None
    since: str | None = None
    until: str | None = None
    archived: bool | None = None


class Collection:
    """Records of one entity type with all their indexes."""

    def __init__(self, name: str, catalog: FieldCatalog) -> None:
        self.name = name
        self.singular = SINGULAR[name]
        self.catalog = catalog
        self.defaults = DEFAULTS[name]
        self.records: dict[int, dict[str, Any]] = {}
        self.next_id = 1
        self.index: dict[str, SortedList] = {f: SortedList() for f in SORT_FIELDS[name]}
        self.secondary: dict[str, Book] = {f: {} for f in SECONDARY[name]}
        self.search: dict[str, Book] = {f: {} for f in SEARCH_FIELDS[name]}
        self.exact: dict[str, Book] = {}
        self.created_at: dict[int, float] = {}
        self.version = 0
        self._sorted_cache: dict[tuple[Any, ...], tuple[int, list[Key]]] = {}

    # -- values and keys -------------------------------------------------------------------------------------
    def value(self, rec: dict[str, Any], key: str) -> Any:
        """A field of a stored (sparse) record, falling back to the entity default."""
        return rec.get(key, self.defaults.get(key))

    def sort_key(self, sort_by: str, rec: dict[str, Any]) -> Key:
        """The ``(value, id)`` index key of a record for one sort order."""
        return (rec["id"] if sort_by == "id" else rec[sort_by], rec["id"])

    def _secondary_value(self, rec: dict[str, Any], key: str) -> Any:
        if key == "status":
            return "deleted" if rec.get("is_deleted") else self.value(rec, "status")
        return self.value(rec, key)

    def search_values(self, rec: dict[str, Any]) -> Iterator[tuple[str, str]]:
        """``(search field, text)`` pairs of a record for the ``/search`` endpoints."""
        main = "title" if self.name == "deals" else "name"
        if rec.get(main):
            yield main, rec[main]
        if self.name == "products" and rec.get("code"):
            yield "code", rec["code"]
        if (
            self.name == "organizations"
            and isinstance(rec.get("address"), dict)
            and rec["address"].get("value")
        ):
            yield "address", rec["address"]["value"]
        for group, src in (("email", "emails"), ("phone", "phones")):
            for item in rec.get(src) or []:
                yield group, item["value"]
        defs = self.catalog.custom(self.singular)
        for key, val in (rec.get("custom_fields") or {}).items():
            if key in defs:
                for text in search_strings(defs[key], val):
                    yield "custom_fields", text

    def exact_values(self, rec: dict[str, Any]) -> Iterator[tuple[str, str]]:
        """``(field key, value)`` pairs for ``itemSearch/field`` (case-sensitive)."""
        for key in ("name", "title", "code"):
            if rec.get(key):
                yield key, rec[key]
        for key, src in (("email", "emails"), ("phone", "phones")):
            for item in rec.get(src) or []:
                yield key, item["value"]
        for key, val in (rec.get("custom_fields") or {}).items():
            for text in exact_strings(val):
                yield key, text

    # -- index maintenance -----------------------------------------------------------------------------------
    def _aux(self, rec: dict[str, Any], add: bool) -> None:
        rid = rec["id"]
        for key, book in self.secondary.items():
            self._touch(book, self._secondary_value(rec, key), rid, add)
        for group, text in self.search_values(rec):
            self._touch(self.search[group], text.lower(), rid, add)
        for fkey, text in self.exact_values(rec):
            self._touch(self.exact.setdefault(fkey, {}), text, rid, add)

    @staticmethod
    def _touch(book: Book, value: Any, rid: int, add: bool) -> None:
        held = book.get(value)
        if add:
            if held is None:
                book[value] = rid
            elif isinstance(held, set):
                held.add(rid)
            elif held != rid:
                book[value] = {held, rid}
        elif held == rid:
            del book[value]
        elif isinstance(held, set):
            held.discard(rid)
            if len(held) == 1:
                book[value] = next(iter(held))

    def add(self, rec: dict[str, Any], created_at: float = 0.0) -> None:
        """Store a new record (it must carry ``id``, ``add_time`` and ``update_time``)."""
        self.records[rec["id"]] = rec
        self.next_id = max(self.next_id, rec["id"] + 1)
        self.version += 1
        if created_at:
            self.created_at[rec["id"]] = created_at
        for sort_by, index in self.index.items():
            index.add(self.sort_key(sort_by, rec))
        self._aux(rec, True)

    def bulk_add(self, recs: list[dict[str, Any]]) -> None:
        """Seed many records at once (sorted indexes rebuilt in one pass)."""
        self.version += 1
        for rec in recs:
            self.records[rec["id"]] = rec
            self._aux(rec, True)
        for sort_by, index in self.index.items():
            index.update([self.sort_key(sort_by, rec) for rec in recs])
        if recs:
            self.next_id = max(self.next_id, max(r["id"] for r in recs) + 1)

    def replace(self, new: dict[str, Any]) -> None:
        """Swap a stored record for its new version, keeping every index in step."""
        old = self.records[new["id"]]
        self.version += 1
        for sort_by, index in self.index.items():
            old_key, new_key = self.sort_key(sort_by, old), self.sort_key(sort_by, new)
            if old_key != new_key:
                index.remove(old_key)
                index.add(new_key)
        self._aux(old, False)
        self.records[new["id"]] = new
        self._aux(new, True)

    # -- output ----------------------------------------------------------------------------------------------
    def public(self, rec: dict[str, Any], only_custom: Iterable[str] | None = None) -> dict[str, Any]:
        """The v2 wire shape of a stored record."""
        out = {**self.defaults, **rec}
        stored = rec.get("custom_fields") or {}
        keys = list(only_custom) if only_custom is not None else list(self.catalog.custom(self.singular))
        out["custom_fields"] = {k: stored.get(k) for k in keys}
        if self.name == "deals":
            for kind in ("won", "lost", "close"):
                stamp = out.get(f"{kind}_time")
                out[f"local_{kind}_date"] = stamp[:10] if stamp else None
        return out

    # -- queries ---------------------------------------------------------------------------------------------
    def matches(self, rec: dict[str, Any], q: Query) -> bool:
        """Does a record pass every filter of the query."""
        if q.statuses is None:
            if rec.get("is_deleted"):
                return False
        elif self._secondary_value(rec, "status") not in q.statuses:
            return False
        if q.ids is not None and rec["id"] not in q.ids:
            return False
        if q.archived is not None and bool(rec.get("is_archived")) != q.archived:
            return False
        ut = rec["update_time"]
        if (q.since and ut < q.since) or (q.until and ut >= q.until):
            return False
        return all(self.value(rec, k) == v for k, v in q.equals.items())

    def page(self, q: Query) -> tuple[list[dict[str, Any]], Key | None]:
        """One page of matching records in query order, plus the cursor key of its last row if more follow."""
        found: list[dict[str, Any]] = []
        for _, rid in self._walk(q):
            rec = self.records.get(rid)
            if rec is not None and self.matches(rec, q):
                found.append(rec)
                if len(found) > q.limit:
                    break
        if len(found) <= q.limit:
            return found, None
        found = found[: q.limit]
        return found, self.sort_key(q.sort_by, found[-1])

    def _walk(self, q: Query) -> Iterator[Key]:
        """Index keys after the cursor, from the cheapest source that still yields query order."""
        index = self.index[q.sort_by]
        ut_bounds = bool(q.since or q.until)
        lo: Key | None = (q.since, 0) if q.since else None
        hi: Key | None = (q.until, 0) if q.until else None
        if q.sort_by == "update_time" and ut_bounds:
            natural = self._count(index, lo, hi)
        else:
            natural, lo, hi = len(index), None, None
        best: tuple[int, str, Callable[[], Iterable[int]]] | None = None
        for size, source, producer in self._candidate_sources(q, ut_bounds):
            if size < natural and size <= CANDIDATE_LIMIT and (best is None or size < best[0]):
                best = (size, source, producer)
        if best is not None:
            return self._from_candidates(self._sorted_candidates(q, best[1], best[2]), q)
        return self._from_index(index, q, lo, hi)

    def _candidate_sources(
        self, q: Query, ut_bounds: bool
    ) -> Iterator[tuple[int, str, Callable[[], Iterable[int]]]]:
        """``(size, source name, id producer)`` of every index that can narrow the query."""
        if q.ids is not None:
            yield len(q.ids), "ids", _const(q.ids)
        for key, value in q.equals.items():
            if key in self.secondary:
                found = hits(self.secondary[key], value)
                yield len(found), key, _const(found)
        if q.statuses is not None and "status" in self.secondary:
            books = [hits(self.secondary["status"], s) for s in q.statuses]
            yield sum(map(len, books)), "status", _chain(books)
        if ut_bounds and q.sort_by != "update_time":
            ut_index = self.index["update_time"]
            lo = (q.since, 0) if q.since else None
            hi = (q.until, 0) if q.until else None

            def in_range() -> Iterable[int]:
                return (k[1] for k in ut_index.irange(lo, hi, (True, False)))

            yield self._count(ut_index, lo, hi), "update_time", in_range

    def _sorted_candidates(self, q: Query, source: str, producer: Callable[[], Iterable[int]]) -> list[Key]:
        """Sorted keys of a candidate set, cached across the pages of one query until the next write."""
        signature = (
            source,
            q.sort_by,
            tuple(sorted(q.ids or ())),
            tuple(sorted(q.equals.items())),
            tuple(sorted(q.statuses or ())),
            q.since,
            q.until,
        )
        cached = self._sorted_cache.get(signature)
        if cached is not None and cached[0] == self.version:
            return cached[1]
        keys = sorted(
            self.sort_key(q.sort_by, self.records[rid]) for rid in set(producer()) if rid in self.records
        )
        if len(self._sorted_cache) >= 8:
            self._sorted_cache.clear()
        self._sorted_cache[signature] = (self.version, keys)
        return keys

    @staticmethod
    def _count(index: SortedList, lo: Key | None, hi: Key | None) -> int:
        start = index.bisect_left(lo) if lo is not None else 0
        end = index.bisect_left(hi) if hi is not None else len(index)
        return max(0, end - start)

    @staticmethod
    def _from_candidates(keys: list[Key], q: Query) -> Iterator[Key]:
        if q.desc:
            end = bisect.bisect_left(keys, q.after) if q.after is not None else len(keys)
            return (keys[i] for i in range(end - 1, -1, -1))
        start = bisect.bisect_right(keys, q.after) if q.after is not None else 0
        return (keys[i] for i in range(start, len(keys)))

    @staticmethod
    def _from_index(index: SortedList, q: Query, lo: Key | None, hi: Key | None) -> Iterator[Key]:
        after = q.after
        if not q.desc:
            if after is not None and (lo is None or after >= lo):
                return iter(index.irange(after, hi, (False, False)))
            return iter(index.irange(lo, hi, (True, False)))
        top = hi if after is None or (hi is not None and hi <= after) else after
        return iter(index.irange(lo, top, (True, False), reverse=True))


def _const(ids: Iterable[int]) -> Callable[[], Iterable[int]]:
    """A candidate producer returning an already known id collection."""
    return lambda: ids


def _chain(books: list[set[int] | tuple[int, ...]]) -> Callable[[], Iterable[int]]:
    """A lazy producer over several id sets (built only when chosen)."""
    return lambda: (rid for book in books for rid in book)


def hits(book: Book, value: Any) -> set[int] | tuple[int, ...]:
    """The ids a book holds for a value (empty when none)."""
    held = book.get(value)
    if held is None:
        return ()
    return held if isinstance(held, set) else (held,)
