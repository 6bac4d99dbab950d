"""Notifications (`/crm/v8/actions/watch`, facts §8): channels that get a POST to their ``notify_url`` for every
committed change of a watched module.

Changes come from the store's listeners (called inside the write); they are queued and POSTed by a background task,
never inside the write's request. Changes of one (channel, module, operation) close together share one callback
when ``watch_batch_seconds`` > 0 (sandbox clock). ``watch_drop_deliveries`` loses callbacks on purpose, so a test
can show that periodic reconciliation catches what a notification missed.

UNCONFIRMED shapes (facts §8), kept small and documented here: ``affected_fields`` is ``[{record_id: [fields]}]``
for updates (``[]`` otherwise); with ``return_affected_field_values`` updates add ``affected_values``:
``[{"record_id": id, "values": {field: value}}]``, the values right after the change.

Admin: ``GET /_admin/watch/deliveries`` -> {"deliveries": [{at, url, body, status, dropped, error}], "queued": n};
``POST /_admin/watch/flush`` sends everything queued now; ``GET /_admin/watch/channels`` -> every channel.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, cast
from urllib.parse import parse_qsl, urlsplit

import httpx
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from ml_connector.sandbox.zoho import common
from ml_connector.sandbox.zoho.common import ApiError, Org, ZohoContext, iso, json_response, read_json, zoho_error
from ml_connector.sandbox.zoho.store import Change

logger = logging.getLogger(__name__)
CONFIG_DEFAULTS: dict[str, Any] = {
    "watch_batch_seconds": 0.0,  # changes of one channel/module/operation within this window share a callback
    "watch_drop_deliveries": False,  # True: callbacks are recorded as dropped and never sent
    "watch_default_expiry_seconds": 3600,  # channel_expiry absent or too far ahead -> this long (facts §8)
    "watch_max_expiry_seconds": 7 * 86_400,  # at most one week ahead
    "watch_token_max_length": 50,
}
OPERATIONS = {"insert": "create", "update": "edit", "delete": "delete"}
_EVENT = re.compile(r"^([A-Za-z][A-Za-z0-9_]*)\.(create|edit|delete|all)$")
SUBSCRIBED = "Successfully subscribed for actions-watch of the given module"
UPDATED = "Successfully updated the subscribe details"
UNSUBSCRIBED = "Successfully un-subscribed from actions-watch"
REMOVED = "Successfully removed the subscribe details"


@dataclass
class Channel:
    org_id: str
    channel_id: str
    events: list[str]
    notify_url: str
    token: str | None
    expiry: float
    base_uri: str  # "https://host" the channel was made on: resource_uri = base_uri + "/crm/v2/{module}"
    return_affected_field_values: bool = False
    notify_on_related_action: bool = True
    notification_condition: list[Any] = field(default_factory=list)

    def modules(self) -> list[str]:
        return list(dict.fromkeys(event.split(".")[0] for event in self.events))

    def watches(self, module: str, operation: str) -> bool:
        return f"{module}.all" in self.events or f"{module}.{OPERATIONS[operation]}" in self.events


@dataclass
class Pending:
    """One callback being gathered: the ids (and changed fields) of one channel/module/operation."""

    channel: Channel
    module: str
    operation: str
    first: float
    fields: dict[str, list[str]] = field(default_factory=dict)  # id -> changed fields, in change order
    values: dict[str, dict[str, Any]] = field(default_factory=dict)


class ItemError(Exception):
    def __init__(self, code: str, message: str, details: dict[str, Any]) -> None:
        super().__init__(code)
        self.body = {"code": code, "details": details, "message": message, "status": "error"}


def _mandatory(index: int, name: str) -> ItemError:
    return ItemError("MANDATORY_NOT_FOUND", "required field not found",
                     {"api_name": name, "json_path": f"$.watch[{index}].{name}"})


def _invalid(index: int, name: str, path: str | None = None, **extra: Any) -> ItemError:
    return ItemError("INVALID_DATA", "invalid data",
                     {"api_name": name, "json_path": f"$.watch[{index}].{path or name}", **extra})


def _not_subscribed(channel_id: str) -> ItemError:
    return ItemError("NOT_SUBSCRIBED", "the given channel is not subscribed", {"channel_id": channel_id})


class Watches:
    """Every org's channels, the queue of callbacks and the log of what was sent."""

    def __init__(self, ctx: ZohoContext) -> None:
        self.ctx = ctx
        self.channels: dict[str, dict[str, Channel]] = {}
        self.queue: list[Pending] = []
        self.deliveries: list[dict[str, Any]] = []
        self.tasks: set[asyncio.Task[None]] = set()
        self.timers: set[asyncio.Task[None]] = set()
        self.lock = asyncio.Lock()
        stores = getattr(ctx, "stores", None) or {}
        for org_id, store in stores.items():
            store.listen(self._listener(org_id, store))

    @property
    def config(self) -> dict[str, Any]:
        return self.ctx.config

    # -- channels ---------------------------------------------------------------------------------------------
    def live(self, org_id: str) -> dict[str, Channel]:
        """The org's channels that have not expired (expired ones are forgotten)."""
        book = self.channels.setdefault(org_id, {})
        now = self.ctx.clock()
        for channel_id in [cid for cid, ch in book.items() if ch.expiry <= now]:
            del book[channel_id]
        return book

    def expiry(self, index: int, value: Any) -> float:
        now = self.ctx.clock()
        fallback = now + float(self.config["watch_default_expiry_seconds"])
        if value is None:
            return fallback
        try:
            parsed = datetime.fromisoformat(value) if isinstance(value, str) else None
        except ValueError:
            parsed = None
        if parsed is None or parsed.tzinfo is None:
            raise _invalid(index, "channel_expiry", expected_data_type="datetime")
        at = parsed.timestamp()
        if at <= now:
            raise _invalid(index, "channel_expiry", expected_data_type="datetime")
        return fallback if at > now + float(self.config["watch_max_expiry_seconds"]) else at

    def parse(self, org: Org, index: int, item: Any, *, partial: bool = False) -> dict[str, Any]:
        """A watch item's checked values (only those given, when ``partial``); raises ItemError."""
        if not isinstance(item, dict):
            raise _invalid(index, "watch", path="")
        out: dict[str, Any] = {}
        for name in ("channel_id", "events") + (() if partial else ("notify_url",)):
            if item.get(name) in (None, "", []):
                raise _mandatory(index, name)
        raw_id = item["channel_id"]
        if isinstance(raw_id, bool) or not (isinstance(raw_id, int) or (isinstance(raw_id, str) and raw_id.isdigit())):
            raise _invalid(index, "channel_id", expected_data_type="long")
        out["channel_id"] = str(int(raw_id))
        events = item["events"]
        if not isinstance(events, list):
            raise _invalid(index, "events")
        store = self.ctx.store_for(org)
        for position, event in enumerate(events):
            match = _EVENT.match(event) if isinstance(event, str) else None
            module = match.group(1) if match else ""
            if match is None or not store.has_module(module) or \
                    getattr(store.module(module), "generated_type", "") == "subform":
                raise _invalid(index, "events", path=f"events[{position}]")
        out["events"] = list(dict.fromkeys(events))
        if "notify_url" in item or not partial:
            url = item.get("notify_url")
            parts = urlsplit(url) if isinstance(url, str) else None
            if parts is None or parts.scheme not in {"http", "https"} or not parts.netloc or " " in str(url):
                raise _invalid(index, "notify_url")
            out["notify_url"] = url
        if "token" in item or not partial:
            token = item.get("token")
            limit = int(self.config["watch_token_max_length"])
            if token is not None and (not isinstance(token, str) or len(token) > limit):
                raise _invalid(index, "token", maximum_length=limit)
            out["token"] = token
        if "channel_expiry" in item or not partial:
            out["expiry"] = self.expiry(index, item.get("channel_expiry"))
        for flag, default in (("return_affected_field_values", False), ("notify_on_related_action", True)):
            if flag in item or not partial:
                value = item.get(flag, default)
                if not isinstance(value, bool):
                    raise _invalid(index, flag, expected_data_type="boolean")
                out[flag] = value
        if "notification_condition" in item or not partial:
            condition = item.get("notification_condition", [])
            if not isinstance(condition, list):
                raise _invalid(index, "notification_condition")
            out["notification_condition"] = condition
        return out

    def events_body(self, channel: Channel) -> dict[str, Any]:
        return {"events": [self.resource(channel, module) for module in channel.modules()]}

    def resource(self, channel: Channel, module: str, store: Any = None) -> dict[str, Any]:
        store = store or self._store(channel.org_id)
        return {"channel_expiry": iso(channel.expiry), "resource_uri": f"{channel.base_uri}/crm/v2/{module}",
                "resource_id": str(store.module(module).summary()["id"]), "resource_name": module,
                "channel_id": channel.channel_id}

    def listing(self, channel: Channel, module: str) -> dict[str, Any]:
        resource = self.resource(channel, module)
        return {"channel_id": channel.channel_id, "events": [e for e in channel.events if e.startswith(module + ".")],
                "notify_url": channel.notify_url, "token": channel.token, "channel_expiry": resource["channel_expiry"],
                "resource_uri": resource["resource_uri"], "resource_id": resource["resource_id"],
                "resource_name": module, "return_affected_field_values": channel.return_affected_field_values,
                "notify_on_related_action": channel.notify_on_related_action,
                "notification_condition": channel.notification_condition}

    def _store(self, org_id: str) -> Any:
        stores = getattr(self.ctx, "stores", None) or {}
        return stores.get(org_id, self.ctx.store)

    # -- changes and callbacks --------------------------------------------------------------------------------
    def _listener(self, org_id: str, store: Any) -> Any:
        def heard(change: Change) -> None:
            self.enqueue(org_id, store, change)
        return heard

    def enqueue(self, org_id: str, store: Any, change: Change) -> None:
        now = self.ctx.clock()
        window = float(self.config["watch_batch_seconds"])
        for channel in list(self.live(org_id).values()):
            if not channel.watches(change.module, change.operation):
                continue
            pending = None
            if window > 0:
                pending = next((p for p in self.queue if p.channel is channel and p.module == change.module
                                and p.operation == change.operation and now < p.first + window), None)
            if pending is None:
                pending = Pending(channel, change.module, change.operation, now)
                self.queue.append(pending)
            for record_id in change.ids:
                known = pending.fields.setdefault(record_id, [])
                known.extend(name for name in change.fields if name not in known)
                if channel.return_affected_field_values and change.operation == "update":
                    record = store.get(change.module, record_id) or {}
                    pending.values.setdefault(record_id, {}).update(
                        {name: record.get(name) for name in change.fields})
        self.kick()

    def kick(self, delay: float = 0.0) -> None:
        """Send what is due from a background task (nothing happens without a running event loop)."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return

        async def later() -> None:
            await asyncio.sleep(delay)
            await self.pump()

        task = loop.create_task(later())
        book = self.timers if delay > 0 else self.tasks  # a timer only waits for a batch window: flush cancels it
        book.add(task)
        task.add_done_callback(book.discard)

    async def pump(self, everything: bool = False) -> int:
        """Send the due callbacks (all queued ones if ``everything``), in order; how many were handled."""
        async with self.lock:
            now = self.ctx.clock()
            window = float(self.config["watch_batch_seconds"])
            due = [p for p in self.queue if everything or window <= 0 or now >= p.first + window]
            self.queue = [p for p in self.queue if p not in due]
            for pending in due:
                await self.send(pending)
            if self.queue and window > 0:
                wait = min(p.first + window for p in self.queue) - now
                self.kick(max(wait, 0.01))
            return len(due)

    def body(self, pending: Pending) -> dict[str, Any]:
        channel = pending.channel
        ids = list(pending.fields)
        body: dict[str, Any] = {
            "server_time": int(self.ctx.clock() * 1000),
            "query_params": dict(parse_qsl(urlsplit(channel.notify_url).query)),
            "module": pending.module,
            "resource_uri": f"{channel.base_uri}/crm/v2/{pending.module}",
            "ids": ids,
            "affected_fields": [{rid: pending.fields[rid]} for rid in ids] if pending.operation == "update" else [],
        }
        if channel.return_affected_field_values and pending.operation == "update":
            body["affected_values"] = [{"record_id": rid, "values": pending.values.get(rid, {})} for rid in ids]
        body.update({"operation": pending.operation, "channel_id": channel.channel_id, "token": channel.token})
        return body

    async def send(self, pending: Pending) -> None:
        body = self.body(pending)
        url = pending.channel.notify_url
        entry: dict[str, Any] = {"at": iso(self.ctx.clock()), "org_id": pending.channel.org_id, "url": url,
                                 "body": body, "status": None, "dropped": False, "error": None}
        self.deliveries.append(entry)
        if self.config["watch_drop_deliveries"]:
            entry["dropped"] = True
            return
        try:
            if getattr(self.ctx, "sender", None) is common._post:  # the default sender tells no status: ask ourselves
                async with httpx.AsyncClient(timeout=10) as client:
                    entry["status"] = (await client.post(url, json=body)).status_code
            else:
                deliver = cast(Callable[[str, dict[str, Any]], Awaitable[Any]], self.ctx.deliver)
                answer = await deliver(url, body)  # a test's sender may answer with a status
                entry["status"] = answer if isinstance(answer, int) else getattr(answer, "status_code", None)
        except Exception as exc:  # a notify_url that fails must not break the sandbox
            entry["error"] = f"{type(exc).__name__}: {exc}"
            logger.warning("zoho sandbox: notification to %s failed: %s", url, exc)

    async def flush(self) -> int:
        """Everything queued, now, and whatever background sends are under way."""
        count = await self.pump(everything=True)
        for timer in list(self.timers):
            timer.cancel()
        current = asyncio.current_task()
        pending = [task for task in self.tasks if task is not current]
        if pending:
            await asyncio.gather(*pending, return_exceptions=True)
        return count


def _watches(ctx: ZohoContext) -> Watches:
    book = getattr(ctx, "_watches", None)
    if book is None:
        for key, value in CONFIG_DEFAULTS.items():
            ctx.config.setdefault(key, value)
        book = Watches(ctx)
        ctx._watches = book  # type: ignore[attr-defined]
    return book


def _items(body: Any) -> list[Any]:
    if not isinstance(body, dict) or not isinstance(body.get("watch"), list) or not body["watch"]:
        raise ApiError(zoho_error("MANDATORY_NOT_FOUND", "required field not found", 400,
                                  {"api_name": "watch", "json_path": "$.watch"}))
    return list(body["watch"])


def _answer(results: list[dict[str, Any]], ok_status: int) -> Response:
    status = ok_status if any(item["status"] == "success" for item in results) else 202
    return json_response({"watch": results}, status)


def routes(ctx: ZohoContext) -> list[BaseRoute]:
    book = _watches(ctx)

    def base_uri(request: Request) -> str:
        return f"{request.url.scheme}://{request.url.netloc}"

    async def enable(request: Request) -> Response:
        org = ctx.authorize(request, "ZohoCRM.notifications.CREATE")
        ctx.charge(org, 1)
        results: list[dict[str, Any]] = []
        for index, item in enumerate(_items(await read_json(request))):
            try:
                values = book.parse(org, index, item)
            except ItemError as err:
                results.append(err.body)
                continue
            channel = Channel(org.org_id, values.pop("channel_id"), values.pop("events"), values.pop("notify_url"),
                              values.pop("token"), values.pop("expiry"), base_uri(request), **values)
            book.live(org.org_id)[channel.channel_id] = channel  # the same channel_id again: replaced, renewed
            results.append({"code": "SUCCESS", "details": book.events_body(channel), "message": SUBSCRIBED,
                            "status": "success"})
        return _answer(results, 201)

    async def replace(request: Request) -> Response:
        org = ctx.authorize(request, "ZohoCRM.notifications.UPDATE")
        ctx.charge(org, 1)
        results: list[dict[str, Any]] = []
        channels = book.live(org.org_id)
        for index, item in enumerate(_items(await read_json(request))):
            try:
                values = book.parse(org, index, item)
                old = channels.get(values["channel_id"])
                if old is None:
                    raise _not_subscribed(values["channel_id"])
            except ItemError as err:
                results.append(err.body)
                continue
            channel = Channel(org.org_id, values.pop("channel_id"), values.pop("events"), values.pop("notify_url"),
                              values.pop("token"), values.pop("expiry"), old.base_uri, **values)
            channels[channel.channel_id] = channel
            results.append({"code": "SUCCESS", "details": book.events_body(channel), "message": UPDATED,
                            "status": "success"})
        return _answer(results, 200)

    async def merge(request: Request) -> Response:
        org = ctx.authorize(request, "ZohoCRM.notifications.UPDATE")
        ctx.charge(org, 1)
        results: list[dict[str, Any]] = []
        channels = book.live(org.org_id)
        for index, item in enumerate(_items(await read_json(request))):
            try:
                values = book.parse(org, index, item, partial=True)
                channel = channels.get(values["channel_id"])
                if channel is None:
                    raise _not_subscribed(values["channel_id"])
                drop = isinstance(item, dict) and item.get("_delete_events") is True
            except ItemError as err:
                results.append(err.body)
                continue
            events = values.pop("events")
            if drop:
                channel.events = [event for event in channel.events if event not in events]
            else:
                channel.events = list(dict.fromkeys(channel.events + events))
            values.pop("channel_id")
            if "expiry" in values:
                channel.expiry = values.pop("expiry")
            for key, value in values.items():
                setattr(channel, key, value)
            details = book.events_body(channel) if channel.events else {"channel_id": channel.channel_id}
            if not channel.events:
                del channels[channel.channel_id]
            results.append({"code": "SUCCESS", "details": details, "message": UNSUBSCRIBED if drop else UPDATED,
                            "status": "success"})
        return _answer(results, 200)

    async def listed(request: Request) -> Response:
        org = ctx.authorize(request, "ZohoCRM.notifications.READ")
        ctx.charge(org, 1)
        params = request.query_params
        try:
            page = int(params.get("page", 1))
            per_page = int(params.get("per_page", 200))
        except ValueError:
            return zoho_error("INVALID_DATA", "invalid data", details={"param_name": "page"})
        rows = [book.listing(channel, module) for channel in book.live(org.org_id).values()
                for module in channel.modules()
                if params.get("channel_id") in (None, channel.channel_id) and params.get("module") in (None, module)]
        start = (max(page, 1) - 1) * max(per_page, 1)
        chunk = rows[start:start + per_page]
        if not chunk:
            return Response(status_code=204)
        return json_response({"watch": chunk, "info": {"per_page": per_page, "page": page, "count": len(chunk),
                                                       "more_records": len(rows) > start + per_page}})

    async def disable(request: Request) -> Response:
        org = ctx.authorize(request, "ZohoCRM.notifications.DELETE")
        raw = request.query_params.get("channel_ids")
        if not raw:
            return zoho_error("REQUIRED_PARAM_MISSING", "One of the expected parameter is missing",
                              details={"param_name": "channel_ids"})
        ctx.charge(org, 1)
        channels = book.live(org.org_id)
        results: list[dict[str, Any]] = []
        for channel_id in (part.strip() for part in raw.split(",") if part.strip()):
            if channels.pop(channel_id, None) is None:
                results.append(_not_subscribed(channel_id).body)
            else:
                results.append({"code": "SUCCESS", "details": {"channel_id": channel_id}, "message": REMOVED,
                                "status": "success"})
        return _answer(results, 200)

    def guarded(handler: Any) -> Any:
        async def endpoint(request: Request) -> Response:
            try:
                response: Response = await handler(request)
                return response
            except ApiError as err:
                return err.response
        return endpoint

    path = "/crm/v8/actions/watch"
    return [Route(path, guarded(listed), methods=["GET"]), Route(path, guarded(enable), methods=["POST"]),
            Route(path, guarded(replace), methods=["PUT"]), Route(path, guarded(merge), methods=["PATCH"]),
            Route(path, guarded(disable), methods=["DELETE"])]


def admin_routes(ctx: ZohoContext) -> list[BaseRoute]:
    book = _watches(ctx)

    async def deliveries(request: Request) -> Response:
        return json_response({"deliveries": book.deliveries, "queued": len(book.queue)})

    async def flush(request: Request) -> Response:
        return json_response({"delivered": await book.flush()})

    async def channels(request: Request) -> Response:
        return json_response({org_id: [{**book.listing(ch, ch.modules()[0]), "events": ch.events}
                                       for ch in book.live(org_id).values()] for org_id in list(book.channels)})

    return [Route("/_admin/watch/deliveries", deliveries, methods=["GET"]),
            Route("/_admin/watch/flush", flush, methods=["POST"]),
            Route("/_admin/watch/channels", channels, methods=["GET"])]


__all__ = ["CONFIG_DEFAULTS", "Watches", "admin_routes", "routes"]
