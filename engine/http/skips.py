"""A flow that cannot apply to this account (an entity the account does not have): skipped, not failed."""

from __future__ import annotations

from ml_connector.http.errors import ConnectorError


class FlowSkipped(ConnectorError):
    """A response rule (`do: skip_flow`) says the flow has nothing to do here: it ends as "skipped" with the rule's
    message, its watermark untouched, and the run goes on; not an error (the exit code does not count it)."""
