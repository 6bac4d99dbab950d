"""One org's records: indexed by id, Created_Time and Modified_Time so a page costs the same at any size.

Records are kept in their public shape (lookups as ``{"id": ..}``, DateTime as ISO strings); the times are also
kept as numbers for the sorted indexes. Reads return deep copies with lookup names filled in, as Zoho answers.
Writes are committed here (validation is ``records.py``'s business) and every commit calls the listeners.
"""

from __future__ import annotations

import contextlib
import copy
import itertools
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from sortedcontainers import SortedList

from ml_connector.sandbox.core import Clock
from ml_connector.sandbox.zoho.common import iso, new_id
from ml_connector.sandbox.zoho.metadata import ModuleDef

Key = tuple[Any, str]
ORDERINGS = ("id", "Created_Time", "Modified_Time")
SYSTEM_FIELDS = ("id", "Created_Time", "Modified_Time", "Created_By", "Modified_By")
_MAX_ID = "9" * 20  # sorts after every 19-digit id: (ts, _MAX_ID) is past every record modified at ts


@dataclass(frozen=True)
class Change:
    module: str
    operation: str  # "insert" | "update" | "delete"
    ids: tuple[str, ...]
    at: float
    fields: tuple[str, ...]  # changed API names


@dataclass
class _Table:
    records: dict[str, dict[str, Any]] = field(default_factory=dict)
    times: dict[str, tuple[float, float]] = field(default_factory=dict)  # id -> (created, modified)
    indexes: dict[str, SortedList] = field(default_factory=lambda: {name: SortedList() for name in ORDERINGS})
    unique: dict[str, dict[str, set[str]]] = field(default_factory=dict)  # field -> folded value -> ids

    def key(self, order_by: str, record_id: str) -> Key:
        created, modified = self.times[record_id]
        return (record_id if order_by == "id" else created if order_by == "Created_Time" else modified, record_id)


def fold(value: Any) -> str:
    """How duplicate checks compare values (case-insensitive, trimmed)."""
    return str(value).strip().casefold()


