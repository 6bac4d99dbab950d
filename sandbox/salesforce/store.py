"""One org's records (the contract other helpers build on: :class:`Change`, :class:`SalesforceStore`).

Records are kept in their REST shape (datetimes as ``2026-03-01T10:30:00.000+0000``), indexed by Id and by
(SystemModstamp, Id) in sorted lists so a query page costs the same at a million rows. Deletes are soft
(``IsDeleted``, the recycle bin that queryAll sees). Writes happen inside :meth:`SalesforceStore.transaction`:
a failure rolls every write of it back (allOrNone), success notifies the listeners once per change, in commit
order, all carrying the transaction's key. Validation is the REST layer's business, not the store's.
"""

from __future__ import annotations

import calendar
import contextlib
import itertools
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sortedcontainers import SortedList

from ml_connector.sandbox.core import Clock
from ml_connector.sandbox.salesforce.ids import make_id
from ml_connector.sandbox.salesforce.objects import SYSTEM_FIELDS, ObjectDef


@dataclass(frozen=True)
class Change:
    """One committed change, in commit order (what CDC publishes)."""

    entity: str  # "Account", "Contact", "Product2", "Order", "OrderItem", "Invoice", ...
    change_type: str  # "CREATE" | "UPDATE" | "DELETE" | "UNDELETE"
    record_ids: tuple[str, ...]
    changed_fields: tuple[str, ...]  # API names changed (UPDATE), incl. LastModifiedDate / SystemModstamp
    nulled_fields: tuple[str, ...]
    record: dict[str, Any]  # the record after the change (before it, for DELETE)
    commit_ms: int  # sandbox clock, epoch ms
    transaction_key: str
    change_origin: str  # "com/salesforce/api/rest/66.0;client=<Sforce-Call-Options client>" or ""
    commit_user: str


