"""A longer allowance the API reports in a header (daily API calls): once it is spent, no new call starts.

Unlike a rate window, such an allowance does not come back within a run, so waiting is pointless: the flow in
progress stops cleanly (what the targets confirmed is recorded, its watermark stays), later flows are not started,
and the next run resumes. A reserve keeps part of the allowance for the API's other users.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from ml_connector.config.connector import QuotaConfig
from ml_connector.http.errors import FatalError

RESUMES = "no new call is started, the next run resumes"


class QuotaExhausted(FatalError):
    """The connection's allowance is spent (or down to its reserve): stop starting calls; never retried."""


class UsageLimit:
    """Reads ``used`` and ``limit`` from a usage header after each answer and says when to stop."""

    def __init__(self, header: str, pattern: str, reserve: float, reserve_calls: int | None) -> None:
        self.header = header
        try:
            self.pattern = re.compile(pattern)
        except re.error as exc:
            raise FatalError(f"usage_pattern {pattern!r} is not a regular expression: {exc}") from None
        if not {"used", "limit"} <= set(self.pattern.groupindex):
            raise FatalError(f"usage_pattern {pattern!r} needs the named groups `used` and `limit`")
        self.reserve = reserve
        self.reserve_calls = reserve_calls
        self.spent: str | None = None  # why no new call may start, once the allowance is spent

    @classmethod
    def of(cls, config: QuotaConfig) -> UsageLimit | None:
        """The pool's usage limit, when it declares a usage header."""
        if not config.usage_header or not config.usage_pattern:
            return None
        return cls(config.usage_header, config.usage_pattern, config.reserve, config.reserve_calls)

    def observe(self, headers: Mapping[str, str]) -> None:
        """Learn from an answer's headers; an absent or unreadable header says nothing."""
        value = headers.get(self.header)
        found = self.pattern.search(value) if value else None
        if found is None:
            return
        try:
            used, limit = int(found["used"]), int(found["limit"])
        except (TypeError, ValueError):
            return
        reserve = self.reserve_calls if self.reserve_calls is not None else round(limit * self.reserve)
        if used >= limit - reserve:
            self.spent = f"API usage limit reached, {used} of {limit} used (reserve {reserve})"
