"""The activity log and its paging tokens (facts §2.5): activities, lead changes, deleted leads.

Every lead create, field change and delete the store reports becomes an activity (New Lead 12, Change Data
Value 13, Delete Lead 37); seeded leads also get a few web activities (Visit Web Page 1, Fill Out Form 2, Click
Link 3). Activities are kept sorted by (activityDate, id), so a page costs a bisect plus at most
``activity_scan_limit`` steps, whatever the log's size.

A paging token is a position in that order plus the time it was issued. Readers must be ready for the real
API's habits: every answer carries a ``nextPageToken``; ``moreResult`` is true while anything lies after the
page, and a page may be short (or empty) and still say ``moreResult: true`` — it ends at a UTC day boundary and
after ``activity_scan_limit`` activities looked at.
"""

from __future__ import annotations

import base64
import bisect
import random
import threading
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from ml_connector.sandbox.marketo import envelope
from ml_connector.sandbox.marketo.store import SCHEMAS, LeadEvent, MarketoStore, iso

CONFIG_DEFAULTS: dict[str, Any] = {
    "paging_token_days": 14,  # UNCONFIRMED (facts silent; deleted leads "may be pruned" after 14 days): stricter
    "activity_scan_limit": 1000,  # activities looked at per page before a short page with moreResult true
    "activity_day_pages": True,  # a page never spans two UTC days (short pages with moreResult true)
    # UNCONFIRMED (Swagger says required; observed answers and marketorestpython's checks say it can be absent):
    # an empty page has no ``result`` key at all, the stricter choice for readers
    "activity_empty_result": False,
}
MAX_TYPE_IDS = 10
MAX_LEAD_IDS = 30
MAX_BATCH = 300

NEW_LEAD, CHANGE_DATA_VALUE, DELETE_LEAD = 12, 13, 37
VISIT_WEB_PAGE, FILL_OUT_FORM, CLICK_LINK = 1, 2, 3


def _attr(name: str, data_type: str = "string") -> dict[str, str]:
    return {"name": name, "dataType": data_type}


ACTIVITY_TYPES: list[dict[str, Any]] = [
    {"id": VISIT_WEB_PAGE, "name": "Visit Webpage", "description": "User visits a web page",
     "primaryAttribute": _attr("Webpage ID", "integer"),
     "attributes": [_attr("Client IP Address"), _attr("Query Parameters"), _attr("Referrer URL", "url"),
                    _attr("User Agent"), _attr("Webpage URL")]},
    {"id": FILL_OUT_FORM, "name": "Fill Out Form", "description": "User fills out and submits form on web page",
     "primaryAttribute": _attr("Webform ID", "integer"),
     "attributes": [_attr("Client IP Address"), _attr("Form Fields", "text"), _attr("Referrer URL", "url"),
                    _attr("User Agent"), _attr("Webpage ID", "integer")]},
    {"id": CLICK_LINK, "name": "Click Link", "description": "User clicks link on a page",
     "primaryAttribute": _attr("Link ID", "integer"),
     "attributes": [_attr("Client IP Address"), _attr("Query Parameters"), _attr("Referrer URL", "url"),
                    _attr("User Agent"), _attr("Webpage ID", "integer")]},
    {"id": NEW_LEAD, "name": "New Lead", "description": "New person/record is added to the lead database",
     "primaryAttribute": _attr("Lead ID", "integer"),
     "attributes": [_attr("Source Type"), _attr("Form Name"), _attr("List Name"), _attr("Created Date", "date")]},
    {"id": CHANGE_DATA_VALUE, "name": "Change Data Value", "description": "Changed attribute value for a person",
     "primaryAttribute": _attr("Attribute Name", "integer"),
     "attributes": [_attr("New Value"), _attr("Old Value"), _attr("Reason"), _attr("Source")]},
    {"id": DELETE_LEAD, "name": "Delete Lead", "description": "Lead was deleted",
     "primaryAttribute": _attr("Lead ID", "integer"),
     "attributes": [_attr("Remove from CRM", "boolean")]},
]
TYPE_IDS = frozenset(t["id"] for t in ACTIVITY_TYPES)
FIELD_IDS = {f.name: i + 1 for i, f in enumerate(SCHEMAS["leads"].fields)}
"""Stable lead field ids (Change Data Value's primaryAttributeValueId and lead changes' ``fields[].id``)."""
_PAGES = ("/index.html", "/pricing.html", "/products/widgets.html", "/blog/integration.html", "/contact.html")


