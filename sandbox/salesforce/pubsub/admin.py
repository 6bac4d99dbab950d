"""The event bus of a sandbox, and its admin routes (tests and demos only, never counted as API calls).

  POST /_admin/pubsub/gap     {"entity": "Account", "ids": [...], "type": "GAP_UPDATE"|"GAP_OVERFLOW"|...}
                              -> {"replayId": n}: a header-only gap or overflow event
  POST /_admin/pubsub/purge   {"older_than_seconds": N} -> {"purged": n}: what a retention purge would drop
  POST /_admin/pubsub/disconnect -> {"disconnected": n}: every open Subscribe stream ends with UNAVAILABLE
  GET  /_admin/pubsub/events  -> {"latestReplayId": n, "events": [{"replayId", "entity", "changeType", ...}]}
Settings (``PATCH /_admin/config``): ``pubsub_cdc_entities``, ``pubsub_retention_hours``,
``pubsub_keepalive_seconds``, ``pubsub_max_requested``.
"""

from __future__ import annotations

import json
import weakref
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from ml_connector.sandbox.core import Sandbox
from ml_connector.sandbox.salesforce.pubsub.avro import GAP_TYPES
from ml_connector.sandbox.salesforce.pubsub.bus import EventBus

_BUSES: weakref.WeakKeyDictionary[Sandbox, EventBus] = weakref.WeakKeyDictionary()


def event_bus(sandbox: Sandbox) -> EventBus:
    """The sandbox's one event bus, created on first use: it listens to the store and adds the admin routes.

    Changes committed before the first call are not events (CDC was not on yet); call it when the sandbox is built.
    """
    bus = _BUSES.get(sandbox)
    if bus is None:
        store: Any = getattr(sandbox, "store")  # noqa: B009 - the Salesforce sandbox's store (contract)
        bus = EventBus(store, sandbox.config)
        store.listen(bus.on_change)
        sandbox._starlette.router.routes[0:0] = _routes(bus)  # before the vendor routes
        _BUSES[sandbox] = bus
    return bus


def _routes(bus: EventBus) -> list[BaseRoute]:
    async def gap(request: Request) -> Response:
        try:
            data = json.loads(await request.body())
        except ValueError:
            data = None
        if not isinstance(data, dict):
            return JSONResponse({"error": "body must be a JSON object"}, status_code=400)
        entity, kind, ids = data.get("entity"), data.get("type"), data.get("ids") or []
        if entity not in bus.entities():
            return JSONResponse({"error": f"{entity} is not CDC-enabled"}, status_code=400)
        if kind not in GAP_TYPES or not isinstance(ids, list) or (kind != "GAP_OVERFLOW" and not ids):
            return JSONResponse({"error": f"type must be one of {sorted(GAP_TYPES)}, with ids"}, status_code=400)
        event = bus.gap(entity, tuple(str(i) for i in ids), kind)
        return JSONResponse({"replayId": event.replay_id})

    async def purge(request: Request) -> Response:
        try:
            seconds = float(json.loads(await request.body())["older_than_seconds"])
        except (ValueError, KeyError, TypeError):
            return JSONResponse({"error": "body must be {\"older_than_seconds\": N}"}, status_code=400)
        return JSONResponse({"purged": bus.purge(seconds)})

    async def disconnect(request: Request) -> Response:
        return JSONResponse({"disconnected": bus.disconnect()})

    async def events(request: Request) -> Response:
        return JSONResponse({"latestReplayId": bus.latest(), "events": [e.summary() for e in bus.events()]})

    return [Route("/_admin/pubsub/gap", gap, methods=["POST"]),
            Route("/_admin/pubsub/purge", purge, methods=["POST"]),
            Route("/_admin/pubsub/disconnect", disconnect, methods=["POST"]),
            Route("/_admin/pubsub/events", events, methods=["GET"])]
