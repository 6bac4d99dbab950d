"""The lead database: leads, companies, named accounts, opportunities, sales persons (facts §2.3–2.4).

Records are kept by key and indexed by their searchable fields, so a lookup costs the same at a million records
as at a hundred. Every lead create, field change and delete is told to the listeners (the activity log).
"""

from __future__ import annotations

import copy
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from ml_connector.sandbox.core import Clock

OBJECTS = ("leads", "companies", "namedaccounts", "opportunities", "salespersons")


@dataclass(frozen=True)
class FieldDef:
    name: str
    data_type: str  # integer, string, email, phone, url, currency, float, date, datetime, boolean, text
    display: str = ""
    length: int | None = None
    updateable: bool = True


@dataclass(frozen=True)
class ObjectSchema:
    """What ``describe`` tells: the id field, the dedupe fields, the searchable fields, the fields."""

    name: str
    display: str
    id_field: str  # "id" (integer, assigned) or "marketoGUID" (string, assigned)
    dedupe_fields: tuple[str, ...]
    searchable: tuple[str, ...]
    fields: tuple[FieldDef, ...]
    required: tuple[str, ...] = ()

    def field(self, name: str) -> FieldDef | None:
        return _FIELD_INDEX[self.name].get(name)


def _f(name: str, data_type: str = "string", length: int | None = None, updateable: bool = True) -> FieldDef:
    if length is None and data_type in {"string", "email", "phone", "url"}:
        length = 255
    return FieldDef(name, data_type, name[:1].upper() + name[1:], length, updateable)


_STAMPS = (_f("createdAt", "datetime", updateable=False), _f("updatedAt", "datetime", updateable=False))
COMPANY_FIELDS = ("company", "site", "billingStreet", "billingCity", "billingState", "billingCountry",
                  "billingPostalCode", "website", "mainPhone", "annualRevenue", "numberOfEmployees", "industry",
                  "sicCode")
"""Company fields as a lead shows them; a lead write may not set them (1021), it links a company instead."""
_COMPANY_TYPES = {"annualRevenue": "currency", "numberOfEmployees": "integer", "website": "url",
                  "mainPhone": "phone"}
_COMPANY_FIELD_DEFS = tuple(_f(n, _COMPANY_TYPES.get(n, "string")) for n in COMPANY_FIELDS)

SCHEMAS: dict[str, ObjectSchema] = {
    "leads": ObjectSchema(
        "leads", "API Lead", "id", ("email",),
        ("id", "email", "externalCompanyId", "externalSalesPersonId", "customerNumber", "sfdcId"),
        (_f("id", "integer", updateable=False), _f("email", "email"), _f("firstName"), _f("lastName"),
         _f("title"), _f("phone", "phone"), _f("leadSource"), _f("leadStatus"), _f("unsubscribed", "boolean"),
         _f("customerNumber", "integer"), _f("sfdcId"), _f("externalCompanyId"), _f("externalSalesPersonId"),
         _f("dateOfBirth", "date"), _f("leadScore", "integer"), *_COMPANY_FIELD_DEFS, *_STAMPS)),
    "companies": ObjectSchema(
        "companies", "Company", "id", ("externalCompanyId",), ("externalCompanyId", "id", "company"),
        (_f("id", "integer", updateable=False), _f("externalCompanyId"), *_COMPANY_FIELD_DEFS,
         _f("externalSalesPersonId"), *_STAMPS)),
    "namedaccounts": ObjectSchema(
        "namedaccounts", "Named Account", "marketoGUID", ("name",), ("marketoGUID", "name", "domainName"),
        (_f("marketoGUID", updateable=False), _f("name"), _f("domainName"), _f("annualRevenue", "currency"),
         _f("numberOfEmployees", "integer"), _f("industry"), _f("city"), _f("state"), _f("country"),
         _f("sicCode"), _f("logoUrl", "url"), _f("accountOwnerId", "integer"),
         _f("membershipCount", "integer", updateable=False), *_STAMPS)),
    "opportunities": ObjectSchema(
        "opportunities", "Opportunity", "marketoGUID", ("externalOpportunityId",),
        ("marketoGUID", "externalOpportunityId", "externalCompanyId", "externalSalesPersonId"),
        (_f("marketoGUID", updateable=False), _f("externalOpportunityId"), _f("name"), _f("description", "text"),
         _f("amount", "currency"), _f("expectedRevenue", "currency"), _f("probability", "integer"),
         _f("closeDate", "date"), _f("isClosed", "boolean"), _f("isWon", "boolean"), _f("stage"), _f("type"),
         _f("fiscalQuarter", "integer"), _f("fiscalYear", "integer"), _f("leadSource"), _f("nextStep"),
         _f("externalCompanyId"), _f("externalSalesPersonId"), *_STAMPS),
        required=("name",)),
    "salespersons": ObjectSchema(
        "salespersons", "Sales Person", "id", ("externalSalesPersonId",), ("externalSalesPersonId", "id", "email"),
        (_f("id", "integer", updateable=False), _f("externalSalesPersonId"), _f("email", "email"),
         _f("firstName"), _f("lastName"), _f("title"), _f("phone", "phone"), _f("mobilePhone", "phone"),
         _f("fax", "phone"), *_STAMPS)),
}
_FIELD_INDEX = {name: {f.name: f for f in schema.fields} for name, schema in SCHEMAS.items()}
_LEAD_FIELD_IDS = {f.name: 1 + i for i, f in enumerate(SCHEMAS["leads"].fields)}
_CASELESS = {"email"}  # e-mail lookups ignore case, as Marketo's dedupe does