@dataclass(frozen=True)
class Activity:
    id: int
    at: float
    type_id: int
    lead_id: int
    primary_id: int
    primary_value: str
    attributes: tuple[tuple[str, Any], ...] = ()
    field: str | None = None  # Change Data Value only
    old: Any = None
    new: Any = None

    @property
    def key(self) -> tuple[float, int]:
        return (self.at, self.id)

    def item(self) -> dict[str, Any]:
        return {"id": self.id, "marketoGUID": str(self.id), "leadId": self.lead_id, "activityDate": iso(self.at),
                "activityTypeId": self.type_id, "primaryAttributeValueId": self.primary_id,
                "primaryAttributeValue": self.primary_value,
                "attributes": [{"name": name, "value": value} for name, value in self.attributes]}

    def change_item(self) -> dict[str, Any]:
        """The lead-changes shape: no primary attribute, the changed field in ``fields``."""
        out = {k: v for k, v in self.item().items() if not k.startswith("primary")}
        out["fields"] = [] if self.field is None else [
            {"id": FIELD_IDS.get(self.field, 0), "name": self.field, "newValue": _text(self.new),
             "oldValue": _text(self.old)}]
        return out


def _text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


@dataclass
class ActivityLog:
    """Activities in (date, id) order, fed by the store's lead events."""

    store: MarketoStore
    items: list[Activity] = field(default_factory=list)
    keys: list[tuple[float, int]] = field(default_factory=list)
    next_id: int = 1
    names: dict[int, str] = field(default_factory=dict)  # lead id -> name, kept for Delete Lead
    lock: threading.Lock = field(default_factory=threading.Lock)
    seeding: bool = False  # back-dated seeding appends; renumber() sorts once (an insert each is quadratic)

    def add(self, at: float, type_id: int, lead_id: int, primary_id: int, primary_value: str,
            attributes: tuple[tuple[str, Any], ...] = (), **change: Any) -> Activity:
        with self.lock:
            activity = Activity(self.next_id, at, type_id, lead_id, primary_id, primary_value, attributes, **change)
            self.next_id += 1
            if self.seeding or not self.keys or activity.key >= self.keys[-1]:
                self.items.append(activity)
                self.keys.append(activity.key)
            else:  # a back-dated activity (seeding): keep the order
                index = bisect.bisect_right(self.keys, activity.key)
                self.items.insert(index, activity)
                self.keys.insert(index, activity.key)
            return activity

    def on_event(self, event: LeadEvent) -> None:
        """The store's listener: one activity per lead event."""
        if event.kind == "new":
            lead = self.store.get("leads", event.lead_id) or {}
            name = _lead_name(lead)
            self.names[event.lead_id] = name
            self.add(event.at, NEW_LEAD, event.lead_id, event.lead_id, name,
                     (("Source Type", event.reason), ("Created Date", iso(event.at)[:10])))
        elif event.kind == "change" and event.field is not None:
            if event.field in {"firstName", "lastName", "email"}:
                self.names[event.lead_id] = _lead_name(self.store.get("leads", event.lead_id) or {})
            self.add(event.at, CHANGE_DATA_VALUE, event.lead_id, FIELD_IDS.get(event.field, 0), event.field,
                     (("New Value", _text(event.new)), ("Old Value", _text(event.old)), ("Reason", event.reason),
                      ("Source", event.reason)), field=event.field, old=event.old, new=event.new)
        elif event.kind == "delete":
            self.add(event.at, DELETE_LEAD, event.lead_id, event.lead_id, self.names.pop(event.lead_id, ""),
                     (("Remove from CRM", False),))

    def seed_web(self, lead_id: int, created_at: float, now: float, rng: random.Random) -> None:
        """A few web activities of one seeded lead, between its creation and now."""
        for _ in range(rng.randint(1, 4)):
            at = min(float(int(created_at + rng.uniform(0, max(0.0, now - created_at)))), now - 1)  # before now
            kind = rng.choice((VISIT_WEB_PAGE, VISIT_WEB_PAGE, FILL_OUT_FORM, CLICK_LINK))
            page = rng.randrange(len(_PAGES))
            ip = f"10.0.{rng.randint(0, 255)}.{rng.randint(1, 254)}"
            if kind == VISIT_WEB_PAGE:
                self.add(at, kind, lead_id, 1000 + page, f"www.example.com{_PAGES[page]}",
                         (("Client IP Address", ip), ("Webpage URL", _PAGES[page])))
            elif kind == FILL_OUT_FORM:
                self.add(at, kind, lead_id, 2001, "Contact Us Form",
                         (("Client IP Address", ip), ("Webpage ID", 1000 + page)))
            else:
                self.add(at, kind, lead_id, 3000 + page, f"www.example.com{_PAGES[page]}?ref=email",
                         (("Client IP Address", ip), ("Webpage ID", 1000 + page)))

    def renumber(self) -> None:
        """Ids in date order again after back-dated seeding (Marketo's ids grow with time)."""
        with self.lock:
            self.items.sort(key=lambda a: a.key)
            self.seeding = False
            self.items = [replace(a, id=i + 1) for i, a in enumerate(self.items)]
            self.keys = [a.key for a in self.items]
            self.next_id = len(self.items) + 1

    def after(self, position: tuple[float, int]) -> int:
        """Index of the first activity after a position."""
        return bisect.bisect_right(self.keys, position)


