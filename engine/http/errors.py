"""What a call can end in, besides success."""

from __future__ import annotations

from typing import Any

from ml_connector.errors import MlConnectorError


class ConnectorError(MlConnectorError):
    """Base of every error raised by the connector runtime."""


class RecordError(ConnectorError):
    """The API rejected this record (or this batch): park it, go on with the others."""

    def __init__(self, message: str, status: int | None = None, body: Any = None) -> None:
        super().__init__(message)
        self.status = status
        self.body = body


class FatalError(ConnectorError):
    """The connection cannot go on (bad configuration, exhausted retries, permissions)."""


class RequestError(FatalError):
    """The API refused the request itself (unknown object type, wrong path), not a record: fail once, never split."""


class ReauthorizeError(FatalError):
    """The grant was revoked or is invalid: a person must authorise the connection again."""


class TransientError(ConnectorError):
    """Worth retrying after ``wait`` seconds (None: exponential backoff)."""

    def __init__(self, message: str, wait: float | None = None) -> None:
        super().__init__(message)
        self.wait = wait


class RateLimited(TransientError):
    """The API asked us to slow down."""


class NeedsReauth(ConnectorError):
    """The API refused the credentials; refresh them and try once more."""
