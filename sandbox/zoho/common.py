"""What every Zoho route module shares: the wire helpers, the error envelope, the org and the request context.

Zoho answers JSON with ``application/json;charset=UTF-8`` (the SDK picks its parser from that header) and
wraps request-level errors in ``{"code", "details", "message", "status": "error"}`` (facts §7).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any

import httpx
from starlette.requests import Request
from starlette.responses import Response

from ml_connector.sandbox.core import Clock

if TYPE_CHECKING:
    from ml_connector.sandbox.zoho.auth import Accounts
    from ml_connector.sandbox.zoho.limits import Limits
    from ml_connector.sandbox.zoho.store import ZohoStore

logger = logging.getLogger(__name__)
JSON_TYPE = "application/json;charset=UTF-8"
ID_BASE = 4_150_868_000_000_000_000  # 19 digits, like real org ids: above 2**53, so clients must keep strings


class ApiError(Exception):
    """A request-level failure; ``app.py`` answers with ``.response``."""

    def __init__(self, response: Response) -> None:
        super().__init__(getattr(response, "body", b"").decode(errors="replace"))
        self.response = response


def json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(json.dumps(body), status_code=status, headers=headers, media_type=JSON_TYPE)


def zoho_error(code: str, message: str, status: int = 400, details: dict[str, Any] | None = None) -> Response:
    """The envelope; all four keys are always there (facts §7)."""
    return json_response({"code": code, "details": details or {}, "message": message, "status": "error"}, status)


async def read_json(request: Request) -> Any:
    """The body as JSON whatever its Content-Type: the SDK sends JSON bodies without one (facts §0)."""
    raw = await request.body()
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise ApiError(zoho_error("INVALID_DATA", "body is not a valid JSON", 400)) from None


def iso(ts: float, offset_minutes: int = 0) -> str:
    """ISO-8601 with offset and without milliseconds, as Zoho writes DateTime (facts §0)."""
    tz = timezone(timedelta(minutes=offset_minutes)) if offset_minutes else UTC
    return datetime.fromtimestamp(int(ts), tz).isoformat()


def parse_iso(text: str) -> float:
    """Inverse of :func:`iso`; an offset is required (Zoho rejects a zone-less DateTime)."""
    parsed = datetime.fromisoformat(text)
    if parsed.tzinfo is None:
        raise ValueError(f"datetime without offset: {text!r}")
    return parsed.timestamp()


def new_id(counter: int) -> str:
    """19-digit string ids, e.g. ``"4150868000000000001"``."""
    return str(ID_BASE + counter)


@dataclass
class Org:
    """One Zoho org (a customer). It lives in one data center and has its own records, credits and tokens."""

    org_id: str
    dc: str
    edition: str
    credits_per_day: int
    concurrency: int
    name: str = ""
    client_id: str = ""
    client_secret: str = ""
    refresh_token: str = ""
    scope: str = "ZohoCRM.modules.ALL ZohoCRM.settings.ALL ZohoCRM.coql.READ ZohoCRM.bulk.ALL " \
                 "ZohoCRM.notifications.ALL ZohoCRM.users.READ ZohoCRM.org.READ"
    user_id: str = ""
    user_email: str = ""
    user_name: str = ""

    @property
    def user_ref(self) -> dict[str, str]:
        """How records name their creator/modifier/owner."""
        return {"name": self.user_name, "id": self.user_id, "email": self.user_email}


async def _post(url: str, body: dict[str, Any]) -> None:
    try:
        async with httpx.AsyncClient(timeout=10) as client:
            await client.post(url, json=body)
    except httpx.HTTPError as exc:
        logger.warning("zoho sandbox: callback to %s failed: %s", url, exc)


@dataclass
class ZohoContext:
    """What every route module gets.

    Each org has its own store: ``stores[org.org_id]``, reached with :meth:`store_for`. ``store`` is the default
    org's (the one a workspace uses), for code that serves only one org. Listen on every store in ``stores``.
    """

    store: ZohoStore
    clock: Clock
    config: dict[str, Any]
    limits: Limits
    accounts: Accounts
    stores: dict[str, ZohoStore] = field(default_factory=dict)
    sender: Callable[[str, dict[str, Any]], Awaitable[None]] = _post

    def store_for(self, org: Org) -> ZohoStore:
        return self.stores.get(org.org_id, self.store)

    def authorize(self, request: Request, scope: str) -> Org:
        """The org of the request's token; raises ApiError (401 INVALID_TOKEN / OAUTH_SCOPE_MISMATCH,
        400 INVALID_HOST for a host that is not an API host of the org's DC)."""
        return self.accounts.authorize(request, scope)

    def charge(self, org: Org, credits: int) -> None:
        """Spend credits; raises ApiError(429 TOO_MANY_REQUESTS) when the rolling-24h credits are spent."""
        self.limits.charge(org, credits)

    def slot(self, org: Org, complex_api: bool = False) -> AbstractAsyncContextManager[None]:
        """One concurrent call of the org (and of its complex-API sub-quota); raises ApiError(429) when full."""
        return self.limits.slot(org, complex_api)

    async def deliver(self, url: str, body: dict[str, Any]) -> None:
        """A callback/notification POST (``sender`` is injectable for tests)."""
        await self.sender(url, body)