def _lead_name(lead: dict[str, Any]) -> str:
    name = " ".join(str(lead[k]) for k in ("firstName", "lastName") if lead.get(k))
    return name or str(lead.get("email") or "")


def activity_log(sandbox: Any, seed: int = 23) -> ActivityLog:
    """The sandbox's activity log, created (and listening to the store) on first use.

    The leads already in the store are the seeded ones: each gets its New Lead activity (at its ``createdAt``)
    and a few web activities (1, 2, 3) between then and now, reproducible from ``seed``.
    """
    existing = getattr(sandbox, "activity_log", None)
    if isinstance(existing, ActivityLog):
        return existing
    log = ActivityLog(sandbox.store, seeding=True)
    rng = random.Random(seed)
    now = sandbox.clock()
    for lead in sandbox.store.records("leads"):
        created = parse_datetime(str(lead.get("createdAt") or "")) or now
        log.names[lead["id"]] = _lead_name(lead)
        log.add(created, NEW_LEAD, lead["id"], lead["id"], log.names[lead["id"]],
                (("Source Type", "Web service API"), ("Created Date", iso(created)[:10])))
        log.seed_web(lead["id"], created, now, rng)
    log.renumber()
    sandbox.store.listen(log.on_event)
    sandbox.activity_log = log
    return log


# -- dates and tokens ---------------------------------------------------------------------------------------
def parse_datetime(text: str) -> float | None:
    """ISO 8601 with ``Z`` or an offset (a date alone is midnight UTC); None when not a date."""
    value = text.strip()
    if not value:
        return None
    if value.endswith("Z") or value.endswith("z"):
        value = value[:-1] + "+00:00"
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return None
    if moment.tzinfo is None:  # UNCONFIRMED: a datetime without a zone is read as UTC
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


def encode_token(position: tuple[float, int], issued: float) -> str:
    """Base32 like Marketo's tokens (``GIYD...``): the position and the time the token was issued."""
    raw = f"{position[0]:.3f}:{position[1]}:{issued:.0f}".encode()
    return base64.b32encode(raw).decode().rstrip("=")


