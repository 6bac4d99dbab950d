"""QAD Adaptive ERP simulator ("qad-sim"): the DESIGNED REST contract of api-facts §3.5.

Routes (all JSON):
  POST /clouderp/oauth/token                    OAuth2 password / refresh_token grant (query string or form)
  GET  /clouderp/api/erp/<entity>               page by (lastModifiedDate, uri); modifiedSince is inclusive
  GET  /clouderp/api/erp/<entity>/<key>         one record as {"data": [record]}
  POST /clouderp/api/erp/<entity>               batch write, all-or-nothing, business errors on HTTP 200
  GET  /clouderp/api/qracore/browses            browse facade (zero rows unless page and pageAction are sent)
Entities: customerV2s, supplierV2s, items, salesOrders. Every API call needs a bearer token and a domain
scope (``x-qad-workspace-id: <domain>_<entity>`` or ``?domainCode=``) and is rate limited per token.

Seeded records are virtual (see ``data``): the store keeps one ``SortedList`` of ``(lastModifiedDate
ms, key)`` per entity plus a dict of records changed since seeding, so a page costs O(log n + pageSize) at
any size. Ordering by key equals ordering by ``uri`` because an entity's uris share one prefix.
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
import re
import secrets
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qsl

from sortedcontainers import SortedList
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from ml_connector.sandbox.qad import data
from ml_connector.sandbox.core import Clock, Sandbox, is_date

API = "/clouderp/api/erp"
ALL_METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE"]
ADMIN_USER = "sandbox-admin"
SYSTEM_FIELDS = frozenset(
    {"uri", "domainCode", "lastModifiedDate", "lastModifiedUser", "concurrencyHash", "dataOperation"})

DEFAULT_CONFIG: dict[str, Any] = {
    "token_ttl": 3600,  # seconds an access token lives (expires_in)
    "rotate_refresh_token": False,  # refresh grant revokes the old refresh token and issues a new one
    "rate_per_second": 20,  # requests per sliding second per limiter key; 0 disables
    "rate_limit_per": "token",  # "token" (per access token) or "client" (per client_id)
    "max_page_size": 1000,
    "default_page_size": 100,
    "max_batch": 100,  # records per write call
    "reject_unknown_fields": True,  # UNVERIFIED: unknown record fields are business errors
    "enforce_field_lengths": True,  # UNVERIFIED: MFG/PRO-style field widths are enforced on writes
    "enforce_active_references": True,  # orders may not use inactive customers or non-ACTIVE items
}


# ---- field rules ---------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Rule:
    """Validation rule of one writable field."""

    kind: str  # "str" | "email" | "number" | "int" | "bool" | "date" | "list"
    required: bool = False
    max_len: int | None = None
    choices: frozenset[str] | None = None
    nullable: bool = False
    minimum: float | None = None
    each: Mapping[str, Rule] | None = None  # rules of the objects in a "list"


ADDRESS_RULES = {
    "addressType": Rule("str", True, 8, frozenset({"HEADER", "SHIPTO", "BILLTO"})),
    "street": Rule("str", True, 36),
    "city": Rule("str", True, 20),
    "postalCode": Rule("str", False, 10, nullable=True),
    "country": Rule("str", True, 3),
}
CONTACT_RULES = {
    "contactId": Rule("str", False, 20),
    "firstName": Rule("str", True, 30),
    "lastName": Rule("str", True, 30),
    "email": Rule("email", False, 80, nullable=True),
    "phone": Rule("str", False, 20, nullable=True),
    "role": Rule("str", False, 30, nullable=True),
    "isKeyContact": Rule("bool"),
}
LINE_RULES = {
    "lineNumber": Rule("int", minimum=1),
    "itemCode": Rule("str", True, 18),
    "quantityOrdered": Rule("number", True, minimum=0),
    "quantityShipped": Rule("number", minimum=0),
    "listPrice": Rule("number", minimum=0),
    "netPrice": Rule("number", minimum=0),
    "siteCode": Rule("str", False, 8, data.SITES),
}
CUSTOMER_RULES = {
    "customerCode": Rule("str", True, 8),
    "businessRelationCode": Rule("str", False, 8),
    "name": Rule("str", True, 60),
    "currencyCode": Rule("str", False, 3, data.CURRENCIES),
    "creditTermsCode": Rule("str", False, 8, data.CREDIT_TERMS),
    "creditLimit": Rule("number", minimum=0),
    "isActive": Rule("bool"),
    "taxZone": Rule("str", False, 16, nullable=True),
    "addresses": Rule("list", each=ADDRESS_RULES),
    "contacts": Rule("list", each=CONTACT_RULES),
}
SUPPLIER_RULES = {
    "supplierCode": Rule("str", True, 8),
    "businessRelationCode": Rule("str", False, 8),
    "name": Rule("str", True, 60),
    "currencyCode": Rule("str", False, 3, data.CURRENCIES),
    "paymentTermsCode": Rule("str", False, 8, data.CREDIT_TERMS),
    "isActive": Rule("bool"),
    "addresses": Rule("list", each=ADDRESS_RULES),
}
ITEM_RULES = {
    "itemCode": Rule("str", True, 18),
    "description": Rule("str", True, 24),
    "description2": Rule("str", False, 24, nullable=True),
    "unitOfMeasure": Rule("str", False, 2, data.UNITS),
    "productLine": Rule("str", False, 4),
    "itemType": Rule("str", False, 8),
    "itemStatus": Rule("str", False, 8, data.ITEM_STATUSES),
    "listPrice": Rule("number", minimum=0),
    "currencyCode": Rule("str", False, 3, data.CURRENCIES),
    "siteCode": Rule("str", False, 8, data.SITES),
}
ORDER_RULES = {
    "salesOrderNumber": Rule("str", True, 8),
    "customerCode": Rule("str", True, 8),
    "shipToCode": Rule("str", False, 8),
    "orderDate": Rule("date"),
    "requiredDate": Rule("date", nullable=True),
    "currencyCode": Rule("str", True, 3, data.CURRENCIES),
    "status": Rule("str", False, 10, data.ORDER_STATUSES),
    "externalReference": Rule("str", False, 30, nullable=True),
    "lines": Rule("list", each=LINE_RULES),
}

_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_TIMESTAMP = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,9})?(Z|[+-]\d{2}:\d{2})$")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_KIND_NAMES = {"str": "string", "email": "string", "number": "number", "int": "integer", "bool": "boolean",
               "date": "date (YYYY-MM-DD)", "list": "array"}


def _type_ok(value: Any, kind: str) -> bool:
    if kind in {"str", "email", "date"}:
        return isinstance(value, str)
    if kind == "number":
        return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
    if kind == "int":
        return isinstance(value, int) and not isinstance(value, bool)
    if kind == "bool":
        return isinstance(value, bool)
    return isinstance(value, list)


def check_value(value: Any, rule: Rule, config: Mapping[str, Any]) -> str | None:
    """Error message for one scalar value, or None when it is valid."""
    if value is None:
        return None if rule.nullable else "Value is mandatory"
    if rule.required and value == "":
        return "Value is mandatory"
    if not _type_ok(value, rule.kind):
        return f"Invalid value type: expected {_KIND_NAMES[rule.kind]}"
    if rule.kind == "email" and not _EMAIL.match(value):
        return f"Invalid e-mail address '{value}'"
    if rule.kind == "date" and not is_date(value):
        return f"Invalid date '{value}': expected YYYY-MM-DD"
    if rule.choices is not None and value not in rule.choices:
        return f"Value '{value}' is not a valid code"
    if rule.max_len is not None and isinstance(value, str) and config["enforce_field_lengths"] \
            and len(value) > rule.max_len:
        return f"Value exceeds the maximum length of {rule.max_len}"
    if rule.minimum is not None and not isinstance(value, list) and value < rule.minimum:
        return f"Value must be at least {rule.minimum:g}"
    return None


def check_object(obj: Mapping[str, Any], rules: Mapping[str, Rule], prefix: str, create: bool,
                 config: Mapping[str, Any]) -> list[tuple[str, str]]:
    """(fieldName, message) errors of one object against its rules; ``create`` enforces required fields."""
    errors: list[tuple[str, str]] = []
    if config["reject_unknown_fields"]:
        errors += [(prefix + name, "Unknown field") for name in obj if name not in rules]
    for name, rule in rules.items():
        if name not in obj:
            if create and rule.required:
                errors.append((prefix + name, "Value is mandatory"))
            continue
        message = check_value(obj[name], rule, config)
        if message:
            errors.append((prefix + name, message))
        elif rule.each is not None and isinstance(obj[name], list):
            errors += _check_list(obj[name], rule.each, f"{prefix}{name}", config)
    return errors


def _check_list(values: list[Any], rules: Mapping[str, Rule], path: str,
                config: Mapping[str, Any]) -> list[tuple[str, str]]:
    errors: list[tuple[str, str]] = []
    for k, value in enumerate(values):
        if not isinstance(value, dict):
            errors.append((f"{path}[{k}]", "Invalid value type: expected object"))
        else:
            errors += check_object(value, rules, f"{path}[{k}].", True, config)
    return errors


# ---- entities ------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class EntitySpec:
    """Static description of one business entity."""

    name: str
    key_field: str
    urn: str
    module: str  # browse module: urn:browse:bebrowse:com.qad.erp.<module>.<name>
    salt: int
    key_index: Callable[[str], int | None]
    rules: Mapping[str, Rule]
    defaults: Mapping[str, Any]
    read_only: frozenset[str] = frozenset()


SPECS: dict[str, EntitySpec] = {s.name: s for s in (
    EntitySpec("customerV2s", "customerCode", "urn:be:com.qad.base.customer.ICustomerV2", "base", 1,
               data.customer_index, CUSTOMER_RULES,
               {"currencyCode": "USD", "creditTermsCode": "30D", "creditLimit": 0.0, "isActive": True,
                "taxZone": None, "addresses": [], "contacts": []}),
    EntitySpec("supplierV2s", "supplierCode", "urn:be:com.qad.base.supplier.ISupplierV2", "base", 2,
               data.supplier_index, SUPPLIER_RULES,
               {"currencyCode": "USD", "paymentTermsCode": "30D", "isActive": True, "addresses": []}),
    EntitySpec("items", "itemCode", "urn:be:com.qad.base.item.IItem", "base", 3,
               data.item_index, ITEM_RULES,
               {"description2": "", "unitOfMeasure": "EA", "productLine": "1000", "itemType": "PURCH",
                "itemStatus": "ACTIVE", "listPrice": 0.0, "currencyCode": "USD", "siteCode": "10-100"}),
    EntitySpec("salesOrders", "salesOrderNumber", "urn:be:com.qad.sales.salesorder.ISalesOrder", "sales", 4,
               data.order_index, ORDER_RULES,
               {"requiredDate": None, "status": "open", "externalReference": None, "lines": []},
               frozenset({"totalAmount"})),
)}


def iso_ms(ms: int) -> str:
    """Epoch milliseconds as ISO 8601 UTC with milliseconds and Z."""
    seconds, rem = divmod(ms, 1000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{rem:03d}Z"


def parse_timestamp_ms(value: str) -> int:
    """ISO 8601 timestamp with an explicit zone -> epoch ms, rounded up (ValueError if malformed)."""
    if not _TIMESTAMP.match(value):
        raise ValueError(value)
    micros = (datetime.fromisoformat(value) - _EPOCH) // timedelta(microseconds=1)
    return -(-micros // 1000)


class ConflictError(ValueError):
    """A record with this key already exists."""


class Table:
    """One entity: its sorted (lastModifiedDate ms, key) index and the records changed since seeding."""

    def __init__(self, spec: EntitySpec, base: int, seeded: int, key_of: Callable[[int], str]) -> None:
        self.spec = spec
        self.base = base
        self.seeded = seeded
        self.changed: dict[str, dict[str, Any]] = {}
        self.changed_ms: dict[str, int] = {}
        self.index: SortedList = SortedList((data.seeded_lmd_ms(base, i), key_of(i)) for i in range(seeded))

    def seeded_index(self, key: str) -> int | None:
        """Seed position of ``key`` if it names a seeded record."""
        i = self.spec.key_index(key)
        return i if i is not None and i < self.seeded else None

    def ms_of(self, key: str) -> int | None:
        """Current lastModifiedDate (ms) of ``key``, or None if it does not exist."""
        if key in self.changed_ms:
            return self.changed_ms[key]
        i = self.seeded_index(key)
        return None if i is None else data.seeded_lmd_ms(self.base, i)


class QadStore:
    """In-memory QAD data: seeded virtual records plus changes, with an ordered index per entity."""

    def __init__(self, *, domain: str, seed: int, counts: Mapping[str, int], clock: Clock = time.time) -> None:
        self.domain = domain
        self.seed = seed
        self.clock = clock
        self._lock = threading.RLock()
        self._last_ms = 0
        self._version = 0
        key_fns = {"customerV2s": data.customer_code, "supplierV2s": data.supplier_code,
                   "items": data.item_code, "salesOrders": data.order_number}
        self.tables = {
            name: Table(spec, data.stream_base(seed, spec.salt), counts.get(name, 0), key_fns[name])
            for name, spec in SPECS.items()
        }

    # -- public Python API ---------------------------------------------------------------------------

    @property
    def entities(self) -> tuple[str, ...]:
        return tuple(self.tables)

    def count(self, entity: str) -> int:
        return len(self._table(entity).index)

    def exists(self, entity: str, key: str) -> bool:
        return self._table(entity).ms_of(key) is not None

    def get(self, entity: str, key: str) -> dict[str, Any] | None:
        """A copy of one record, or None."""
        with self._lock:
            table = self._table(entity)
            return self._snapshot(table, key) if table.ms_of(key) is not None else None

    def all(self, entity: str, limit: int | None = None) -> list[dict[str, Any]]:
        """Copies of all records (or the first ``limit``) in (lastModifiedDate, uri) order."""
        with self._lock:
            table = self._table(entity)
            entries = table.index[:limit] if limit is not None else list(table.index)
            return [self._snapshot(table, key) for _ms, key in entries]

    def page(self, entity: str, since_ms: int | None, offset: int, limit: int
             ) -> tuple[list[dict[str, Any]], int]:
        """Records ``offset .. offset+limit`` of those modified at or after ``since_ms``, and their count."""
        with self._lock:
            table = self._table(entity)
            start = table.index.bisect_left((since_ms,)) if since_ms is not None else 0
            total = len(table.index) - start
            lo = min(start + offset, len(table.index))
            entries = table.index[lo:lo + limit]
            return [self._snapshot(table, key) for _ms, key in entries], total

    def patch(self, entity: str, key: str, changes: Mapping[str, Any]) -> dict[str, Any]:
        """Merge ``changes`` into a record without validation (KeyError if missing); bumps its version.

        An explicit ``lastModifiedDate`` in ``changes`` is honoured (to simulate late or back-dated rows).
        """
        with self._lock:
            table = self._table(entity)
            current = self._current(table, key)
            if current is None:
                raise KeyError(key)
            if changes.get(table.spec.key_field, key) != key:
                raise ValueError(f"{table.spec.key_field} cannot be changed")
            record = copy.deepcopy(current)
            record.update(copy.deepcopy(dict(changes)))
            if entity == "salesOrders" and "lines" in changes and "totalAmount" not in changes:
                record["totalAmount"] = data.order_total(record["lines"])
            ms = self._explicit_ms(changes)
            self._stamp(table, record, self._tick() if ms is None else ms,
                        changes.get("lastModifiedUser", ADMIN_USER), "U")
            return copy.deepcopy(record)

    def insert(self, entity: str, record: Mapping[str, Any]) -> dict[str, Any]:
        """Create a record directly, without business validation (ConflictError if its key exists)."""
        with self._lock:
            table = self._table(entity)
            key = record.get(table.spec.key_field)
            if not isinstance(key, str) or not key:
                raise ValueError(f"{table.spec.key_field} is required")
            if table.ms_of(key) is not None:
                raise ConflictError(f"{entity} {key} already exists")
            new = self._complete(table.spec, copy.deepcopy(dict(record)))
            ms = self._explicit_ms(record)
            self._stamp(table, new, self._tick() if ms is None else ms,
                        record.get("lastModifiedUser", ADMIN_USER), "C")
            return copy.deepcopy(new)

    def submit(self, entity: str, records: list[Any], *, user: str, config: Mapping[str, Any]
               ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """Validate and save a batch all-or-nothing: (errors, saved records)."""
        with self._lock:
            table = self._table(entity)
            errors: list[dict[str, Any]] = []
            staged: list[tuple[dict[str, Any], str]] = []
            seen: set[str] = set()
            for index, raw in enumerate(records):
                problems, ready = self._stage(table, raw, seen, config)
                errors += [{"index": index, "fieldName": f, "message": m, "severity": "error"}
                           for f, m in problems]
                if ready is not None:
                    staged.append(ready)
            if errors:
                return errors, []
            saved = []
            for record, operation in staged:
                self._stamp(table, record, self._tick(), user, operation)
                saved.append(copy.deepcopy(record))
            return [], saved

    # -- internals -----------------------------------------------------------------------------------

    def _table(self, entity: str) -> Table:
        try:
            return self.tables[entity]
        except KeyError:
            raise KeyError(f"unknown entity {entity}") from None

    def _uri(self, spec: EntitySpec, key: str) -> str:
        return f"{spec.urn}:{self.domain}.{key}"

    def _current(self, table: Table, key: str) -> dict[str, Any] | None:
        if key in table.changed:
            return table.changed[key]
        i = table.seeded_index(key)
        return None if i is None else self._generate(table, i)

    def _snapshot(self, table: Table, key: str) -> dict[str, Any]:
        """A record the caller may keep or mutate: freshly generated, or a copy of a changed one."""
        if key in table.changed:
            return copy.deepcopy(table.changed[key])
        i = table.seeded_index(key)
        assert i is not None, key
        return self._generate(table, i)

    def _generate(self, table: Table, i: int) -> dict[str, Any]:
        """Build seeded record ``i`` of ``table`` with its system fields."""
        spec, base = table.spec, table.base
        ms = data.seeded_lmd_ms(base, i)
        if spec.name == "customerV2s":
            fields = data.customer(base, i)
        elif spec.name == "supplierV2s":
            fields = data.supplier(base, i)
        elif spec.name == "items":
            fields = data.item(base, i)
        else:
            cust, items = self.tables["customerV2s"], self.tables["items"]
            fields = data.sales_order(base, i, ms, (cust.base, cust.seeded), (items.base, items.seeded))
        salt = data.mix64(base ^ (i << 1) ^ 0x5EED)
        return {
            "uri": self._uri(spec, fields[spec.key_field]),
            "domainCode": self.domain,
            **fields,
            "lastModifiedDate": iso_ms(ms),
            "lastModifiedUser": data.USERS[salt % len(data.USERS)],
            "concurrencyHash": f"{salt:016x}",
            "dataOperation": "C",
        }

    def _tick(self) -> int:
        """Now in epoch ms, strictly greater than any earlier tick."""
        self._last_ms = max(int(self.clock() * 1000), self._last_ms + 1)
        return self._last_ms

    @staticmethod
    def _explicit_ms(record: Mapping[str, Any]) -> int | None:
        value = record.get("lastModifiedDate")
        return parse_timestamp_ms(value) if isinstance(value, str) else None

    def _stamp(self, table: Table, record: dict[str, Any], ms: int, user: str, operation: str) -> None:
        """Set system fields on ``record`` and store it under its key, moving its index entry."""
        key = record[table.spec.key_field]
        self._version += 1
        digest = hashlib.sha1(f"{self.seed}:{table.spec.name}:{key}:{ms}:{self._version}".encode())
        record.update({"uri": self._uri(table.spec, key), "domainCode": self.domain,
                       "lastModifiedDate": iso_ms(ms), "lastModifiedUser": user,
                       "concurrencyHash": digest.hexdigest()[:16], "dataOperation": operation})
        old_ms = table.ms_of(key)
        if old_ms is not None:
            table.index.remove((old_ms, key))
        table.changed[key] = record
        table.changed_ms[key] = ms
        table.index.add((ms, key))

    def _stage(self, table: Table, raw: Any, seen: set[str], config: Mapping[str, Any]
               ) -> tuple[list[tuple[str, str]], tuple[dict[str, Any], str] | None]:
        """Validate one submitted record: (errors, (merged record, "C"|"U") when valid)."""
        spec = table.spec
        if not isinstance(raw, dict):
            return [("", "Record must be a JSON object")], None
        key = raw.get(spec.key_field)
        if not isinstance(key, str) or not key.strip():
            return [(spec.key_field, "Value is mandatory")], None
        errors = [(spec.key_field, "Duplicate key in request")] if key in seen else []
        seen.add(key)
        errors += self._identity_errors(spec, raw, key)
        existing = self._current(table, key)
        errors += _concurrency_errors(spec, existing, raw.get("concurrencyHash"))
        payload = {k: v for k, v in raw.items() if k not in SYSTEM_FIELDS and k not in spec.read_only}
        field_errors = check_object(payload, spec.rules, "", existing is None, config)
        if field_errors:
            return errors + field_errors, None
        merged = copy.deepcopy(existing) if existing is not None else {}
        merged.update(copy.deepcopy(payload))
        errors += self._reference_errors(spec, merged, payload, existing is None, config)
        if errors:
            return errors, None
        return [], (self._complete(spec, merged), "C" if existing is None else "U")

    def _identity_errors(self, spec: EntitySpec, raw: Mapping[str, Any], key: str) -> list[tuple[str, str]]:
        errors = []
        if raw.get("domainCode") not in (None, self.domain):
            errors.append(("domainCode", f"Domain '{raw['domainCode']}' does not match the session domain"))
        if raw.get("uri") not in (None, self._uri(spec, key)):
            errors.append(("uri", "uri does not match the record key"))
        return errors

    def _reference_errors(self, spec: EntitySpec, merged: Mapping[str, Any], payload: Mapping[str, Any],
                          create: bool, config: Mapping[str, Any]) -> list[tuple[str, str]]:
        if spec.name == "customerV2s" and "contacts" in payload:
            return _duplicate_errors(payload["contacts"], "contacts", "contactId", "Duplicate contact id")
        if spec.name != "salesOrders":
            return []
        errors: list[tuple[str, str]] = []
        for fname in ("customerCode", "shipToCode"):
            if (create or fname in payload) and merged.get(fname) is not None:
                errors += self._customer_errors(fname, merged[fname], config)
        if "lines" in payload:
            errors += self._line_errors(payload["lines"], config)
        return errors

    def _customer_errors(self, fname: str, code: str, config: Mapping[str, Any]) -> list[tuple[str, str]]:
        customer = self._current(self.tables["customerV2s"], code)
        if customer is None:
            return [(fname, f"Customer '{code}' does not exist")]
        if config["enforce_active_references"] and not customer.get("isActive", True):
            return [(fname, f"Customer '{code}' is inactive")]
        return []

    def _line_errors(self, lines: list[dict[str, Any]], config: Mapping[str, Any]) -> list[tuple[str, str]]:
        errors = _duplicate_errors(lines, "lines", "lineNumber", "Duplicate line number")
        for k, line in enumerate(lines):
            item = self._current(self.tables["items"], line["itemCode"])
            if item is None:
                errors.append((f"lines[{k}].itemCode", f"Item '{line['itemCode']}' does not exist"))
            elif config["enforce_active_references"] and item.get("itemStatus") != "ACTIVE":
                errors.append((f"lines[{k}].itemCode",
                               f"Item status {item.get('itemStatus')} does not allow order entry"))
            if line["quantityOrdered"] <= 0:
                errors.append((f"lines[{k}].quantityOrdered", "Quantity ordered must be greater than 0"))
            if line.get("quantityShipped", 0) > line["quantityOrdered"]:
                errors.append((f"lines[{k}].quantityShipped", "Quantity shipped exceeds quantity ordered"))
        return errors

    def _complete(self, spec: EntitySpec, record: dict[str, Any]) -> dict[str, Any]:
        """Fill defaults and derived fields of a record about to be saved."""
        for name, value in spec.defaults.items():
            record.setdefault(name, copy.deepcopy(value))
        key = record[spec.key_field]
        if "businessRelationCode" in spec.rules:
            record.setdefault("businessRelationCode", key)
        if spec.name == "customerV2s":
            _number_contacts(key, record["contacts"])
        if spec.name == "salesOrders":
            self._complete_order(record)
        return record

    def _complete_order(self, record: dict[str, Any]) -> None:
        record.setdefault("shipToCode", record.get("customerCode"))
        record.setdefault("orderDate", data.date_of(self.clock()))
        items = self.tables["items"]
        for n, line in enumerate(record["lines"]):
            item = self._current(items, line.get("itemCode", "")) or {}
            line.setdefault("lineNumber", n + 1)
            line.setdefault("quantityShipped", 0.0)
            line.setdefault("listPrice", item.get("listPrice", 0.0))
            line.setdefault("netPrice", line["listPrice"])
            line.setdefault("siteCode", item.get("siteCode", "10-100"))
        record["totalAmount"] = data.order_total(record["lines"]) if all(
            "quantityOrdered" in ln for ln in record["lines"]) else record.get("totalAmount", 0.0)


def _concurrency_errors(spec: EntitySpec, existing: Mapping[str, Any] | None, sent: Any
                        ) -> list[tuple[str, str]]:
    if existing is None:
        return [] if sent is None else [(spec.key_field, "Record not found")]
    if sent is None:
        return [(spec.key_field, "Record already exists")]
    if sent != existing["concurrencyHash"]:
        return [("concurrencyHash", "Record changed by another user")]
    return []


def _duplicate_errors(rows: Iterable[Mapping[str, Any]], path: str, fname: str, message: str
                      ) -> list[tuple[str, str]]:
    seen: set[Any] = set()
    errors = []
    for k, row in enumerate(rows):
        value = row.get(fname)
        if value is not None and value in seen:
            errors.append((f"{path}[{k}].{fname}", message))
        seen.add(value)
    return errors


def _number_contacts(key: str, contacts: list[dict[str, Any]]) -> None:
    """Give contacts without a contactId the next free ``<customerCode>-NN`` id."""
    used = {c.get("contactId") for c in contacts}
    n = 0
    for contact in contacts:
        contact.setdefault("isKeyContact", False)
        if contact.get("contactId"):
            continue
        while True:
            n += 1
            candidate = f"{key}-{n:02d}"
            if candidate not in used:
                break
        contact["contactId"] = candidate
        used.add(candidate)


# ---- auth and rate limiting ----------------------------------------------------------------------------

@dataclass
class AccessToken:
    """An issued access token: who, for which client, when, and its refresh token."""

    user: str
    client: str
    issued: float
    refresh_token: str


class TokenBook:
    """OAuth2 password / refresh_token grants and bearer-token checks."""

    def __init__(self, client_id: str, users: Mapping[str, str], config: Mapping[str, Any],
                 clock: Clock = time.time) -> None:
        self.client_id = client_id
        self.clock = clock
        self.users = dict(users)
        self.config = config
        self.access: dict[str, AccessToken] = {}
        self.refresh: dict[str, str] = {}  # refresh token -> user

    def grant(self, params: Mapping[str, str]) -> JSONResponse:
        """Answer a token request."""
        if params.get("client_id") != self.client_id:
            return _oauth_error(401, "invalid_client", "Unknown client_id")
        grant_type = params.get("grant_type")
        if grant_type == "password":
            user = params.get("username", "")
            if not user or self.users.get(user) != params.get("password"):
                return _oauth_error(400, "invalid_grant", "Bad credentials")
            return self._issue(user, None)
        if grant_type == "refresh_token":
            old = params.get("refresh_token", "")
            if old not in self.refresh:
                return _oauth_error(400, "invalid_grant", "Invalid refresh token")
            return self._issue(self.refresh[old], old)
        if not grant_type:
            return _oauth_error(400, "invalid_request", "Missing grant_type")
        return _oauth_error(400, "unsupported_grant_type", f"Unsupported grant type: {grant_type}")

    def _issue(self, user: str, old_refresh: str | None) -> JSONResponse:
        refresh = old_refresh
        if refresh is None or self.config["rotate_refresh_token"]:
            if refresh is not None:
                del self.refresh[refresh]
            refresh = secrets.token_hex(20)
            self.refresh[refresh] = user
        access = secrets.token_hex(20)
        self.access[access] = AccessToken(user, self.client_id, self.clock(), refresh)
        body = {"access_token": access, "token_type": "bearer", "refresh_token": refresh,
                "expires_in": self.config["token_ttl"], "scope": "read write"}
        return JSONResponse(body, headers={"Cache-Control": "no-store", "Pragma": "no-cache"})

    def authenticate(self, authorization: str | None) -> tuple[str, AccessToken] | JSONResponse:
        """(token, its record) for a valid ``Authorization`` header, else a 401 response."""
        scheme, _, token = (authorization or "").partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            return _token_error("Full authentication is required to access this resource")
        record = self.access.get(token)
        if record is None:
            return _token_error(f"Invalid access token: {token}")
        if self.clock() - record.issued > float(self.config["token_ttl"]):
            return _token_error(f"Access token expired: {token}")
        return token, record

    def expire_all(self) -> int:
        """Make every issued access token expired; returns how many."""
        for record in self.access.values():
            record.issued = 0.0
        return len(self.access)


class RateLimiter:
    """Sliding one-second window of accepted requests per key."""

    def __init__(self, clock: Clock = time.time) -> None:
        self._hits: dict[str, deque[float]] = {}
        self._lock = threading.Lock()
        self.clock = clock

    def retry_after(self, key: str, per_second: int) -> int | None:
        """Seconds to wait if ``key`` is over ``per_second``, else None (and the request is counted)."""
        if not per_second or per_second <= 0:
            return None
        now = self.clock()
        with self._lock:
            hits = self._hits.setdefault(key, deque())
            while hits and hits[0] <= now - 1.0:
                hits.popleft()
            if len(hits) >= per_second:
                return max(1, math.ceil(hits[0] + 1.0 - now))
            hits.append(now)
        return None


# ---- HTTP layer ----------------------------------------------------------------------------------------

def _submit_error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"submitResult": {"success": False, "errors": [{"message": message}]}},
                        status_code=status)


def _oauth_error(status: int, error: str, description: str) -> JSONResponse:
    return JSONResponse({"error": error, "error_description": description}, status_code=status)


def _token_error(description: str) -> JSONResponse:
    response = _oauth_error(401, "invalid_token", description)
    response.headers["WWW-Authenticate"] = f'Bearer error="invalid_token", error_description="{description}"'
    return response


def _method_not_allowed(allowed: list[str]) -> JSONResponse:
    return JSONResponse({"error": "method_not_allowed", "error_description": "Request method not supported"},
                        status_code=405, headers={"Allow": ", ".join(allowed)})


def _int_param(request: Request, name: str, default: int) -> int:
    """Integer query parameter (ValueError if malformed)."""
    raw = request.query_params.get(name)
    return default if raw is None or raw == "" else int(raw)


@dataclass
class Caller:
    """An authenticated, scoped API caller."""

    user: str
    token: str
    domain: str


@dataclass
class QadApi:
    """Route handlers of the QAD sandbox."""

    store: QadStore
    tokens: TokenBook
    config: dict[str, Any]
    limiter: RateLimiter = field(default_factory=RateLimiter)

    def routes(self) -> list[BaseRoute]:
        return [
            Route("/clouderp/oauth/token", self.token, methods=ALL_METHODS),
            Route("/clouderp/api/qracore/browses", self.browse, methods=ALL_METHODS),
            Route(API + "/{entity}", self.collection, methods=ALL_METHODS),
            Route(API + "/{entity}/{key}", self.single, methods=ALL_METHODS),
            Route("/{path:path}", self.not_found, methods=ALL_METHODS),
        ]

    def admin_routes(self) -> list[BaseRoute]:
        return [
            Route("/_admin/records/{entity}", self.admin_list, methods=["GET"]),
            Route("/_admin/records/{entity}", self.admin_insert, methods=["POST"]),
            Route("/_admin/records/{entity}/{key}", self.admin_get, methods=["GET"]),
            Route("/_admin/records/{entity}/{key}", self.admin_patch, methods=["PATCH"]),
            Route("/_admin/tokens/expire", self.admin_expire_tokens, methods=["POST"]),
        ]

    # -- vendor routes ------------------------------------------------------------------------------

    async def token(self, request: Request) -> Response:
        if request.method != "POST":
            return _method_not_allowed(["POST"])
        params = dict(request.query_params)
        body = await request.body()
        if body and "application/x-www-form-urlencoded" in request.headers.get("content-type", ""):
            params.update(parse_qsl(body.decode("utf-8", "replace")))
        return self.tokens.grant(params)

    async def collection(self, request: Request) -> Response:
        caller = self._guard(request)
        if isinstance(caller, Response):
            return caller
        entity = request.path_params["entity"]
        if entity not in SPECS:
            return _submit_error(404, f"Unknown business entity '{entity}'")
        if request.method == "GET":
            return self._list(request, entity)
        if request.method == "POST":
            return await self._write(request, entity, caller)
        return _method_not_allowed(["GET", "POST"])

    async def single(self, request: Request) -> Response:
        caller = self._guard(request)
        if isinstance(caller, Response):
            return caller
        entity, key = request.path_params["entity"], request.path_params["key"]
        if entity not in SPECS:
            return _submit_error(404, f"Unknown business entity '{entity}'")
        if request.method != "GET":
            return _method_not_allowed(["GET"])
        record = self.store.get(entity, key)
        if record is None:
            return _submit_error(404, "Record not found")
        return JSONResponse({"data": [record]})

    async def browse(self, request: Request) -> Response:
        caller = self._guard(request)
        if isinstance(caller, Response):
            return caller
        if request.method != "GET":
            return _method_not_allowed(["GET"])
        entity = _browse_entity(request.query_params.get("browseId", ""))
        if entity is None:
            return _submit_error(400, "Unknown browseId")
        q = request.query_params
        if not q.get("page") or not q.get("pageAction"):
            return JSONResponse({"data": []})  # the real quirk: no page/pageAction -> 200, zero rows
        paging = self._paging(request)
        if isinstance(paging, Response):
            return paging
        page, size = paging
        filters = _browse_filters(q.getlist("filter"))
        if filters is None:
            return _submit_error(400, "Malformed filter: expected <field>,<op>,<value>[,literal]")
        rows = self._browse_rows(entity, filters, (page - 1) * size, size)
        return JSONResponse({"data": rows})

    async def not_found(self, request: Request) -> Response:
        return JSONResponse({"error": "not_found", "error_description": f"No route for {request.url.path}"},
                            status_code=404)

    # -- vendor helpers -----------------------------------------------------------------------------

    def _guard(self, request: Request) -> Caller | Response:
        """Authenticate, rate limit and scope a request; a Response means it is refused."""
        auth = self.tokens.authenticate(request.headers.get("authorization"))
        if isinstance(auth, Response):
            return auth
        token, record = auth
        key = record.client if self.config["rate_limit_per"] == "client" else token
        wait = self.limiter.retry_after(key, int(self.config["rate_per_second"] or 0))
        if wait is not None:
            return JSONResponse({"error": "too_many_requests",
                                 "error_description": f"Rate limit of {self.config['rate_per_second']} "
                                                      "requests per second exceeded"},
                                status_code=429, headers={"Retry-After": str(wait)})
        domain = self._scope(request)
        if isinstance(domain, Response):
            return domain
        return Caller(record.user, token, domain)

    def _scope(self, request: Request) -> str | Response:
        header = request.headers.get("x-qad-workspace-id")
        query = request.query_params.get("domainCode")
        from_header = None
        if header is not None:
            domain_part, sep, entity_part = header.partition("_")
            if not sep or not domain_part or not entity_part:
                return _submit_error(400, "Malformed x-qad-workspace-id: expected <domain>_<entity>")
            from_header = domain_part
        if from_header and query and from_header != query:
            return _submit_error(400, "domainCode does not match x-qad-workspace-id")
        domain = query or from_header
        if not domain:
            return _submit_error(400, "Missing domain scope: send x-qad-workspace-id or domainCode")
        if domain != self.store.domain:
            return _submit_error(403, f"Access denied to domain '{domain}'")
        return domain

    def _paging(self, request: Request) -> tuple[int, int] | Response:
        try:
            page = _int_param(request, "page", 1)
            size = _int_param(request, "pageSize", int(self.config["default_page_size"]))
        except ValueError:
            return _submit_error(400, "page and pageSize must be integers")
        if page < 1:
            return _submit_error(400, "page must be >= 1")
        if not 1 <= size <= int(self.config["max_page_size"]):
            return _submit_error(400, f"pageSize must be between 1 and {self.config['max_page_size']}")
        return page, size

    def _list(self, request: Request, entity: str) -> Response:
        paging = self._paging(request)
        if isinstance(paging, Response):
            return paging
        page, size = paging
        sort = request.query_params.get("sort")
        if sort not in (None, "", "lastModifiedDate,asc"):
            return _submit_error(400, f"Unsupported sort '{sort}': only lastModifiedDate,asc")
        since_raw = request.query_params.get("modifiedSince")
        try:
            since = parse_timestamp_ms(since_raw) if since_raw else None
        except ValueError:
            return _submit_error(400, f"Invalid modifiedSince '{since_raw}': expected ISO 8601 with zone")
        rows, total = self.store.page(entity, since, (page - 1) * size, size)
        return JSONResponse({"data": rows, "page": page, "pageSize": size, "totalCount": total,
                             "hasMore": page * size < total})

    async def _write(self, request: Request, entity: str, caller: Caller) -> Response:
        if "json" not in request.headers.get("content-type", ""):
            return _submit_error(415, "Content-Type must be application/json")
        try:
            body = json.loads(await request.body())
        except (ValueError, UnicodeDecodeError):
            return _submit_error(400, "Malformed JSON request body")
        if not isinstance(body, dict) or not isinstance(body.get(entity), list):
            return _submit_error(400, f"Request body must be an object with a '{entity}' array")
        if len(body[entity]) > int(self.config["max_batch"]):
            return _submit_error(400, f"Too many records: at most {self.config['max_batch']} per request")
        errors, saved = self.store.submit(entity, body[entity], user=caller.user, config=self.config)
        return JSONResponse({"submitResult": {"success": not errors, "errors": errors}, entity: saved})

    def _browse_rows(self, entity: str, filters: list[tuple[str, str, str]], offset: int, limit: int
                     ) -> list[dict[str, Any]]:
        """Flat rows of a browse; a lone ``lastModifiedDate,ge`` filter uses the index, others scan."""
        if not filters or filters == [("lastModifiedDate", "ge", filters[0][2])]:
            since_ms = parse_timestamp_ms(filters[0][2]) if filters else None
            rows, _total = self.store.page(entity, since_ms, offset, limit)
            return [_flat(r) for r in rows]
        matched = [_flat(r) for r in self.store.all(entity) if _matches(r, filters)]
        return matched[offset:offset + limit]

    # -- admin routes -------------------------------------------------------------------------------

    async def admin_list(self, request: Request) -> Response:
        entity = request.path_params["entity"]
        if entity not in SPECS:
            return JSONResponse({"error": f"unknown entity {entity}"}, status_code=404)
        raw = request.query_params.get("limit")
        limit = int(raw) if raw and raw.isdigit() else None
        return JSONResponse({"count": self.store.count(entity), "records": self.store.all(entity, limit)})

    async def admin_get(self, request: Request) -> Response:
        entity, key = request.path_params["entity"], request.path_params["key"]
        record = self.store.get(entity, key) if entity in SPECS else None
        if record is None:
            return JSONResponse({"error": "not found"}, status_code=404)
        return JSONResponse(record)

    async def admin_patch(self, request: Request) -> Response:
        entity, key = request.path_params["entity"], request.path_params["key"]
        changes = await _json_object(request)
        if changes is None:
            return JSONResponse({"error": "body must be a JSON object"}, status_code=400)
        if entity not in SPECS or not self.store.exists(entity, key):
            return JSONResponse({"error": "not found"}, status_code=404)
        try:
            return JSONResponse(self.store.patch(entity, key, changes))
        except ValueError as exc:
            return JSONResponse({"error": str(exc)}, status_code=400)

    async def admin_insert(self, request: Request) -> Response:
        entity = request.path_params["entity"]
        record = await _json_object(request)
        if entity not in SPECS:
            return JSONResponse({"error": f"unknown entity {entity}"}, status_code=404)
        if record is None:
            return JSONResponse({"error": "body must be a JSON object"}, status_code=400)
        try:
            return JSONResponse(self.store.insert(entity, record), status_code=201)
        except ConflictError as exc:
            return JSONResponse({"error": str(exc)}, status_code=409)
        except ValueError as exc:
            return JSONResponse({"error": str(exc)}, status_code=400)

    async def admin_expire_tokens(self, request: Request) -> Response:
        return JSONResponse({"expired": self.tokens.expire_all()})


async def _json_object(request: Request) -> dict[str, Any] | None:
    try:
        body = json.loads(await request.body())
    except (ValueError, UnicodeDecodeError):
        return None
    return body if isinstance(body, dict) else None


_BROWSE_PREFIX = "urn:browse:bebrowse:com.qad.erp."
_BROWSE_OPS: dict[str, Callable[[Any, Any], bool]] = {
    "eq": lambda a, b: a == b, "ne": lambda a, b: a != b, "ge": lambda a, b: a >= b,
    "gt": lambda a, b: a > b, "le": lambda a, b: a <= b, "lt": lambda a, b: a < b,
}


def _browse_entity(browse_id: str) -> str | None:
    """Entity of a browse id ``urn:browse:bebrowse:com.qad.erp.<module>.<entity>``, or None."""
    if not browse_id.startswith(_BROWSE_PREFIX):
        return None
    module, _, entity = browse_id[len(_BROWSE_PREFIX):].partition(".")
    spec = SPECS.get(entity)
    return entity if spec is not None and spec.module == module else None


def _browse_filters(raw: list[str]) -> list[tuple[str, str, str]] | None:
    """Parse ``<field>,<op>,<value>[,literal]`` filters (field may be ``prefix.field``)."""
    out = []
    for text in raw:
        parts = text.split(",")
        if len(parts) == 4 and parts[3] == "literal":
            parts = parts[:3]
        if len(parts) != 3 or parts[1] not in _BROWSE_OPS:
            return None
        name = parts[0].rpartition(".")[2]
        if name == "lastModifiedDate":
            try:
                parse_timestamp_ms(parts[2])
            except ValueError:
                return None
        out.append((name, parts[1], parts[2]))
    return out


def _flat(record: Mapping[str, Any]) -> dict[str, Any]:
    """A browse row: the record's scalar fields only."""
    return {k: v for k, v in record.items() if not isinstance(v, list | dict)}