def lead_field_id(name: str) -> int | None:
    """A lead field's numeric id (describe.json's ``id``; lead-change activities name fields by it)."""
    return _LEAD_FIELD_IDS.get(name)


def iso(epoch: float) -> str:
    """Marketo's timestamp style: ``2026-01-01T00:00:00Z``."""
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _norm(name: str, value: Any) -> str:
    text = str(value)
    return text.lower() if name in _CASELESS else text


@dataclass(frozen=True)
class LeadEvent:
    """Every lead create / field change / delete, for the activity log."""

    kind: str  # "new" (activity 12), "change" (13, one per changed field), "delete" (37)
    lead_id: int
    at: float  # sandbox clock
    field: str | None = None
    old: Any = None
    new: Any = None
    reason: str = "Web service API"


@dataclass
class _Table:
    schema: ObjectSchema
    rows: dict[Any, dict[str, Any]] = field(default_factory=dict)  # insertion order = id order
    index: dict[str, dict[str, set[Any]]] = field(default_factory=dict)
    next_id: int = 1
    position: dict[Any, int] = field(default_factory=dict)  # key -> creation number (the GUID tables' order)


class MarketoStore:
    """Thread-safe tables with indexes on the searchable fields."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self._tables = {name: _Table(SCHEMAS[name], index={f: {} for f in SCHEMAS[name].searchable})
                        for name in OBJECTS}
        self._listeners: list[Callable[[LeadEvent], None]] = []
        self._lock = threading.RLock()

    # -- reads ------------------------------------------------------------------------------------------------
    def get(self, obj: str, key: int | str) -> dict[str, Any] | None:
        with self._lock:
            row = self._tables[obj].rows.get(self._key(obj, key))
            return copy.deepcopy(row) if row is not None else None

    def find(self, obj: str, field_name: str, values: list[str]) -> list[dict[str, Any]]:
        """Records whose field equals one of the values (as text; e-mail ignores case), in id order."""
        with self._lock:
            table = self._tables[obj]
            wanted = {_norm(field_name, v) for v in values}
            if field_name == table.schema.id_field:
                keys = {self._key(obj, v) for v in values}
                hits = [k for k in keys if k in table.rows]
            elif field_name in table.index:
                hits = [k for v in wanted for k in table.index[field_name].get(v, ())]
            else:
                hits = [k for k, row in table.rows.items()
                        if row.get(field_name) is not None and _norm(field_name, row[field_name]) in wanted]
            return [copy.deepcopy(table.rows[k]) for k in sorted(set(hits), key=self._order(obj))]

    def records(self, obj: str) -> list[dict[str, Any]]:
        with self._lock:
            return [copy.deepcopy(row) for row in self._tables[obj].rows.values()]

    def count(self, obj: str) -> int:
        return len(self._tables[obj].rows)

    # -- writes -----------------------------------------------------------------------------------------------
    def insert(self, obj: str, values: dict[str, Any], *, reason: str = "Web service API",
               at: float | None = None) -> dict[str, Any]:
        """Store a new record (values are trusted); assigns its id or marketoGUID and its timestamps."""
        with self._lock:
            table = self._tables[obj]
            now = self.clock() if at is None else at
            row = {k: v for k, v in values.items() if k not in {"id", "marketoGUID", "createdAt", "updatedAt"}}
            if table.schema.id_field == "id":
                key: Any = table.next_id
                table.next_id += 1
            else:
                key = str(uuid.UUID(int=(OBJECTS.index(obj) + 1) << 96 | table.next_id))
                table.next_id += 1
            row = {table.schema.id_field: key, **row, "createdAt": iso(now), "updatedAt": iso(now)}
            table.rows[key] = row
            table.position[key] = table.next_id
            self._index_add(table, key, row)
            out = copy.deepcopy(row)
        if obj == "leads":
            self._emit(LeadEvent("new", key, now, reason=reason))
        return out

    def update(self, obj: str, key: int | str, values: dict[str, Any], *,
               reason: str = "Web service API") -> tuple[dict[str, Any], list[str]]:
        """Merge values into a record; returns it and the fields that really changed (updatedAt moves only then)."""
        events: list[LeadEvent] = []
        with self._lock:
            table = self._tables[obj]
            real_key = self._key(obj, key)
            row = table.rows[real_key]
            now = self.clock()
            changed = [k for k, v in values.items()
                       if k not in {"id", "marketoGUID", "createdAt", "updatedAt"} and row.get(k) != v]
            if changed:
                self._index_remove(table, real_key, row)
                for name in changed:
                    if obj == "leads":
                        events.append(LeadEvent("change", real_key, now, name, row.get(name), values[name], reason))
                    row[name] = values[name]
                row["updatedAt"] = iso(now)
                self._index_add(table, real_key, row)
            out = copy.deepcopy(row)
        for event in events:
            self._emit(event)
        return out, changed

    def delete(self, obj: str, key: int | str, *, reason: str = "Web service API") -> bool:
        with self._lock:
            table = self._tables[obj]
            real_key = self._key(obj, key)
            row = table.rows.pop(real_key, None)
            if row is None:
                return False
            self._index_remove(table, real_key, row)
            table.position.pop(real_key, None)
            now = self.clock()
        if obj == "leads":
            self._emit(LeadEvent("delete", real_key, now, reason=reason))
        return True

    def listen(self, callback: Callable[[LeadEvent], None]) -> None:
        self._listeners.append(callback)

    # -- internals --------------------------------------------------------------------------------------------
    def _emit(self, event: LeadEvent) -> None:
        for callback in list(self._listeners):
            callback(event)

    def _key(self, obj: str, key: int | str) -> Any:
        if self._tables[obj].schema.id_field == "id":
            try:
                return int(key)
            except (TypeError, ValueError):
                return None
        return str(key)

    def _order(self, obj: str) -> Callable[[Any], Any]:
        return self._tables[obj].position.__getitem__

    @staticmethod
    def _index_add(table: _Table, key: Any, row: dict[str, Any]) -> None:
        for name, index in table.index.items():
            if name != table.schema.id_field and row.get(name) not in (None, ""):
                index.setdefault(_norm(name, row[name]), set()).add(key)

    @staticmethod
    def _index_remove(table: _Table, key: Any, row: dict[str, Any]) -> None:
        for name, index in table.index.items():
            if row.get(name) not in (None, ""):
                bucket = index.get(_norm(name, row[name]))
                if bucket is not None:
                    bucket.discard(key)
                    if not bucket:
                        del index[_norm(name, row[name])]
