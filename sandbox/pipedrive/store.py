"""In-memory Pipedrive account: entities, deal products, pipelines/stages, users and custom fields.

Entities are named by their v2 plural path (``organizations``, ``persons``, ``deals``, ``products``).
Records are stored sparse (defaults filled in on output) so that a million seeded deals stay affordable.
"""

from __future__ import annotations

import bisect
import copy
import random
import threading
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from ml_connector.sandbox.core import Clock
from ml_connector.sandbox.pipedrive.common import iso
from ml_connector.sandbox.pipedrive.fields import PLURAL, SINGULAR, FieldCatalog
from ml_connector.sandbox.pipedrive.index import Collection, Key

OWNER_ID = 18
SEED_STAMP = "2024-01-02T08:00:00Z"
STAGE_NAMES = ("Qualified", "Contact Made", "Demo Scheduled", "Proposal Made", "Negotiations Started")
LINE_DEFAULTS: dict[str, Any] = {
    "product_variation_id": None,
    "tax": 0,
    "tax_method": "exclusive",
    "discount": 0,
    "discount_type": "percentage",
    "is_enabled": True,
    "comments": "",
    "billing_frequency": "one-time",
    "billing_frequency_cycles": None,
    "billing_start_date": None,
}
LINE_ORDER = (
    "id",
    "deal_id",
    "product_id",
    "product_variation_id",
    "name",
    "order_nr",
    "item_price",
    "quantity",
    "sum",
    "tax",
    "tax_method",
    "currency",
    "discount",
    "discount_type",
    "is_enabled",
    "comments",
    "add_time",
    "update_time",
    "billing_frequency",
    "billing_frequency_cycles",
    "billing_start_date",
)


def line_sum(line: dict[str, Any]) -> float | int:
    """``item_price × quantity`` less the discount (tax ignored: its formula is unconfirmed)."""
    total = line["item_price"] * line["quantity"]
    discount = line.get("discount") or 0
    if discount:
        total = total - discount if line.get("discount_type") == "amount" else total * (1 - discount / 100)
    return round(total, 2) if isinstance(total, float) else total


def page_sorted(
    rows: list[dict[str, Any]], sort_by: str, desc: bool, after: Key | None, limit: int
) -> tuple[list[dict[str, Any]], Key | None]:
    """Cursor paging over a small in-memory row list, ordered by ``(row[sort_by], id)``."""
    keyed = sorted(((row[sort_by], row["id"]), i) for i, row in enumerate(rows))
    keys = [k for k, _ in keyed]
    if desc:
        end = bisect.bisect_left(keys, tuple(after)) if after is not None else len(keys)
        chosen = list(reversed(keyed[:end]))
    else:
        start = bisect.bisect_right(keys, tuple(after)) if after is not None else 0
        chosen = keyed[start:]
    page = chosen[:limit]
    more = len(chosen) > limit
    return [rows[i] for _, i in page], (page[-1][0] if more and page else None)