def _matches(record: Mapping[str, Any], filters: list[tuple[str, str, str]]) -> bool:
    for name, op, raw in filters:
        value = record.get(name)
        left: Any
        right: Any
        if name == "lastModifiedDate" and isinstance(value, str):
            left, right = parse_timestamp_ms(value), parse_timestamp_ms(raw)
        elif isinstance(value, bool):
            left, right = str(value).lower(), raw.lower()
        elif isinstance(value, int | float):
            try:
                left, right = float(value), float(raw)
            except ValueError:
                return False
        else:
            left, right = str(value), raw
        if value is None or not _BROWSE_OPS[op](left, right):
            return False
    return True


# ---- assembly ------------------------------------------------------------------------------------------

class QadSandbox(Sandbox):
    """The QAD sandbox app; ``store`` and ``tokens`` give in-process tests direct access."""

    store: QadStore
    tokens: TokenBook

    def __init__(self, store: QadStore, api: QadApi) -> None:
        super().__init__(name="qad", routes=api.routes(), config=api.config, admin_routes=api.admin_routes(),
                         clock=store.clock)
        self.store = store
        self.tokens = api.tokens
        self.chaos.revoke_tokens = self.tokens.expire_all  # chaos may draw token revocations here too


def create_qad_sandbox(*, customers: int = 300, items: int = 200, sales_orders: int = 0, seed: int = 7,
                       client_id: str = "ml-connector", username: str = "demo",
                       password: str = "demo-password", domain: str = "10USA",
                       suppliers: int = 0, clock: Clock = time.time) -> QadSandbox:
    """Build a seeded QAD sandbox (deterministic for ``seed``); it reads time only through ``clock``."""
    if sales_orders and (customers <= 0 or items <= 0):
        raise ValueError("seeding sales orders needs at least one customer and one item")
    counts = {"customerV2s": customers, "supplierV2s": suppliers, "items": items, "salesOrders": sales_orders}
    store = QadStore(domain=domain, seed=seed, counts=counts, clock=clock)
    config = dict(DEFAULT_CONFIG)
    api = QadApi(store, TokenBook(client_id, {username: password}, config, clock), config, RateLimiter(clock))
    return QadSandbox(store, api)