class ZohoStore:
    """The modules, fields and records of one org."""

    def __init__(self, catalog: list[ModuleDef], clock: Clock, *, id_start: int = 0) -> None:
        self.clock = clock
        self.catalog = {module.api_name: module for module in catalog}
        self._tables = {name: _Table() for name in self.catalog}
        for name, module in self.catalog.items():
            for api_name in module.indexed_fields():
                self._tables[name].unique[api_name] = {}
        self._listeners: list[Callable[[Change], None]] = []
        self._ids = itertools.count(id_start + 1)
        self._lock = threading.RLock()
        self._pending: list[Change] | None = None

    # -- metadata ---------------------------------------------------------------------------------------------
    def modules(self) -> list[dict[str, Any]]:
        return [module.summary() for module in self.catalog.values() if module.listed]

    def fields(self, module: str) -> list[dict[str, Any]]:
        return copy.deepcopy(self.catalog[module].fields)

    def has_module(self, module: str) -> bool:
        return module in self.catalog

    def module(self, module: str) -> ModuleDef:
        return self.catalog[module]

    def next_id(self) -> str:
        return new_id(next(self._ids))

    # -- reads ------------------------------------------------------------------------------------------------
    def get(self, module: str, record_id: str) -> dict[str, Any] | None:
        """A deep copy, line items included, lookups with their names."""
        with self._lock:
            rec = self._tables[module].records.get(record_id)
            return None if rec is None else self._public(module, rec, subforms=True)

    def exists(self, module: str, record_id: str) -> bool:
        return record_id in self._tables[module].records

    def count(self, module: str) -> int:
        return len(self._tables[module].records)

    def times(self, module: str, record_id: str) -> tuple[float, float]:
        """(created, modified) as epoch seconds."""
        return self._tables[module].times[record_id]

    def key(self, module: str, record_id: str, order_by: str) -> Key:
        """The record's position in an ordering (for resuming after it)."""
        return self._tables[module].key(order_by, record_id)

    def find(self, module: str, api_name: str, value: Any) -> list[str]:
        """Ids whose unique or duplicate-check field equals ``value`` (case-insensitive), oldest first."""
        book = self._tables[module].unique.get(api_name)
        if book is None:
            raise KeyError(f"{module}.{api_name} is not indexed")
        return sorted(book.get(fold(value), ()))

    def records(self, module: str, order_by: str = "id", descending: bool = False, *, start: int = 0,
                after: Key | None = None, modified_after: float | None = None) -> Iterator[dict[str, Any]]:
        """Copies, without subform arrays (like list responses); O(log n) to start, cheap per record.

        ``start`` skips that many records by position, ``after`` resumes past a key from :meth:`key` (in the
        walking direction), ``modified_after`` keeps only records modified later (indexed when ordering by
        Modified_Time ascending, filtered otherwise).
        """
        for record_id in self.ids(module, order_by, descending, start=start, after=after,
                                  modified_after=modified_after):
            with self._lock:
                rec = self._tables[module].records.get(record_id)
                if rec is not None:
                    yield self._public(module, rec, subforms=False)

    def ids(self, module: str, order_by: str = "id", descending: bool = False, *, start: int = 0,
            after: Key | None = None, modified_after: float | None = None) -> Iterator[str]:
        if order_by not in ORDERINGS:
            raise ValueError(f"cannot order by {order_by!r}")
        table = self._tables[module]
        index = table.indexes[order_by]
        lo: Key | None = None
        hi: Key | None = None
        lo_inclusive = hi_inclusive = True
        if after is not None:
            if descending:
                hi, hi_inclusive = after, False
            else:
                lo, lo_inclusive = after, False
        indexed_since = modified_after is not None and order_by == "Modified_Time"
        if indexed_since:
            floor: Key = (modified_after, _MAX_ID)
            if lo is None or floor > lo:
                lo, lo_inclusive = floor, False
        filtered = modified_after is not None and not indexed_since
        walk = _walk(index, (lo, lo_inclusive), (hi, hi_inclusive), descending, 0 if filtered else start, self._lock)
        if not filtered:
            yield from walk
            return
        since = modified_after or 0.0
        by_modified = table.indexes["Modified_Time"]
        with self._lock:
            first_newer = by_modified.bisect_right((since, _MAX_ID))
            sparse = (len(by_modified) - first_newer) * 8 <= len(by_modified)
            newer = [key[1] for key in by_modified.islice(first_newer, None)] if sparse else []
        if sparse:  # few changed records: order those few rather than walk past every unchanged one
            keys = sorted((table.key(order_by, rid) for rid in newer), reverse=descending)
            keys = [key for key in keys if _within(key, (lo, lo_inclusive), (hi, hi_inclusive))]
            yield from (key[1] for key in keys[start:])
            return
        matched = (rid for rid in walk if table.times.get(rid, (0.0, 0.0))[1] > since)
        yield from itertools.islice(matched, start, None)

    # -- writes -----------------------------------------------------------------------------------------------
    def listen(self, listener: Callable[[Change], None]) -> None:
        """Called after every committed change."""
        self._listeners.append(listener)

    @contextlib.contextmanager
    def batch(self) -> Iterator[None]:
        """Commits inside report as one Change per (module, operation), e.g. one notification per API call."""
        if self._pending is not None:
            yield
            return
        self._pending = []
        try:
            yield
        finally:
            pending, self._pending = self._pending, None
            merged: dict[tuple[str, str], Change] = {}
            for change in pending:
                key = (change.module, change.operation)
                if key in merged:
                    old = merged[key]
                    fields = tuple(dict.fromkeys(old.fields + change.fields))
                    ids = tuple(dict.fromkeys(old.ids + change.ids))
                    change = Change(change.module, change.operation, ids, change.at, fields)
                merged[key] = change
            for change in merged.values():
                self._notify(change)

    def insert(self, module: str, values: dict[str, Any], user: dict[str, str], *,
               at: float | None = None, record_id: str | None = None) -> dict[str, Any]:
        """Store a new record (values already validated); returns its public copy."""
        rid = self.add(module, values, user, at=at, record_id=record_id)
        result = self.get(module, rid)
        assert result is not None
        return result

    def add(self, module: str, values: dict[str, Any], user: dict[str, str], *,
            at: float | None = None, record_id: str | None = None) -> str:
        """:meth:`insert` without the copy back (seeding a million records); returns the new id."""
        now = self.clock() if at is None else at
        with self._lock:
            table = self._tables[module]
            rid = record_id or self.next_id()
            rec: dict[str, Any] = {"id": rid}
            rec.update({k: _copied(v) for k, v in values.items() if k not in SYSTEM_FIELDS})
            rec.setdefault("Owner", dict(user))
            rec["Created_By"], rec["Modified_By"] = dict(user), dict(user)
            rec["Created_Time"] = rec["Modified_Time"] = iso(now)
            for sub in self.catalog[module].subforms():
                rec[sub] = [self._new_row(row, rid, now) for row in rec.get(sub) or []]
            table.records[rid] = rec
            table.times[rid] = (float(int(now)), float(int(now)))
            for name in ORDERINGS:
                table.indexes[name].add(table.key(name, rid))
            self._index_unique(table, rec, add=True)
        self._changed(Change(module, "insert", (rid,), now, tuple(k for k in values if k not in SYSTEM_FIELDS)))
        return rid

    def update(self, module: str, record_id: str, values: dict[str, Any], user: dict[str, str], *,
               at: float | None = None, drop_missing_rows: bool = True) -> dict[str, Any]:
        """Merge ``values`` into the record and bump Modified_Time (even when nothing changed, as Zoho does).

        Line items: rows with an ``id`` are merged, rows without are added, rows left out are dropped
        (``drop_missing_rows``) or kept; a row ``{"id": .., "_delete": null}`` is always removed.
        """
        now = self.clock() if at is None else at
        with self._lock:
            table = self._tables[module]
            rec = table.records[record_id]
            self._index_unique(table, rec, add=False)
            changed: list[str] = []
            subforms = self.catalog[module].subforms()
            for key, value in values.items():
                if key in SYSTEM_FIELDS:
                    continue
                if key in subforms:
                    rows = self._merge_rows(rec.get(key) or [], value or [], record_id, now, drop_missing_rows)
                    if rows != rec.get(key):
                        changed.append(key)
                    rec[key] = rows
                elif rec.get(key) != value:
                    rec[key] = copy.deepcopy(value)
                    changed.append(key)
            for name in ORDERINGS:
                table.indexes[name].discard(table.key(name, record_id))
            created = table.times[record_id][0]
            table.times[record_id] = (created, float(int(now)))
            for name in ORDERINGS:
                table.indexes[name].add(table.key(name, record_id))
            rec["Modified_Time"] = iso(now)
            rec["Modified_By"] = dict(user)
            self._index_unique(table, rec, add=True)
            result = self._public(module, rec, subforms=True)
        self._changed(Change(module, "update", (record_id,), now, tuple(changed)))
        return result

    def delete(self, module: str, record_id: str, *, at: float | None = None) -> bool:
        now = self.clock() if at is None else at
        with self._lock:
            table = self._tables[module]
            rec = table.records.get(record_id)
            if rec is None:
                return False
            self._index_unique(table, rec, add=False)
            for name in ORDERINGS:
                table.indexes[name].discard(table.key(name, record_id))
            del table.records[record_id]
            del table.times[record_id]
        self._changed(Change(module, "delete", (record_id,), now, ()))
        return True

    def all_raw(self, module: str) -> list[dict[str, Any]]:
        """Every record as stored, id order (admin dumps)."""
        with self._lock:
            table = self._tables[module]
            return [self._public(module, table.records[key[1]], subforms=True) for key in table.indexes["id"]]

    # -- internals --------------------------------------------------------------------------------------------
    def _changed(self, change: Change) -> None:
        if self._pending is not None:
            self._pending.append(change)
        else:
            self._notify(change)

    def _notify(self, change: Change) -> None:
        for listener in list(self._listeners):
            listener(change)

    def _new_row(self, row: dict[str, Any], parent_id: str, now: float) -> dict[str, Any]:
        out = {k: copy.deepcopy(v) for k, v in row.items() if k not in {"id", "_delete", "Parent_Id"}}
        out["id"] = self.next_id()
        out["Parent_Id"] = {"id": parent_id}
        out["Created_Time"] = out["Modified_Time"] = iso(now)
        return out

    def _merge_rows(self, old: list[dict[str, Any]], new: list[dict[str, Any]], parent_id: str, now: float,
                    drop_missing: bool) -> list[dict[str, Any]]:
        by_id = {row["id"]: row for row in old}
        mentioned: set[str] = set()
        deleted: set[str] = set()
        updated: dict[str, dict[str, Any]] = {}
        added: list[dict[str, Any]] = []
        for row in new:
            rid = row.get("id")
            if rid is None:
                added.append(self._new_row(row, parent_id, now))
                continue
            mentioned.add(rid)
            if "_delete" in row:
                deleted.add(rid)
                continue
            merged = copy.deepcopy(by_id[rid])
            merged.update({k: copy.deepcopy(v) for k, v in row.items() if k not in {"id", "Parent_Id"}})
            if merged != by_id[rid]:
                merged["Modified_Time"] = iso(now)
            updated[rid] = merged
        kept = [updated.get(row["id"], row) for row in old
                if row["id"] not in deleted and (row["id"] in mentioned or not drop_missing)]
        return [copy.deepcopy(row) for row in kept] + added

    def _index_unique(self, table: _Table, rec: dict[str, Any], add: bool) -> None:
        for api_name, book in table.unique.items():
            value = rec.get(api_name)
            if value in (None, ""):
                continue
            folded = fold(value)
            if add:
                book.setdefault(folded, set()).add(rec["id"])
            else:
                ids = book.get(folded)
                if ids is not None:
                    ids.discard(rec["id"])
                    if not ids:
                        del book[folded]

    def _public(self, module: str, rec: dict[str, Any], subforms: bool) -> dict[str, Any]:
        """A copy with lookup names filled in; without subform arrays unless ``subforms``."""
        definition = self.catalog[module]
        out: dict[str, Any] = {}
        for key, value in rec.items():
            if key in definition.subforms():
                if subforms:
                    out[key] = [self._named_row(definition, key, row) for row in value]
                continue
            out[key] = self._named(definition.lookup_target(key), value)
        if subforms and definition.subforms():
            out["$has_more"] = {sub: False for sub in definition.subforms()}
        return out

    def _named_row(self, definition: ModuleDef, subform: str, row: dict[str, Any]) -> dict[str, Any]:
        return {key: self._named(definition.row_lookup_target(subform, key), value) for key, value in row.items()}

    def _named(self, target: str | None, value: Any) -> Any:
        if not isinstance(value, dict):
            return copy.deepcopy(value)
        out = dict(value)
        if target and "id" in value:
            rec = self._tables[target].records.get(value["id"]) if target in self._tables else None
            out["name"] = None if rec is None else rec.get(self.catalog[target].name_field)
        return out