def decode_token(token: str, now: float, days: float) -> tuple[float, int] | None:
    """The position a token stands for, or None when it is malformed or older than ``days``."""
    try:
        raw = base64.b32decode(token + "=" * (-len(token) % 8)).decode()
        at, after, issued = raw.split(":")
        position = (float(at), int(after))
        if now - float(issued) > days * 86_400 or float(issued) > now + 1:
            return None
        return position
    except (ValueError, UnicodeDecodeError):
        return None


# -- pages ----------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Page:
    items: list[Activity]
    position: tuple[float, int]
    more: bool


def read_page(log: ActivityLog, position: tuple[float, int], wanted: Any, batch: int, config: dict[str, Any]
              ) -> Page:
    """Up to ``batch`` activities after ``position`` that ``wanted(activity)`` accepts.

    The page also stops at the end of the first activity's UTC day and after ``activity_scan_limit`` looked at,
    so short pages with ``moreResult: true`` happen, as they do on the real API.
    """
    scan_limit = int(config.get("activity_scan_limit", CONFIG_DEFAULTS["activity_scan_limit"]))
    day_pages = bool(config.get("activity_day_pages", CONFIG_DEFAULTS["activity_day_pages"]))
    with log.lock:
        index = log.after(position)
        end = len(log.items)
        items: list[Activity] = []
        day_end: float | None = None
        scanned = 0
        while index < end and len(items) < batch and scanned < scan_limit:
            activity = log.items[index]
            if day_end is not None and activity.at >= day_end:
                break
            scanned += 1
            index += 1
            position = activity.key
            if wanted(activity):
                items.append(activity)
                if day_pages and day_end is None:
                    day_end = _next_midnight(activity.at)
        return Page(items, position, index < end)


