"""How far one incremental read may move a flow's watermark: never past the moment the read began."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime

from ml_connector.http.reader import parse_timestamp

_SECOND = timedelta(seconds=1)


def http_date(value: str | None) -> datetime | None:
    """An HTTP ``Date`` header as an aware datetime (None when absent or unreadable)."""
    if not value:
        return None
    try:
        parsed = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


@dataclass(frozen=True)
class ReadHorizon:
    """When a read began: by the source's clock where its first response is dated, else by ours.

    A record stamped later (a wrong clock, a typo, a date in the future) still syncs, but the watermark must not
    follow it, or every change stamped before that date would be skipped from then on.
    """

    began: datetime
    lookback: timedelta
    by_source: bool

    @classmethod
    def of(cls, ours: datetime, date_header: str | None, lookback_seconds: float) -> ReadHorizon:
        source = http_date(date_header)
        return cls(source or ours, timedelta(seconds=lookback_seconds), source is not None)

    def is_future(self, stamp: str) -> bool:
        """Stamped after the read began (an HTTP date counts whole seconds: within its second is not after)."""
        return self.is_future_at(parse_timestamp(stamp))

    def is_future_at(self, moment: datetime) -> bool:
        """``is_future`` of a stamp already parsed."""
        return moment >= self.began + _SECOND if self.by_source else moment > self.began

    def cap(self, watermark: str) -> str:
        """The watermark, or the moment the read began minus its lookback when that is earlier."""
        ceiling = self.began - self.lookback
        return watermark if parse_timestamp(watermark) <= ceiling else iso(ceiling)

    def note(self, field: str, stamp: str) -> str:
        clock = "the source's clock" if self.by_source else "our clock"
        return f"future-stamped: {field}={stamp} is after the read began ({iso(self.began)} by {clock})"