def _within(key: Key, low: tuple[Key | None, bool], high: tuple[Key | None, bool]) -> bool:
    (lo, lo_inc), (hi, hi_inc) = low, high
    if lo is not None and (key < lo or (key == lo and not lo_inc)):
        return False
    return hi is None or key < hi or (key == hi and hi_inc)


def _copied(value: Any) -> Any:
    """A private copy of a value (scalars are immutable; only containers need copying)."""
    return copy.deepcopy(value) if isinstance(value, (dict, list)) else value


def _walk(index: SortedList, low: tuple[Key | None, bool], high: tuple[Key | None, bool], descending: bool,
          start: int, lock: threading.RLock) -> Iterator[str]:
    """Walk an index between bounds, skipping ``start`` keys by position (O(log n)), then a chunk at a time,
    resuming after the last key seen (writes may happen between chunks)."""
    (lo, lo_inc), (hi, hi_inc) = low, high
    with lock:
        if start and not descending:
            base = 0 if lo is None else index.bisect_left(lo) if lo_inc else index.bisect_right(lo)
            if base + start >= len(index):
                return
            lo, lo_inc = index[base + start], True
        elif start:
            top = len(index) if hi is None else index.bisect_right(hi) if hi_inc else index.bisect_left(hi)
            if top - 1 - start < 0:
                return
            hi, hi_inc = index[top - 1 - start], True
    while True:
        with lock:
            chunk = list(itertools.islice(index.irange(lo, hi, (lo_inc, hi_inc), reverse=descending), 256))
        if not chunk:
            return
        for key in chunk:
            yield key[1]
        if descending:
            hi, hi_inc = chunk[-1], False
        else:
            lo, lo_inc = chunk[-1], False
