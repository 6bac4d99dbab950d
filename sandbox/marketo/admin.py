"""Admin routes of the Marketo sandbox (no auth, no limits, not logged; for tests and the demo):

  GET    /_admin/records/{obj}          -> {"count": n, "records": [... id order]}
  GET    /_admin/records/{obj}/{key}    -> the record (404 if unknown)
  POST   /_admin/records/{obj}          -> insert without validation ("created in the Marketo UI"), 201 + record
  PATCH  /_admin/records/{obj}/{key}    -> merge ("edited in the UI"; lead changes reach the activity log)
                                           -> {"record": ..., "changed": [fields]}
  DELETE /_admin/records/{obj}/{key}    -> delete (a lead's deletion reaches the activity log)
  GET    /_admin/usage                  -> {"days": {"YYYY-MM-DD": calls}, "today", "window", "in_flight"}
  POST   /_admin/usage/reset            -> clears the call counts (daily quota and rate window)
  POST   /_admin/tokens/expire          -> every access token expires now (602), {"expired": n}
  POST   /_admin/tokens/revoke          -> every access token is forgotten (601)
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from ml_connector.sandbox.marketo.store import OBJECTS

if TYPE_CHECKING:
    from ml_connector.sandbox.marketo.app import MarketoSandbox

UI_REASON = "Marketo UI"


def routes(sandbox: MarketoSandbox) -> list[BaseRoute]:
    store = sandbox.store

    def _obj(request: Request) -> str:
        obj = request.path_params["obj"]
        if obj not in OBJECTS:
            raise KeyError(obj)
        return str(obj)

    async def list_records(request: Request) -> Response:
        try:
            obj = _obj(request)
        except KeyError:
            return JSONResponse({"error": f"unknown object; known: {list(OBJECTS)}"}, 404)
        records = store.records(obj)
        return JSONResponse({"count": len(records), "records": records})

    async def get_record(request: Request) -> Response:
        try:
            record = store.get(_obj(request), request.path_params["key"])
        except KeyError:
            record = None
        return JSONResponse(record) if record is not None else JSONResponse({"error": "not found"}, 404)

    async def insert(request: Request) -> Response:
        try:
            obj = _obj(request)
        except KeyError:
            return JSONResponse({"error": "unknown object"}, 404)
        values = await request.json()
        if not isinstance(values, dict):
            return JSONResponse({"error": "the body must be a JSON object"}, 400)
        return JSONResponse(store.insert(obj, values, reason=UI_REASON), 201)

    async def patch(request: Request) -> Response:
        try:
            obj = _obj(request)
        except KeyError:
            return JSONResponse({"error": "unknown object"}, 404)
        key = request.path_params["key"]
        values = await request.json()
        if store.get(obj, key) is None or not isinstance(values, dict):
            return JSONResponse({"error": "not found or body not an object"}, 404)
        record, changed = store.update(obj, key, values, reason=UI_REASON)
        return JSONResponse({"record": record, "changed": changed})

    async def delete(request: Request) -> Response:
        try:
            deleted = store.delete(_obj(request), request.path_params["key"], reason=UI_REASON)
        except KeyError:
            deleted = False
        return JSONResponse({"deleted": True}) if deleted else JSONResponse({"error": "not found"}, 404)

    async def usage(request: Request) -> Response:
        return JSONResponse({"days": sandbox.limits.usage(), **sandbox.limits.state()})

    async def usage_reset(request: Request) -> Response:
        sandbox.limits.reset()
        return JSONResponse({"ok": True})

    async def expire(request: Request) -> Response:
        return JSONResponse({"expired": sandbox.identity.expire_all()})

    async def revoke(request: Request) -> Response:
        sandbox.identity.revoke_all()
        return JSONResponse({"ok": True})

    return [
        Route("/_admin/records/{obj}", list_records, methods=["GET"]),
        Route("/_admin/records/{obj}", insert, methods=["POST"]),
        Route("/_admin/records/{obj}/{key}", get_record, methods=["GET"]),
        Route("/_admin/records/{obj}/{key}", patch, methods=["PATCH"]),
        Route("/_admin/records/{obj}/{key}", delete, methods=["DELETE"]),
        Route("/_admin/usage", usage, methods=["GET"]),
        Route("/_admin/usage/reset", usage_reset, methods=["POST"]),
        Route("/_admin/tokens/expire", expire, methods=["POST"]),
        Route("/_admin/tokens/revoke", revoke, methods=["POST"]),
    ]
