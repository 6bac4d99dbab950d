"""In-memory QAD data: virtual seeded records plus changes, one ordered (lastModifiedDate, key) index each.

A page costs O(log n + pageSize) at any size. Ordering by key equals ordering by ``uri`` because an
entity's uris share one prefix. Business validation lives in ``business`` (and ``procurement``); this
module only stores, stamps and pages.
"""

from __future__ import annotations

import copy
import hashlib
import threading
import time
from collections.abc import Mapping
from typing import Any

from sortedcontainers import SortedList

from ml_connector.sandbox.core import Clock
from ml_connector.sandbox.qad import business, data
from ml_connector.sandbox.qad.entities import ADMIN_USER, SPECS, SYSTEM_FIELDS, EntitySpec
from ml_connector.sandbox.qad.rules import check_object
from ml_connector.sandbox.qad.seeding import Seeder
from ml_connector.sandbox.qad.timestamps import iso_ms, parse_timestamp_ms


class ConflictError(ValueError):
    """A record with this key already exists."""


class Table:
    """One entity: its sorted (lastModifiedDate ms, key) index and the records changed since seeding."""

    def __init__(self, spec: EntitySpec, seeder: Seeder) -> None:
        self.spec = spec
        self.seeder = seeder
        self.changed: dict[str, dict[str, Any]] = {}
        self.changed_ms: dict[str, int] = {}
        self.index: SortedList = SortedList(seeder.entries())

    @property
    def seeded(self) -> int:
        return self.seeder.count

    def ms_of(self, key: str) -> int | None:
        """Current lastModifiedDate (ms) of ``key``, or None if it does not exist."""
        if key in self.changed_ms:
            return self.changed_ms[key]
        return self.seeder.ms(key)