class PipedriveStore:
    """The simulated account. Public test helpers: ``insert``, ``patch``, ``all``, ``field_key``,
    ``add_deal_product``."""

    def __init__(self, seed: int, config: dict[str, Any], company_domain: str = "acme",
                 clock: Clock = time.time) -> None:
        self.config = config
        self.seed = seed
        self.clock = clock
        self.lock = threading.RLock()
        self.catalog = FieldCatalog(seed)
        self.collections = {name: Collection(name, self.catalog) for name in SINGULAR}
        self.lines: dict[int, dict[str, Any]] = {}
        self.lines_by_deal: dict[int, list[int]] = {}
        self.next_line_id = 1
        self.pipelines = {
            1: {
                "id": 1,
                "name": "Sales",
                "order_nr": 1,
                "is_deleted": False,
                "is_deal_probability_enabled": False,
                "add_time": SEED_STAMP,
                "update_time": SEED_STAMP,
            }
        }
        self.stages = {
            i + 1: {
                "id": i + 1,
                "order_nr": i + 1,
                "name": name,
                "is_deleted": False,
                "deal_probability": 100,
                "pipeline_id": 1,
                "is_deal_rot_enabled": False,
                "days_to_rotten": None,
                "add_time": SEED_STAMP,
                "update_time": SEED_STAMP,
            }
            for i, name in enumerate(STAGE_NAMES)
        }
        self.users = {
            OWNER_ID: {
                "id": OWNER_ID,
                "name": "Alex Owner",
                "email": "owner@acme.example",
                "company_id": 7000000 + seed,
                "company_name": "Acme",
                "company_domain": company_domain,
                "default_currency": "EUR",
                "locale": "en_US",
                "lang": 1,
                "timezone_name": "UTC",
                "timezone_offset": "+00:00",
                "is_admin": 1,
                "active_flag": True,
                "role_id": 1,
                "icon_url": None,
                "phone": None,
                "created": "2024-01-02 08:00:00",
                "is_you": True,
            }
        }

    # -- lookups ---------------------------------------------------------------------------------------------
    def coll(self, entity: str) -> Collection:
        """Collection by plural (``deals``) or singular (``deal``) name."""
        name = PLURAL.get(entity, entity)
        if name not in self.collections:
            raise KeyError(f"unknown entity {entity!r}")
        return self.collections[name]

    def live(self, entity: str, rid: int) -> dict[str, Any] | None:
        """A stored record that exists and is not deleted."""
        rec = self.coll(entity).records.get(rid)
        return rec if rec is not None and not rec.get("is_deleted") else None

    def now_iso(self) -> str:
        """The current time (by the store's clock) in the v2 wire format."""
        return iso(self.clock())

    def stamp(self, prev: str | None) -> str:
        """A new ``update_time``: now, never earlier than ``prev`` (+1 s if ``strict_update_time``)."""
        now = self.now_iso()
        if prev is None or now > prev:
            return now
        if self.config.get("strict_update_time"):
            parsed = datetime.strptime(prev, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
            return iso((parsed + timedelta(seconds=1)).timestamp())
        return prev

    # -- entity writes (bodies already validated) ------------------------------------------------------------
    def create(self, entity: str, fields: dict[str, Any], origin: str | None = None) -> dict[str, Any]:
        """Store a new record; returns the stored (sparse) record."""
        with self.lock:
            coll = self.coll(entity)
            rec = dict(fields)
            rid = rec.get("id")
            if not isinstance(rid, int) or rid in coll.records:
                rid = coll.next_id
            rec["id"] = rid
            now = self.now_iso()
            rec.setdefault("add_time", now)
            rec.setdefault("update_time", max(now, rec["add_time"]))
            if origin:
                rec["origin"] = origin
            self._normalise(coll.name, None, rec, rec, now)
            coll.add(rec, created_at=self.clock())
            return rec

    def update(self, entity: str, rid: int, changes: dict[str, Any]) -> dict[str, Any]:
        """Merge changes (``custom_fields`` per key) into a record and bump its ``update_time``."""
        with self.lock:
            coll = self.coll(entity)
            old = coll.records[rid]
            new = {**old, **{k: v for k, v in changes.items() if k != "custom_fields"}}
            if "custom_fields" in changes:
                merged = {**(old.get("custom_fields") or {}), **changes["custom_fields"]}
                new["custom_fields"] = {k: v for k, v in merged.items() if v is not None}
            self._normalise(coll.name, old, new, changes, self.now_iso())
            new["update_time"] = changes.get("update_time") or self.stamp(old["update_time"])
            coll.replace(new)
            return new

    def delete(self, entity: str, rid: int) -> dict[str, Any]:
        """Soft delete: ``is_deleted`` true, ``update_time`` = delete time."""
        return self.update(entity, rid, {"is_deleted": True})

    def _normalise(
        self, name: str, old: dict[str, Any] | None, rec: dict[str, Any], changes: dict[str, Any], now: str
    ) -> None:
        """Derived fields: person names, product price rows, deal status/stage timestamps."""
        if name == "persons":
            _person_names(rec, changes)
        elif name == "products":
            if "prices" not in rec:
                rec["prices"] = [
                    {
                        "price": 0,
                        "currency": self.config.get("default_currency", "EUR"),
                        "cost": 0,
                        "direct_cost": 0,
                        "notes": "",
                    }
                ]
            rec["prices"] = [
                {
                    "product_id": rec["id"],
                    "price": 0,
                    "currency": "EUR",
                    "cost": 0,
                    "direct_cost": 0,
                    "notes": "",
                    **{k: v for k, v in p.items() if k != "product_id"},
                }
                for p in rec["prices"]
            ]
        elif name == "deals":
            if old is None:
                rec.setdefault("currency", self.config.get("default_currency", "EUR"))
            _deal_rules(old, rec, changes, now)
        if "custom_fields" in rec:
            rec["custom_fields"] = {k: v for k, v in (rec["custom_fields"] or {}).items() if v is not None}

    # -- deal products ---------------------------------------------------------------------------------------
    def line_create(self, deal_id: int, fields: dict[str, Any]) -> dict[str, Any]:
        """Attach a product line to a deal (references already checked)."""
        with self.lock:
            deal = self.coll("deals").records[deal_id]
            product = self.coll("products").records[fields["product_id"]]
            now = self.now_iso()
            ids = self.lines_by_deal.setdefault(deal_id, [])
            order = max((self.lines[i]["order_nr"] for i in ids), default=0) + 1
            line = {
                "id": self.next_line_id,
                "deal_id": deal_id,
                "name": product.get("name"),
                "order_nr": order,
                "currency": deal.get("currency", "EUR"),
                **LINE_DEFAULTS,
                **fields,
                "add_time": now,
                "update_time": now,
            }
            line["sum"] = line_sum(line)
            self.next_line_id += 1
            self.lines[line["id"]] = line
            ids.append(line["id"])
            self._after_line_change(deal_id)
            return line

    def line_update(self, line_id: int, changes: dict[str, Any]) -> dict[str, Any]:
        """Partial update of a line; ``sum`` recomputed."""
        with self.lock:
            line = {**self.lines[line_id], **changes}
            if "product_id" in changes:
                line["name"] = self.coll("products").records[changes["product_id"]].get("name")
            line["sum"] = line_sum(line)
            line["update_time"] = self.stamp(line["update_time"])
            self.lines[line_id] = line
            self._after_line_change(line["deal_id"])
            return line

    def line_delete(self, line_id: int) -> None:
        """Remove a line (lines are hard-deleted)."""
        with self.lock:
            line = self.lines.pop(line_id)
            self.lines_by_deal[line["deal_id"]].remove(line_id)
            self._after_line_change(line["deal_id"])

    def lines_of(self, deal_ids: list[int]) -> list[dict[str, Any]]:
        """All lines of the given deals."""
        return [self.lines[i] for d in deal_ids for i in self.lines_by_deal.get(d, [])]

    def _after_line_change(self, deal_id: int) -> None:
        changes: dict[str, Any] = {}
        if self.config.get("deal_value_from_products"):
            enabled = [line["sum"] for line in self.lines_of([deal_id]) if line.get("is_enabled", True)]
            changes["value"] = sum(enabled)
        if self.config.get("deal_products_bump_deal"):
            self.update("deals", deal_id, changes)
        elif changes:
            deal = self.coll("deals").records[deal_id]
            self.coll("deals").replace({**deal, **changes})

    @staticmethod
    def line_public(line: dict[str, Any]) -> dict[str, Any]:
        """A line in the v2 wire order."""
        return {k: line.get(k) for k in LINE_ORDER}

    # -- seeding ---------------------------------------------------------------------------------------------
    def seed_deals(self, count: int) -> None:
        """Seed ``count`` deals (no products) with deterministic, varied data for read tests."""
        rng = random.Random(self.seed)
        coll = self.coll("deals")
        order_key = self.catalog.key_for("deal", "ERP Order Number")
        source = self.catalog.custom("deal")[self.catalog.key_for("deal", "Source")]
        options = [o["id"] for o in source.options or []]
        base = datetime(2024, 1, 1, tzinfo=UTC).timestamp()
        recs = []
        for i in range(1, count + 1):
            added = base + i * 60 + rng.randrange(60)
            updated = added + rng.randrange(0, 86_400)
            status = rng.choices(("open", "won", "lost"), (6, 3, 1))[0]
            rec: dict[str, Any] = {
                "id": i,
                "title": f"Deal {i:07d}",
                "value": round(rng.uniform(100, 50_000), 2),
                "stage_id": rng.randint(1, 5),
                "status": status,
                "add_time": iso(added),
                "update_time": iso(updated),
                "custom_fields": {order_key: f"SO-{i:07d}", source.key: rng.choice(options)},
            }
            if status != "open":
                rec["close_time"] = rec[f"{status}_time"] = rec["update_time"]
            recs.append(rec)
        coll.bulk_add(recs)

    # -- public helpers for in-process tests -----------------------------------------------------------------
    def insert(self, entity: str, record: dict[str, Any]) -> dict[str, Any]:
        """Insert a record as-is (no API validation); ``custom_fields`` may be keyed by label."""
        with self.lock:
            coll = self.coll(entity)
            rec = copy.deepcopy(record)
            main = "title" if coll.name == "deals" else "name"
            rec.setdefault(main, "")
            if "custom_fields" in rec:
                rec["custom_fields"] = self._keyed(coll, rec["custom_fields"])
            return copy.deepcopy(coll.public(self.create(coll.name, rec)))

    def patch(self, entity: str, rid: int, changes: dict[str, Any]) -> dict[str, Any]:
        """Merge changes into a record (no validation) and bump ``update_time``."""
        with self.lock:
            coll = self.coll(entity)
            changes = copy.deepcopy(changes)
            if "custom_fields" in changes:
                changes["custom_fields"] = self._keyed(coll, changes["custom_fields"])
            return copy.deepcopy(coll.public(self.update(coll.name, rid, changes)))

    def all(self, entity: str) -> list[dict[str, Any]]:
        """Every record (deleted ones included), by id; ``deal_products`` lists the lines."""
        with self.lock:
            if entity in {"deal_products", "deals/products"}:
                return [self.line_public(self.lines[i]) for i in sorted(self.lines)]
            coll = self.coll(entity)
            return [copy.deepcopy(coll.public(coll.records[i])) for i in sorted(coll.records)]

    def get(self, entity: str, rid: int) -> dict[str, Any] | None:
        """One record in wire shape (deleted included), or ``None``."""
        with self.lock:
            coll = self.coll(entity)
            rec = coll.records.get(rid)
            return copy.deepcopy(coll.public(rec)) if rec is not None else None

    def field_key(self, entity: str, label: str) -> str:
        """The 40-hex key of a custom field by its label (``KeyError`` if unknown)."""
        return self.catalog.key_for(entity, label)

    def add_deal_product(
        self, deal_id: int, product_id: int, item_price: float, quantity: float, **extra: Any
    ) -> dict[str, Any]:
        """Attach a product line to a deal."""
        with self.lock:
            if deal_id not in self.coll("deals").records or product_id not in self.coll("products").records:
                raise KeyError("deal or product does not exist")
            fields = {"product_id": product_id, "item_price": item_price, "quantity": quantity, **extra}
            return self.line_public(self.line_create(deal_id, fields))

    def _keyed(self, coll: Collection, values: dict[str, Any]) -> dict[str, Any]:
        labels = self.catalog.labels(coll.singular)
        return {labels.get(k, k): v for k, v in values.items()}


def _person_names(rec: dict[str, Any], changes: dict[str, Any]) -> None:
    """``name`` <-> ``first_name`` + ``last_name``, whichever side was written."""
    if "name" in changes and not ({"first_name", "last_name"} & set(changes)):
        first, _, last = (rec.get("name") or "").partition(" ")
        rec["first_name"], rec["last_name"] = first or None, last or None
    elif "name" not in changes and {"first_name", "last_name"} & set(changes):
        rec["name"] = " ".join(p for p in (rec.get("first_name"), rec.get("last_name")) if p)


def _deal_rules(old: dict[str, Any] | None, rec: dict[str, Any], changes: dict[str, Any], now: str) -> None:
    """Status and stage side effects: won/lost/close times, stage change time, archive time."""
    status = rec.get("status", "open")
    old_status = old.get("status", "open") if old else None
    if status != old_status and ("status" in changes or old is None):
        if status == "won":
            rec["won_time"] = changes.get("won_time") or now
            rec["close_time"] = changes.get("close_time") or rec["won_time"]
            rec["lost_time"] = None
        elif status == "lost":
            rec["lost_time"] = changes.get("lost_time") or now
            rec["close_time"] = changes.get("close_time") or rec["lost_time"]
            rec["won_time"] = None
        elif old is not None:
            rec["won_time"] = rec["lost_time"] = rec["close_time"] = rec["lost_reason"] = None
    if old is not None and rec.get("stage_id", 1) != old.get("stage_id", 1):
        rec["stage_change_time"] = changes.get("stage_change_time") or now
    if changes.get("is_archived") and not (old or {}).get("is_archived"):
        rec["archive_time"] = changes.get("archive_time") or now
    elif changes.get("is_archived") is False:
        rec["archive_time"] = None
