"""Error bodies in QAD's shapes: ``submitResult`` for business/API errors, OAuth2 errors for tokens."""

from __future__ import annotations

import json
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse


def submit_error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"submitResult": {"success": False, "errors": [{"message": message}]}},
                        status_code=status)


def oauth_error(status: int, error: str, description: str) -> JSONResponse:
    return JSONResponse({"error": error, "error_description": description}, status_code=status)


def token_error(description: str) -> JSONResponse:
    response = oauth_error(401, "invalid_token", description)
    response.headers["WWW-Authenticate"] = f'Bearer error="invalid_token", error_description="{description}"'
    return response


def method_not_allowed(allowed: list[str]) -> JSONResponse:
    return JSONResponse({"error": "method_not_allowed", "error_description": "Request method not supported"},
                        status_code=405, headers={"Allow": ", ".join(allowed)})


def int_param(request: Request, name: str, default: int) -> int:
    """Integer query parameter (ValueError if malformed)."""
    raw = request.query_params.get(name)
    return default if raw is None or raw == "" else int(raw)


async def json_object(request: Request) -> dict[str, Any] | None:
    """The request body as a JSON object, or None when it is not one."""
    try:
        body = json.loads(await request.body())
    except (ValueError, UnicodeDecodeError):
        return None
    return body if isinstance(body, dict) else None
