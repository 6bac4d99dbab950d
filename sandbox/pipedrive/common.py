"""Small shared pieces of the Pipedrive sandbox: errors, timestamps, cursors, number checks."""

from __future__ import annotations

import base64
import binascii
import json
import re
import time
from datetime import UTC, datetime
from typing import Any

ERROR_INFO = "Please check developers.pipedrive.com"
SCHEMA_CODE = "ERR_SCHEMA_VALIDATION_FAILED"
_RFC3339 = re.compile(r"^(\d{4})-(\d\d)-(\d\d)T(\d\d):(\d\d):(\d\d)(Z|[+-]\d\d:\d\d)$")
_TIME = re.compile(r"^([01]\d|2[0-3]):[0-5]\d:[0-5]\d$")


class ApiError(Exception):
    """An error answer: HTTP status plus the JSON body Pipedrive would send."""

    def __init__(self, status: int, body: dict[str, Any], headers: dict[str, str] | None = None) -> None:
        super().__init__(body.get("error") or body.get("message"))
        self.status = status
        self.body = body
        self.headers = headers or {}


def validation_error(key: str, message: str) -> ApiError:
    """The v2 schema-validation failure (400, ``ERR_SCHEMA_VALIDATION_FAILED``)."""
    return ApiError(
        400, {"success": False, "error": f"Validation failed: {key}: {message}", "code": SCHEMA_CODE}
    )


def not_allowed(key: str) -> ApiError:
    """Unknown parameter in a v2 body: the whole write fails."""
    return validation_error(key, f"Parameter '{key}' is not allowed for this request")


def not_found(message: str = "Entity was not found") -> ApiError:
    """The v2 404 body (spec example)."""
    return ApiError(
        404,
        {"success": False, "error": message, "error_info": ERROR_INFO, "data": None, "additional_data": None},
    )


def v1_error(status: int, message: str) -> ApiError:
    """A v1-style error envelope."""
    return ApiError(
        status,
        {"success": False, "error": message, "error_info": ERROR_INFO, "data": None, "additional_data": None},
    )


def is_int(value: Any) -> bool:
    """JSON integer (booleans excluded, no coercion from strings or floats)."""
    return isinstance(value, int) and not isinstance(value, bool)


def is_num(value: Any) -> bool:
    """JSON number (booleans excluded, no coercion from strings)."""
    return isinstance(value, int | float) and not isinstance(value, bool)


def num_str(value: Any) -> str:
    """A number as a search key: ``500.0`` -> ``"500"``."""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def iso(ts: float) -> str:
    """RFC 3339 UTC, whole seconds, ``Z`` suffix (the v2 wire format)."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))


def v1_time(value: str) -> str:
    """RFC 3339 wire time -> the v1 ``YYYY-MM-DD HH:MM:SS`` format."""
    return value[:10] + " " + value[11:19]


def parse_datetime(value: Any) -> str | None:
    """Normalise an RFC 3339 whole-second timestamp to UTC ``...Z``; ``None`` when invalid."""
    if not isinstance(value, str):
        return None
    match = _RFC3339.match(value)
    if not match:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def is_time(value: Any) -> bool:
    """``HH:MM:SS``."""
    return isinstance(value, str) and bool(_TIME.match(value))


def encode_cursor(payload: dict[str, Any]) -> str:
    """Opaque cursor: unpadded base64url of compact JSON (the spec example's encoding)."""
    raw = json.dumps(payload, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> dict[str, Any]:
    """Inverse of :func:`encode_cursor`; a malformed cursor is a 400."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        payload = json.loads(raw)
    except (binascii.Error, ValueError) as exc:
        raise validation_error("cursor", "Parameter 'cursor' is not a valid cursor") from exc
    if not isinstance(payload, dict):
        raise validation_error("cursor", "Parameter 'cursor' is not a valid cursor")
    return payload


def csv_ints(value: str, key: str, maximum: int = 100) -> list[int]:
    """Parse a comma list of ids (``ids=1,2,3``), at most ``maximum`` of them."""
    parts = [p.strip() for p in value.split(",") if p.strip()]
    if not parts or not all(p.isdigit() for p in parts):
        raise validation_error(key, f"Parameter '{key}' must be a comma-separated list of integers")
    if len(parts) > maximum:
        raise validation_error(key, f"Parameter '{key}' must contain at most {maximum} items")
    return [int(p) for p in parts]


def query_int(
    params: Any, key: str, default: int | None = None, *, lo: int = 1, hi: int | None = None
) -> int | None:
    """An integer query parameter with bounds; wrong values are a 400."""
    raw = params.get(key)
    if raw is None or raw == "":
        return default
    if not re.fullmatch(r"-?\d+", raw):
        raise validation_error(key, f"Parameter '{key}' must be integer")
    value = int(raw)
    if value < lo or (hi is not None and value > hi):
        bound = f"between {lo} and {hi}" if hi is not None else f"at least {lo}"
        raise validation_error(key, f"Parameter '{key}' must be {bound}")
    return value


def query_bool(params: Any, key: str) -> bool:
    """``true``/``1`` -> True; anything else false (400 for garbage)."""
    raw = params.get(key)
    if raw is None or raw == "":
        return False
    if raw.lower() in {"true", "1"}:
        return True
    if raw.lower() in {"false", "0"}:
        return False
    raise validation_error(key, f"Parameter '{key}' must be boolean")