def _next_midnight(at: float) -> float:
    day = datetime.fromtimestamp(at, UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    return (day + timedelta(days=1)).timestamp()


# -- routes ---------------------------------------------------------------------------------------------------
_Invalid = envelope.Refusal


def _int_list(request: Request, name: str, limit: int, required: bool = False) -> list[int] | None:
    text = ",".join(request.query_params.getlist(name)).strip(",")
    if not text:
        if required:
            raise _Invalid("701", f"{name} cannot be blank")
        return None
    try:
        values = [int(part) for part in text.split(",") if part.strip()]
    except ValueError as exc:
        raise _Invalid("1003", f"Invalid value for {name}") from exc
    if len(values) > limit:
        raise _Invalid("1003", f"{name} exceeds the maximum of {limit} values")
    return values


def _batch(request: Request) -> int:
    text = request.query_params.get("batchSize")
    if text in (None, ""):
        return MAX_BATCH
    try:
        value = int(text)
    except ValueError as exc:
        raise _Invalid("1003", "Invalid value for batchSize") from exc
    if value < 1 or value > MAX_BATCH:
        raise _Invalid("1003", f"batchSize must be between 1 and {MAX_BATCH}")
    return value


def _days(config: dict[str, Any]) -> float:
    return float(config.get("paging_token_days", CONFIG_DEFAULTS["paging_token_days"]))


def _position(request: Request, sandbox: Any) -> tuple[float, int]:
    token = request.query_params.get("nextPageToken") or ""
    if not token:
        raise _Invalid("701", "nextPageToken cannot be blank")
    position = decode_token(token, sandbox.clock(), _days(sandbox.config))
    if position is None:  # UNCONFIRMED: the code of a malformed or expired paging token
        raise _Invalid("1003", "Invalid nextPageToken")
    return position


def _no_list(request: Request) -> None:
    """The sandbox has no static lists: any ``listId`` names a list that does not exist."""
    if request.query_params.get("listId") not in (None, ""):
        raise _Invalid("1003", "Static list not found")


def _answer(sandbox: Any, page: Page, items: list[dict[str, Any]]) -> Response:
    token = encode_token(page.position, sandbox.clock())
    keep_empty = sandbox.config.get("activity_empty_result", CONFIG_DEFAULTS["activity_empty_result"])
    return envelope.ok(items if items or keep_empty else None, nextPageToken=token, moreResult=page.more)


def routes(sandbox: Any) -> list[BaseRoute]:
    """The activity endpoints; app.py puts them behind the token check and the limits (handlers raise Refusal)."""
    for key, value in CONFIG_DEFAULTS.items():  # tunable through PATCH /_admin/config
        sandbox.config.setdefault(key, value)
    log = activity_log(sandbox)

    async def types(request: Request) -> Response:
        return envelope.ok([dict(t) for t in ACTIVITY_TYPES])

    async def paging_token(request: Request) -> Response:
        text = request.query_params.get("sinceDatetime") or ""
        if not text:
            raise _Invalid("701", "sinceDatetime cannot be blank")
        since = parse_datetime(text)
        if since is None:  # facts §2.2: 704 "Invalid date"
            raise _Invalid("704", f"Invalid date: {text}")
        token = encode_token((since, 0), sandbox.clock())
        return envelope.ok(None, nextPageToken=token)

    async def activities(request: Request) -> Response:
        type_ids = _int_list(request, "activityTypeIds", MAX_TYPE_IDS, required=True) or []
        unknown = sorted(set(type_ids) - TYPE_IDS)
        if unknown:
            raise _Invalid("1003", f"Invalid activity type id: {unknown[0]}")
        lead_ids = _int_list(request, "leadIds", MAX_LEAD_IDS)
        asset_ids = _int_list(request, "assetIds", MAX_BATCH)
        if asset_ids is not None and len(type_ids) != 1:
            raise _Invalid("1003", "assetIds may be given with one activity type only")
        _no_list(request)
        batch = _batch(request)
        position = _position(request, sandbox)
        types_set, leads_set = set(type_ids), set(lead_ids or ())
        assets_set = set(asset_ids or ())

        def wanted(activity: Activity) -> bool:
            return (activity.type_id in types_set and (not leads_set or activity.lead_id in leads_set)
                    and (not assets_set or activity.primary_id in assets_set))

        page = read_page(log, position, wanted, batch, sandbox.config)
        return _answer(sandbox, page, [a.item() for a in page.items])

    async def lead_changes(request: Request) -> Response:
        text = ",".join(request.query_params.getlist("fields")).strip(",")
        names = [n.strip() for n in text.split(",") if n.strip()]
        if not names:
            raise _Invalid("701", "fields cannot be blank")
        lead_ids = _int_list(request, "leadIds", MAX_LEAD_IDS)
        _no_list(request)
        batch = _batch(request)
        position = _position(request, sandbox)
        wanted_fields, leads_set = set(names), set(lead_ids or ())

        def wanted(activity: Activity) -> bool:
            if leads_set and activity.lead_id not in leads_set:
                return False
            return activity.type_id == NEW_LEAD or (
                activity.type_id == CHANGE_DATA_VALUE and activity.field in wanted_fields)

        page = read_page(log, position, wanted, batch, sandbox.config)
        return _answer(sandbox, page, [a.change_item() for a in page.items])

    async def deleted_leads(request: Request) -> Response:
        batch = _batch(request)
        position = _position(request, sandbox)
        page = read_page(log, position, lambda a: a.type_id == DELETE_LEAD, batch, sandbox.config)
        return _answer(sandbox, page, [a.item() for a in page.items])

    return [
        Route("/rest/v1/activities/types.json", types, methods=["GET"]),
        Route("/rest/v1/activities/pagingtoken.json", paging_token, methods=["GET"]),
        Route("/rest/v1/activities/leadchanges.json", lead_changes, methods=["GET"]),
        Route("/rest/v1/activities/deletedleads.json", deleted_leads, methods=["GET"]),
        Route("/rest/v1/activities.json", activities, methods=["GET"]),
    ]
