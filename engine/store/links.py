"""A flow's links as a whole: what a complete full read is compared with to find the records deleted at the source."""

from __future__ import annotations

from collections.abc import Iterable

from ml_connector.store.database import Database


class Links:
    """Reads every id-map link of a flow and removes links; single links live in ``IdMaps``."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def all(self, flow: str) -> dict[str, str]:
        """Target id by source key, for every record of the flow that is linked."""
        rows = self.db.fetchall("SELECT source_key, target_id FROM id_map WHERE flow = ?", [flow])
        return {key: target for key, target in rows}

    def unlink(self, flow: str, source_keys: Iterable[str]) -> None:
        """Forget these records' links and hashes: the flow no longer knows a target record for them."""
        keys = list(source_keys)
        self.db.fingerprints.forget(flow, keys)
        if keys:
            self.db.execute("DELETE FROM id_map WHERE flow = ? AND source_key IN (SELECT unnest(?::VARCHAR[]))",
                            [flow, keys])
