"""What a read's body must be: JSON with a list at the records path. Anything else is an error, never "no records".

An HTML maintenance page, a truncated body or a renamed field would otherwise read as an empty list: a source read
would report "ok, read 0" and a target list read would match nothing and create duplicates.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import httpx

from ml_connector.config import Expr
from ml_connector.http.redact import REDACTOR


class BodyMismatch(Exception):
    """The body is not what the spec says it is (the message says how)."""


class BodyTooLarge(Exception):
    """The body of a ``status`` answer is larger than the connector accepts."""

    def __init__(self, limit: int, status: int) -> None:
        super().__init__(f"the body is larger than {limit} bytes (the connector's limits.max_response_bytes)")
        self.status = status


async def receive(http: httpx.AsyncClient, request: httpx.Request, limit: int) -> tuple[httpx.Response, bytes]:
    """The response to ``request`` and its body (decompressed), refused as soon as it is known to exceed ``limit``.

    The body streams in: a 200 MB answer (or a small gzip bomb) is cut off at the limit, never held whole.
    """
    response = await http.send(request, stream=True)
    try:
        declared = response.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > limit:
            raise BodyTooLarge(limit, response.status_code)
        chunks: list[bytes] = []
        size = 0
        async for chunk in response.aiter_bytes():
            size += len(chunk)
            if size > limit:
                raise BodyTooLarge(limit, response.status_code)
            chunks.append(chunk)
    finally:
        await response.aclose()
    return response, b"".join(chunks)


@dataclass(frozen=True)
class RecordsAt:
    """Where a read finds its records: a JMESPath into a JSON body.

    ``single``: one object at the path is one record (a search endpoint that answers its only hit bare).
    JSON ``null`` at the path counts as missing; a spec whose API sends null for "none" says so in the path
    (``data || `[]```).
    """

    path: Expr
    single: bool = False
    none_statuses: frozenset[int] = frozenset()  # statuses whose empty body means "no records" (204, 304)

    def none_left(self, status: int, body: Any) -> bool:
        """Whether this answer says, by its status and an empty body, that there are no records."""
        return status in self.none_statuses and body in (None, "")

    def of(self, body: Any) -> list[Any]:
        """The records in ``body``; raises BodyMismatch when the body has none to give (an empty list is fine)."""
        if not isinstance(body, (dict, list)):
            shown = "empty" if body is None else repr(REDACTOR(str(body))[:80])
            raise BodyMismatch(f"the body is not JSON ({shown})")
        found = self.path.evaluate(body)
        if isinstance(found, list):
            return found
        if found is None:
            raise BodyMismatch(f"records path {self.path.source!r} is missing")
        if self.single and isinstance(found, dict):
            return [found]
        raise BodyMismatch(f"records path {self.path.source!r} is not a list (a {type(found).__name__})")
