"""Commerce's REST error body (facts §1.9): ``message`` keeps its placeholders, ``parameters`` fills them.

``errors`` appears only for aggregate exceptions (several input errors at once); ``code`` and ``trace`` are left
out (``code`` is sent only when non-zero, ``trace`` only in developer mode).
"""

from __future__ import annotations

from typing import Any

from starlette.responses import JSONResponse, Response

NO_ROUTE = "Request does not match any route."
NO_ENTITY = "The entity that was requested doesn't exist. Verify the entity and try again."
NO_PRODUCT = "The product that was requested doesn't exist. Verify the product and try again."
NO_SUCH_FIELD = "No such entity with %fieldName = %fieldValue"
REQUIRED = '"%fieldName" is required. Enter and try again.'
NOT_AUTHORIZED = "The consumer isn't authorized to access %resources."


class CommerceError(Exception):
    """A refusal answered as Commerce answers it: HTTP status plus ``{"message", "parameters"[, "errors"]}``."""

    def __init__(self, status: int, message: str, parameters: dict[str, Any] | list[Any] | None = None,
                 errors: list[dict[str, Any]] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.parameters = parameters
        self.errors = errors

    def body(self) -> dict[str, Any]:
        out: dict[str, Any] = {"message": self.message}
        if self.parameters is not None:
            out["parameters"] = self.parameters
        if self.errors:
            out["errors"] = self.errors
        return out

    def response(self) -> Response:
        return JSONResponse(self.body(), status_code=self.status)


def no_route() -> CommerceError:
    """Unknown path, a method the path does not have, or an unknown store code in a PaaS path (Magento's
    PathProcessor keeps an unknown code as part of the path, which then matches no route)."""
    return CommerceError(404, NO_ROUTE)


def not_authorized(resource: str) -> CommerceError:
    """A guest (no, unknown, expired or not-allowed credential) hitting an ACL-protected route (facts §1.5)."""
    return CommerceError(401, NOT_AUTHORIZED, {"resources": resource})


def required(field: str) -> CommerceError:
    return CommerceError(400, REQUIRED, {"fieldName": field})


class GatewayError(Exception):
    """A refusal by the SaaS API gateway in front of Commerce, in the gateway's own body shape (not Commerce's)."""

    def __init__(self, status: int, body: dict[str, Any]) -> None:
        super().__init__(str(body))
        self.status = status
        self.body = body

    def response(self) -> Response:
        return JSONResponse(self.body, status_code=self.status)