def sf_datetime(epoch_ms: int) -> str:
    """``2026-03-01T10:30:00.000+0000`` (UTC, milliseconds, no colon in the offset), facts §2.3."""
    moment = datetime.fromtimestamp(epoch_ms / 1000, UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{epoch_ms % 1000:03d}+0000"


class _Rollback(Exception):
    """Raised inside a transaction to undo it without an error escaping."""


class _Table:
    def __init__(self, definition: ObjectDef) -> None:
        self.definition = definition
        self.records: dict[str, dict[str, Any]] = {}
        self.modstamps: dict[str, int] = {}  # id -> SystemModstamp ms
        self.by_id: SortedList = SortedList()  # live records' ids
        self.by_modstamp: SortedList = SortedList()  # live records' (ms, id)
        self.all_by_id: SortedList = SortedList()  # deleted ones too (queryAll)
        self.all_by_modstamp: SortedList = SortedList()
        self.children: dict[str, dict[str, set[str]]] = {  # reference field -> parent id -> live child ids
            f.name: {} for f in definition.fields if f.type == "reference" and f.name not in SYSTEM_FIELDS}
        # field -> folded value -> the id, or a set of ids when several share it (one str per row: a million fit)
        self.unique: dict[str, dict[str, str | set[str]]] = {f.name: {} for f in definition.fields if f.unique}
        self.deleted: SortedList = SortedList()  # (deleted ms, id) of records in the recycle bin


class SalesforceStore:
    """The sObjects and records of one org; ``org_id``/``user_id`` are the run-as user's."""

    def __init__(self, definitions: list[ObjectDef], clock: Clock, *, org_id: str, user_id: str,
                 settings: dict[str, Any] | None = None) -> None:
        self.clock = clock
        self.org_id = org_id
        self.user_id = user_id
        self.settings = settings if settings is not None else {}  # the sandbox config: ``revenue_cloud`` lives here
        self._defs = {d.name: d for d in definitions}
        self._tables = {d.name: _Table(d) for d in definitions}
        self._counters = {d.name: itertools.count(1) for d in definitions}
        self._listeners: list[Callable[[Change], None]] = []
        self._field_names: dict[str, tuple[str, ...]] = {}
        self._lock = threading.RLock()
        self._tx: list[tuple[str, str, dict[str, Any] | None]] | None = None  # undo log of the open transaction
        self._tx_changes: list[Change] = []
        self._tx_key = ""
        self._tx_count = itertools.count(1)
        self.last_ms = 0  # commit times only move forward, even when the clock stands still

    # -- metadata ---------------------------------------------------------------------------------------------
    def objects(self) -> list[str]:
        """The org's sObject names (Invoice/InvoiceLine only with Revenue Cloud)."""
        revenue_cloud = bool(self.settings.get("revenue_cloud", False))
        return [name for name, d in self._defs.items() if revenue_cloud or not d.revenue_cloud]

    def definition(self, sobject: str) -> ObjectDef | None:
        """The object's definition, matched case-insensitively; None when the org does not have it."""
        for name in self.objects():
            if name.lower() == sobject.lower():
                return self._defs[name]
        return None

    def describe(self, sobject: str, version: str = "66.0") -> dict[str, Any]:
        """The describe body (facts §2.4); KeyError for an object the org does not have."""
        d = self.definition(sobject)
        if d is None:
            raise KeyError(sobject)
        base = f"/services/data/v{version}/sobjects/{d.name}"
        return {
            "name": d.name, "label": d.name, "labelPlural": d.name + "s", "keyPrefix": d.key_prefix, "custom": False,
            "createable": d.createable, "updateable": True, "deletable": d.deletable, "queryable": True,
            "retrieveable": True, "searchable": True, "replicateable": True, "triggerable": True,
            "fields": [f.describe() for f in d.fields],
            "childRelationships": [{"childSObject": c.child, "field": c.field, "relationshipName": c.name,
                                    "cascadeDelete": c.child == "OrderItem"} for c in d.children],
            "recordTypeInfos": [],
            "urls": {"sobject": base, "describe": f"{base}/describe", "rowTemplate": f"{base}/{{ID}}"},
        }

    # -- reads ------------------------------------------------------------------------------------------------
    def get(self, sobject: str, record_id: str) -> dict[str, Any] | None:
        """A copy of a live (not deleted) record, or None."""
        rec = self.raw(sobject, record_id)
        return None if rec is None or rec["IsDeleted"] else rec

    def raw(self, sobject: str, record_id: str) -> dict[str, Any] | None:
        """A copy of the record, deleted ones included."""
        with self._lock:
            rec = self._tables[sobject].records.get(record_id)
            return self._full(sobject, rec) if rec is not None else None

    def peek(self, sobject: str, record_id: str) -> dict[str, Any] | None:
        """The stored record itself, null fields left out (read-only use: query evaluation without copying)."""
        return self._tables[sobject].records.get(record_id)

    def count(self, sobject: str) -> int:
        return len(self._tables[sobject].records)

    def find(self, sobject: str, field_name: str, value: Any) -> list[str]:
        """Live ids whose unique field equals ``value`` (case-insensitive), oldest first."""
        book = self._tables[sobject].unique.get(field_name)
        if book is None:
            raise KeyError(f"{sobject}.{field_name} is not unique-indexed")
        held = book.get(_fold(value))
        return [] if held is None else [held] if isinstance(held, str) else sorted(held)

    def index(self, sobject: str, by: str, *, deleted: bool = False) -> SortedList:
        """The sorted index ``"Id"`` (ids) or ``"SystemModstamp"`` ((ms, id)) of live records (``deleted``: all
        records); callers must not modify it."""
        table = self._tables[sobject]
        if deleted:
            return table.all_by_id if by == "Id" else table.all_by_modstamp
        return table.by_id if by == "Id" else table.by_modstamp

    def children(self, sobject: str, field_name: str, parent_id: str) -> list[str]:
        """Live ids of ``sobject`` records whose reference ``field_name`` is ``parent_id``, in Id order."""
        return sorted(self._tables[sobject].children[field_name].get(parent_id, ()))

    def modstamp(self, sobject: str, record_id: str) -> int:
        return self._tables[sobject].modstamps[record_id]

    def deleted_between(self, sobject: str, start_ms: int, end_ms: int) -> list[tuple[int, str]]:
        table = self._tables[sobject]
        return list(table.deleted.irange((start_ms, ""), (end_ms, "~")))

    # -- writes -----------------------------------------------------------------------------------------------
    def listen(self, listener: Callable[[Change], None]) -> None:
        """Called after every committed change, in commit order."""
        self._listeners.append(listener)

    @contextlib.contextmanager
    def transaction(self) -> Iterator[None]:
        """Writes inside commit together: an exception undoes them all; success notifies the listeners."""
        with self._lock:
            if self._tx is not None:  # nested: part of the outer one; a failure undoes only this part
                with self.savepoint():
                    yield
                return
            self._tx, self._tx_changes = [], []
            self._tx_key = f"{next(self._tx_count):08x}-0000-4000-8000-{self.org_id[-12:].lower():0>12}"
            try:
                yield
            except BaseException:
                for sobject, rid, before in reversed(self._tx):
                    self._put(sobject, rid, before)
                self._tx, self._tx_changes = None, []
                raise
            changes, self._tx, self._tx_changes = self._tx_changes, None, []
        for change in changes:
            for listener in list(self._listeners):
                listener(change)

    @contextlib.contextmanager
    def savepoint(self) -> Iterator[None]:
        """Inside a transaction: a failure undoes only this part (allOrNone=false: one record fails alone)."""
        assert self._tx is not None, "savepoint outside a transaction"
        mark, changes = len(self._tx), len(self._tx_changes)
        try:
            yield
        except BaseException:
            while len(self._tx) > mark:
                sobject, rid, before = self._tx.pop()
                self._put(sobject, rid, before)
            del self._tx_changes[changes:]
            raise

    def now_ms(self) -> int:
        """The commit time: the clock in ms, but never before the previous commit (modstamps stay ordered)."""
        self.last_ms = max(self.last_ms, int(round(self.clock() * 1000)))
        return self.last_ms

    def new_id(self, sobject: str) -> str:
        return make_id(self._defs[sobject].key_prefix, next(self._counters[sobject]))

    def insert(self, sobject: str, values: dict[str, Any], *, origin: str = "", at_ms: int | None = None,
               user_id: str | None = None) -> str:
        """Store a new record (values already validated and in canonical field names); returns its id."""
        with self.transaction():
            now = self.now_ms() if at_ms is None else at_ms
            user = user_id or self.user_id
            rid = self.new_id(sobject)
            stamp = sf_datetime(now)
            rec: dict[str, Any] = {f.name: f.default for f in self._defs[sobject].fields if f.default is not None}
            rec.update({k: v for k, v in values.items() if k not in SYSTEM_FIELDS and v is not None})
            rec.update({"Id": rid, "IsDeleted": False, "CreatedDate": stamp, "CreatedById": user,
                        "LastModifiedDate": stamp, "LastModifiedById": user, "SystemModstamp": stamp})
            if self._defs[sobject].field("OwnerId") is not None and rec.get("OwnerId") is None:
                rec["OwnerId"] = user
            self._write(sobject, rid, rec, now)
            full = self._full(sobject, rec)
            self._emit(sobject, "CREATE", rid, (), tuple(k for k, v in full.items() if v is None), full, now,
                       origin, user)
        return rid

    def update(self, sobject: str, record_id: str, values: dict[str, Any], *, origin: str = "",
               user_id: str | None = None) -> tuple[str, ...]:
        """Merge ``values``; bumps LastModifiedDate/SystemModstamp even when nothing changed. Returns the
        changed field names (a no-op update notifies nobody, like CDC)."""
        with self.transaction():
            now = self.now_ms()
            user = user_id or self.user_id
            rec = dict(self._tables[sobject].records[record_id])
            changed = [k for k, v in values.items() if k not in SYSTEM_FIELDS and rec.get(k) != v]
            for key in changed:
                if values[key] is None:
                    rec.pop(key, None)
                else:
                    rec[key] = values[key]
            stamp = sf_datetime(now)
            rec.update({"LastModifiedDate": stamp, "LastModifiedById": user, "SystemModstamp": stamp})
            self._write(sobject, record_id, rec, now)
            if changed:
                fields = (*changed, "LastModifiedDate", "SystemModstamp")
                self._emit(sobject, "UPDATE", record_id, fields, tuple(k for k in changed if values[k] is None),
                           self._full(sobject, rec), now, origin, user)
        return tuple(changed)

    def delete(self, sobject: str, record_id: str, *, origin: str = "", user_id: str | None = None) -> None:
        """Move the record to the recycle bin (IsDeleted, still visible to queryAll)."""
        with self.transaction():
            now = self.now_ms()
            user = user_id or self.user_id
            before = self._full(sobject, self._tables[sobject].records[record_id])
            rec = dict(self._tables[sobject].records[record_id])
            stamp = sf_datetime(now)
            rec.update({"IsDeleted": True, "LastModifiedDate": stamp, "LastModifiedById": user,
                        "SystemModstamp": stamp})
            self._write(sobject, record_id, rec, now)
            self._emit(sobject, "DELETE", record_id, (), (), before, now, origin, user)

    def undelete(self, sobject: str, record_id: str, *, origin: str = "", user_id: str | None = None) -> None:
        with self.transaction():
            now = self.now_ms()
            user = user_id or self.user_id
            rec = dict(self._tables[sobject].records[record_id])
            stamp = sf_datetime(now)
            rec.update({"IsDeleted": False, "LastModifiedDate": stamp, "LastModifiedById": user,
                        "SystemModstamp": stamp})
            self._write(sobject, record_id, rec, now)
            self._emit(sobject, "UNDELETE", record_id, (), (), self._full(sobject, rec), now, origin, user)

    # -- internals --------------------------------------------------------------------------------------------
    def _full(self, sobject: str, rec: dict[str, Any]) -> dict[str, Any]:
        """A copy with every field (stored records leave nulls out: a million rows must fit in memory)."""
        full = dict.fromkeys(self._blank(sobject))
        full.update(rec)
        return full

    def _blank(self, sobject: str) -> tuple[str, ...]:
        names = self._field_names.get(sobject)
        if names is None:
            names = self._field_names[sobject] = tuple(f.name for f in self._defs[sobject].fields)
        return names

    def _write(self, sobject: str, rid: str, rec: dict[str, Any], now: int) -> None:
        assert self._tx is not None
        table = self._tables[sobject]
        before = table.records.get(rid)
        self._tx.append((sobject, rid, before))
        self._put(sobject, rid, rec, now)

    def _put(self, sobject: str, rid: str, rec: dict[str, Any] | None, now: int | None = None) -> None:
        """Replace the stored record (None removes it) and keep every index in step."""
        table = self._tables[sobject]
        old = table.records.get(rid)
        if old is not None:
            key = (table.modstamps[rid], rid)
            table.all_by_modstamp.discard(key)
            table.all_by_id.discard(rid)
            if old["IsDeleted"]:
                table.deleted.discard(key)
            else:
                table.by_modstamp.discard(key)
                table.by_id.discard(rid)
                self._unique(table, old, rid, add=False)
                self._link(table, old, rid, add=False)
        if rec is None:
            table.records.pop(rid, None)
            table.modstamps.pop(rid, None)
            return
        ms = now if now is not None else parse_sf_datetime(rec["SystemModstamp"])
        table.records[rid] = rec
        table.modstamps[rid] = ms
        table.all_by_id.add(rid)
        table.all_by_modstamp.add((ms, rid))
        if rec["IsDeleted"]:
            table.deleted.add((ms, rid))
        else:
            table.by_id.add(rid)
            table.by_modstamp.add((ms, rid))
            self._unique(table, rec, rid, add=True)
            self._link(table, rec, rid, add=True)

    @staticmethod
    def _link(table: _Table, rec: dict[str, Any], rid: str, *, add: bool) -> None:
        for name, book in table.children.items():
            parent = rec.get(name)
            if not parent:
                continue
            ids = book.setdefault(parent, set())
            if add:
                ids.add(rid)
            else:
                ids.discard(rid)
                if not ids:
                    del book[parent]

    @staticmethod
    def _unique(table: _Table, rec: dict[str, Any], rid: str, *, add: bool) -> None:
        for name, book in table.unique.items():
            value = rec.get(name)
            if value is None or value == "":
                continue
            key = _fold(value)
            held = book.get(key)
            if add:
                book[key] = rid if held is None or held == rid else ({held} if isinstance(held, str) else held) | {rid}
            elif isinstance(held, set):
                held.discard(rid)
                book[key] = next(iter(held)) if len(held) == 1 else held
            elif held == rid:
                del book[key]

    def _emit(self, sobject: str, change_type: str, rid: str, changed: tuple[str, ...], nulled: tuple[str, ...],
              rec: dict[str, Any], now: int, origin: str, user: str) -> None:
        if not self._listeners:  # nobody to tell (seeding a million rows): skip the copy
            return
        self._tx_changes.append(Change(sobject, change_type, (rid,), changed, nulled, rec, now,
                                       self._tx_key, origin, user))


def _fold(value: Any) -> str:
    """External ids compare case-insensitively (UNCONFIRMED; the stricter choice for duplicates)."""
    return str(value).strip().casefold()


def parse_sf_datetime(text: str) -> int:
    """Epoch ms of a stored ``2026-03-01T10:30:00.000+0000`` (always UTC here): sliced, not strptime'd, since
    a query compares one per row."""
    seconds = calendar.timegm((int(text[0:4]), int(text[5:7]), int(text[8:10]), int(text[11:13]),
                               int(text[14:16]), int(text[17:19]), 0, 0, 0))
    return seconds * 1000 + int(text[20:23])
