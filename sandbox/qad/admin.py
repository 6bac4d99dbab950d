"""Admin routes (outside the vendor contract) that let tests and demos read, insert and patch records."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from ml_connector.sandbox.qad.auth import TokenBook
from ml_connector.sandbox.qad.entities import SPECS
from ml_connector.sandbox.qad.procurement import post_receipt
from ml_connector.sandbox.qad.receivables import apply_payment
from ml_connector.sandbox.qad.responses import json_object
from ml_connector.sandbox.qad.store import ConflictError, QadStore


@dataclass
class QadAdmin:
    """Admin handlers; ``routes()`` lists them for the sandbox's admin mount."""

    store: QadStore
    tokens: TokenBook

    def routes(self) -> list[BaseRoute]:
        return [
            Route("/_admin/records/{entity}", self.admin_list, methods=["GET"]),
            Route("/_admin/records/{entity}", self.admin_insert, methods=["POST"]),
            Route("/_admin/records/{entity}/{key}", self.admin_get, methods=["GET"]),
            Route("/_admin/records/{entity}/{key}", self.admin_patch, methods=["PATCH"]),
            Route("/_admin/purchaseOrders/{number}/receive", self.admin_receive, methods=["POST"]),
            Route("/_admin/customerInvoices/{number}/pay", self.admin_pay, methods=["POST"]),
            Route("/_admin/tokens/expire", self.admin_expire_tokens, methods=["POST"]),
        ]

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
        changes = await json_object(request)
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
        record = await json_object(request)
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

    async def admin_receive(self, request: Request) -> Response:
        """Post a receipt on a PO line (next free receiver unless ``receiverNumber`` is sent)."""
        return await self._post_on(request, post_receipt)

    async def admin_pay(self, request: Request) -> Response:
        """Apply a payment to an invoice (``amount``; next free paymentNumber unless one is sent)."""
        return await self._post_on(request, apply_payment)

    async def _post_on(self, request: Request,
                       action: Callable[[QadStore, str, Mapping[str, Any]], dict[str, Any]]) -> Response:
        """A document posted against the record ``number`` names: 201, or 404 / 409 / 400 with the reason."""
        fields = await json_object(request)
        if fields is None:
            return JSONResponse({"error": "body must be a JSON object"}, status_code=400)
        try:
            return JSONResponse(action(self.store, request.path_params["number"], fields), status_code=201)
        except KeyError:
            return JSONResponse({"error": "not found"}, status_code=404)
        except ConflictError as exc:
            return JSONResponse({"error": str(exc)}, status_code=409)
        except ValueError as exc:
            return JSONResponse({"error": str(exc)}, status_code=400)

    async def admin_expire_tokens(self, request: Request) -> Response:
        return JSONResponse({"expired": self.tokens.expire_all()})
