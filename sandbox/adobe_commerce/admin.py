"""Admin routes of the Commerce sandbox (outside the vendor contract; mounted under ``/_admin``).

  POST  /_admin/orders                  {store?, customer_id | email, items: [{sku, qty, price?}]} -> 201 order
  POST  /_admin/orders/{id}/invoice     {items?: [{sku | order_item_id, qty}]}              -> 201 invoice
  POST  /_admin/orders/{id}/refund      {invoice_id, items?, adjustment?}                   -> 201 credit memo
  POST  /_admin/orders/{id}/ship        {}                                                  -> 200 order
  POST  /_admin/customers | companies | products            -> 201 record
  PATCH /_admin/customers/{id} | companies/{id} | products/{sku} -> 200 record
  GET   /_admin/records/{entity}?store=all                  -> {"count", "records"}
  GET   /_admin/records/{entity}/{key} ; PATCH (top-level fields, e.g. an order's status)
  GET   /_admin/webhooks/public_key (PEM text) ; GET /_admin/webhooks/deliveries -> {"deliveries": [...]}

A business refusal answers 400 (an unknown record 404) in Commerce's error body ``{"message", "parameters"}``.
An order is placed on a worker thread, so the synchronous webhook it triggers can be served by this process.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, Protocol

import anyio.to_thread
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import BaseRoute, Route

from ml_connector.sandbox.adobe_commerce.store import ENTITIES, NOT_FOUND, CommerceStore, StoreError
from ml_connector.sandbox.adobe_commerce.webhooks import WebhookSender


class CommerceSandboxLike(Protocol):
    store: CommerceStore
    config: dict[str, Any]


class _BadRequest(Exception):
    pass


def _refusal(error: StoreError) -> Response:
    return JSONResponse(error.body(), status_code=404 if error.message == NOT_FOUND else 400)


async def _body(request: Request) -> dict[str, Any]:
    try:
        data = await request.json()
    except ValueError:
        raise _BadRequest("the body must be JSON") from None
    if not isinstance(data, dict):
        raise _BadRequest("the body must be a JSON object")
    return data


def _guarded(handler: Callable[[Request], Awaitable[Response]]) -> Callable[[Request], Awaitable[Response]]:
    async def run(request: Request) -> Response:
        try:
            return await handler(request)
        except StoreError as error:
            return _refusal(error)
        except _BadRequest as error:
            return JSONResponse({"message": str(error), "parameters": []}, status_code=400)
        except (KeyError, TypeError, ValueError) as error:
            return JSONResponse({"message": f"invalid admin request: {error}", "parameters": []}, status_code=400)
    return run


def _int(value: str) -> int:
    if not value.isdigit():
        raise StoreError(NOT_FOUND)
    return int(value)


def admin_routes(sandbox: CommerceSandboxLike) -> list[BaseRoute]:
    """The admin routes; also registers the order-placement webhook on ``sandbox.store`` (which must exist).

    ``sandbox.config`` is read at each request and each delivery (it may be set after this call, and PATCHed)."""
    webhooks = WebhookSender(lambda: getattr(sandbox, "config", None) or {})
    sandbox.store.listen(webhooks)

    async def place(request: Request) -> Response:
        data = await _body(request)
        customer_id = data.get("customer_id")
        order = await anyio.to_thread.run_sync(
            sandbox.store.place_order, str(data.get("store", "default")),
            None if customer_id is None else int(customer_id), str(data.get("email") or ""), list(data["items"]))
        return JSONResponse(order, status_code=201)

    async def invoice(request: Request) -> Response:
        data = await _body(request)
        doc = sandbox.store.invoice_order(_int(request.path_params["id"]), data.get("items"))
        return JSONResponse(doc, status_code=201)

    async def refund(request: Request) -> Response:
        data = await _body(request)
        doc = sandbox.store.refund(_int(request.path_params["id"]), int(data["invoice_id"]), data.get("items"),
                                   float(data.get("adjustment", 0)))
        return JSONResponse(doc, status_code=201)

    async def ship(request: Request) -> Response:
        return JSONResponse(sandbox.store.ship_order(_int(request.path_params["id"])))

    def creator(upsert: Callable[[dict[str, Any]], dict[str, Any]]) -> Callable[[Request], Awaitable[Response]]:
        async def create(request: Request) -> Response:
            data = await _body(request)
            data.pop("id", None)
            return JSONResponse(upsert(data), status_code=201)
        return create

    def patcher(entity: str) -> Callable[[Request], Awaitable[Response]]:
        async def patch(request: Request) -> Response:
            key = request.path_params["key"]
            if sandbox.store.get(entity, key) is None:
                raise StoreError(NOT_FOUND)
            return JSONResponse(sandbox.store.update(entity, key, await _body(request)))
        return patch

    async def list_records(request: Request) -> Response:
        entity = _entity(request)
        records = sandbox.store.records(entity, request.query_params.get("store", "all"))
        return JSONResponse({"count": len(records), "records": records})

    async def get_record(request: Request) -> Response:
        record = sandbox.store.get(_entity(request), request.path_params["key"])
        if record is None:
            raise StoreError(NOT_FOUND)
        return JSONResponse(record)

    async def patch_record(request: Request) -> Response:
        return await patcher(_entity(request))(request)

    async def public_key(request: Request) -> Response:
        return PlainTextResponse(webhooks.public_key_pem(), media_type="application/x-pem-file")

    async def deliveries(request: Request) -> Response:
        return JSONResponse({"deliveries": webhooks.deliveries()})

    routes = [
        ("/_admin/orders", place, "POST"),
        ("/_admin/orders/{id}/invoice", invoice, "POST"),
        ("/_admin/orders/{id}/refund", refund, "POST"),
        ("/_admin/orders/{id}/ship", ship, "POST"),
        ("/_admin/customers", creator(sandbox.store.upsert_customer), "POST"),
        ("/_admin/customers/{key}", patcher("customers"), "PATCH"),
        ("/_admin/companies", creator(sandbox.store.upsert_company), "POST"),
        ("/_admin/companies/{key}", patcher("companies"), "PATCH"),
        ("/_admin/products", creator(sandbox.store.upsert_product), "POST"),
        ("/_admin/products/{key:path}", patcher("products"), "PATCH"),
        ("/_admin/records/{entity}", list_records, "GET"),
        ("/_admin/records/{entity}/{key:path}", get_record, "GET"),
        ("/_admin/records/{entity}/{key:path}", patch_record, "PATCH"),
        ("/_admin/webhooks/public_key", public_key, "GET"),
        ("/_admin/webhooks/deliveries", deliveries, "GET"),
    ]
    return [Route(path, _guarded(handler), methods=[method]) for path, handler, method in routes]


def _entity(request: Request) -> str:
    entity = request.path_params["entity"]
    if entity not in ENTITIES:
        raise StoreError(NOT_FOUND)
    return entity
