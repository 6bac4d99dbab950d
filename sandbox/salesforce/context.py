"""The org a request works on: its store, config, sessions, API usage and open query cursors."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ml_connector.sandbox.core import Clock
from ml_connector.sandbox.salesforce.auth import Tokens
from ml_connector.sandbox.salesforce.limits import ApiUsage
from ml_connector.sandbox.salesforce.store import SalesforceStore


@dataclass
class Org:
    store: SalesforceStore
    config: dict[str, Any]
    tokens: Tokens
    usage: ApiUsage
    clock: Clock
    cursors: dict[str, Any] = field(default_factory=dict)  # query locator -> query.Cursor
    counters: dict[str, int] = field(default_factory=dict)  # auto numbers (OrderNumber, ...)
    dispatch: Any = None  # the sandbox's REST dispatcher (composite subrequests run through it)
    metadata_changed: float = 0.0  # when the org's objects last changed (describe's If-Modified-Since)

    def next_number(self, name: str, start: int = 100) -> int:
        self.counters[name] = self.counters.get(name, start - 1) + 1
        return self.counters[name]
