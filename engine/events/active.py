"""A registered channel as the callback receiver needs it: kept in memory, refreshed after each maintenance.

The receiver never opens the state database (another process may hold it); serve hands it this list instead.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from ml_connector.config.channel import CallbackConfig
from ml_connector.events.signature import SignatureCheck


@dataclass(frozen=True)
class ActiveChannel:
    """A live channel: where its callbacks arrive and the secrets they must carry."""

    connection: str
    channel: str
    entity: str
    channel_id: str
    token: str = field(repr=False)  # a secret: never in a repr, log or message
    expires_at: datetime
    callback: CallbackConfig
    signatures: tuple[SignatureCheck, ...] = ()  # the callback's signature items, keys loaded (events/signature.py)

    @property
    def endpoint(self) -> str:
        """The callback path of this channel: one endpoint per (connection, channel, entity)."""
        return f"/hooks/{self.connection}/{self.channel}/{self.entity}"