class QadStore:
    """In-memory QAD data: seeded virtual records plus changes, with an ordered index per entity."""

    def __init__(self, *, domain: str, seed: int, seeders: Mapping[str, Seeder], clock: Clock = time.time,
                 config: Mapping[str, Any] | None = None, entity_code: str | None = None) -> None:
        self.domain = domain
        self.entity_code = entity_code if entity_code is not None else f"{domain}CO"
        self.seed = seed
        self.clock = clock
        self.config: Mapping[str, Any] = config if config is not None else {}
        self._lock = threading.RLock()
        self._last_ms = 0
        self._version = 0
        self.tables = {name: Table(spec, seeders[name]) for name, spec in SPECS.items()}

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
            current = self.peek(entity, key)
            if current is None:
                raise KeyError(key)
            if changes.get(table.spec.key_field, key) != key:
                raise ValueError(f"{table.spec.key_field} cannot be changed")
            record = copy.deepcopy(current)
            record.update(copy.deepcopy(dict(changes)))
            business.rederive(self, entity, record, changes)
            ms = self._explicit_ms(changes)
            self.save(entity, record, ms, changes.get("lastModifiedUser", ADMIN_USER), "U", current)
            return copy.deepcopy(record)

    def insert(self, entity: str, record: Mapping[str, Any]) -> dict[str, Any]:
        """Create a record directly, without business validation (ConflictError if its key exists)."""
        with self._lock:
            table = self._table(entity)
            new = copy.deepcopy(dict(record))
            business.fill_key(self, table.spec, new)
            key = new.get(table.spec.key_field)
            if not isinstance(key, str) or not key:
                raise ValueError(f"{table.spec.key_field} is required")
            if table.ms_of(key) is not None:
                raise ConflictError(f"{entity} {key} already exists")
            business.complete(self, table.spec, new)
            self.save(entity, new, self._explicit_ms(record), record.get("lastModifiedUser", ADMIN_USER), "C",
                      None)
            return copy.deepcopy(new)

    def submit(self, entity: str, records: list[Any], *, user: str, config: Mapping[str, Any]
               ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """Validate and save a batch all-or-nothing: (errors, saved records)."""
        with self._lock:
            table = self._table(entity)
            errors: list[dict[str, Any]] = []
            staged: list[tuple[dict[str, Any], str, dict[str, Any] | None]] = []
            seen: set[str] = set()
            batch: dict[str, Any] = {}  # what earlier records of this batch will change (see business)
            for index, raw in enumerate(records):
                problems, ready = self._stage(table, raw, seen, batch, config)
                errors += [{"index": index, "fieldName": f, "message": m, "severity": "error"}
                           for f, m in problems]
                if ready is not None:
                    staged.append(ready)
            if errors:
                return errors, []
            saved = []
            for record, operation, existing in staged:
                self.save(entity, record, None, user, operation, existing)
                saved.append(copy.deepcopy(record))
            return [], saved

    def save(self, entity: str, record: dict[str, Any], ms: int | None, user: str, operation: str,
             previous: Mapping[str, Any] | None) -> None:
        """Stamp and store ``record`` (now, unless ``ms`` is given), then apply its side effects."""
        with self._lock:
            self._stamp(self._table(entity), record, self._tick() if ms is None else ms, user, operation)
            business.after_save(self, entity, record, previous, user)

    def peek(self, entity: str, key: str) -> dict[str, Any] | None:
        """The current record without copying (a changed one is the stored dict: do not mutate it)."""
        table = self._table(entity)
        if key in table.changed:
            return table.changed[key]
        return self._generate(table, key) if table.seeder.ms(key) is not None else None

    def changed(self, entity: str) -> list[dict[str, Any]]:
        """The stored (changed or created) records of ``entity``; do not mutate them."""
        return list(self._table(entity).changed.values())

    def uri(self, entity: str, key: str) -> str:
        return f"{SPECS[entity].urn}:{self.domain}.{key}"

    def now_ms(self) -> int:
        """A fresh tick (epoch ms, strictly increasing)."""
        with self._lock:
            return self._tick()

    # -- internals -----------------------------------------------------------------------------------

    def _table(self, entity: str) -> Table:
        try:
            return self.tables[entity]
        except KeyError:
            raise KeyError(f"unknown entity {entity}") from None

    def _snapshot(self, table: Table, key: str) -> dict[str, Any]:
        """A record the caller may keep or mutate: freshly generated, or a copy of a changed one."""
        if key in table.changed:
            return copy.deepcopy(table.changed[key])
        return self._generate(table, key)

    def _generate(self, table: Table, key: str) -> dict[str, Any]:
        """Build seeded record ``key`` of ``table`` with its system fields."""
        spec, seeder = table.spec, table.seeder
        ms = seeder.ms(key)
        assert ms is not None, key
        fields = seeder.fields(key)
        salt = seeder.salt(key)
        return {
            "uri": self.uri(spec.name, key),
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
        record.update({"uri": self.uri(table.spec.name, key), "domainCode": self.domain,
                       "lastModifiedDate": iso_ms(ms), "lastModifiedUser": user,
                       "concurrencyHash": digest.hexdigest()[:16], "dataOperation": operation})
        old_ms = table.ms_of(key)
        if old_ms is not None:
            table.index.remove((old_ms, key))
        table.changed[key] = record
        table.changed_ms[key] = ms
        table.index.add((ms, key))

    def _stage(self, table: Table, raw: Any, seen: set[str], batch: dict[str, Any], config: Mapping[str, Any]
               ) -> tuple[list[tuple[str, str]], tuple[dict[str, Any], str, dict[str, Any] | None] | None]:
        """Validate one submitted record: (errors, (merged record, "C"|"U", previous) when valid)."""
        spec = table.spec
        if not isinstance(raw, dict):
            return [("", "Record must be a JSON object")], None
        raw = dict(raw)
        business.fill_key(self, spec, raw, reserved=seen)
        key = raw.get(spec.key_field)
        if not isinstance(key, str) or not key.strip():
            return [(spec.key_field, "Value is mandatory")], None
        errors = [(spec.key_field, "Duplicate key in request")] if key in seen else []
        seen.add(key)
        errors += self._identity_errors(spec, raw, key)
        existing = self.peek(spec.name, key)
        errors += business.concurrency_errors(spec, existing, raw.get("concurrencyHash"))
        payload = {k: v for k, v in raw.items() if k not in SYSTEM_FIELDS and k not in spec.read_only}
        field_errors = check_object(payload, spec.rules, "", existing is None, config)
        if field_errors:
            return errors + field_errors, None
        merged = copy.deepcopy(existing) if existing is not None else {}
        merged.update(copy.deepcopy(payload))
        errors += business.reference_errors(self, spec, merged, payload, existing, config, batch)
        if errors:
            return errors, None
        business.complete(self, spec, merged)
        return [], (merged, "C" if existing is None else "U", existing)

    def _identity_errors(self, spec: EntitySpec, raw: Mapping[str, Any], key: str) -> list[tuple[str, str]]:
        errors = []
        if raw.get("domainCode") not in (None, self.domain):
            errors.append(("domainCode", f"Domain '{raw['domainCode']}' does not match the session domain"))
        if raw.get("uri") not in (None, self.uri(spec.name, key)):
            errors.append(("uri", "uri does not match the record key"))
        return errors
