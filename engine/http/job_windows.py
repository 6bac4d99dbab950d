"""Date windows of a bulk read (`read.bulk.windows`): an export API that takes at most N days per job.

A full read of a long history becomes one job per window, oldest first, the last one ending now, so no job asks
for a range the API refuses. The count is checked before the first job: a start decades back is a spec or
setting mistake, refused with the number it would take, never thousands of jobs.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from ml_connector.config.entity import JobWindowsConfig
from ml_connector.http.errors import FatalError


def date_windows(config: JobWindowsConfig, context: Mapping[str, Any], now: float, where: str,
                 max_jobs: int) -> Iterator[dict[str, str]]:
    """``{start, end}`` of each window (formatted), oldest first."""
    end = datetime.fromtimestamp(now, UTC)
    span = timedelta(days=config.days)
    text = str(config.start.evaluate(dict(context)) or "").strip()
    start = _moment(text, where) if text else end - span
    count = max(1, -(-(end - start) // span))
    if count > max_jobs:
        raise FatalError(f"{where}: bulk read of {count} windows of {config.days} days is more than {max_jobs} "
                         "jobs (the connector's limits.max_pages); start later")
    for number in range(count):
        first = start + number * span
        yield {"start": first.strftime(config.format), "end": min(first + span, end).strftime(config.format)}


def _moment(text: str, where: str) -> datetime:
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise FatalError(f"{where}: read.bulk.windows.start is not a date: {text!r}") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
