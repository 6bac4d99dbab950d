"""Id maps: which target record each source record became, and the hash of what was last pushed."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from ml_connector.store.database import Database


@dataclass(frozen=True)
class IdMapEntry:
    target_id: str
    payload_hash: str | None


class IdMaps:
    """Repository for ``id_map`` rows (flow, source_key) -> (target_id, payload_hash)."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def get_many(self, flow: str, source_keys: Iterable[str]) -> dict[str, IdMapEntry]:
        keys = list(dict.fromkeys(source_keys))
        if not keys:
            return {}
        rows = self.db.fetchall(
            "SELECT source_key, target_id, payload_hash FROM id_map WHERE flow = ? AND source_key IN "
            "(SELECT unnest(?::VARCHAR[]))", [flow, keys])
        return {key: IdMapEntry(target, digest) for key, target, digest in rows}

    def target_of(self, flow: str, source_key: str) -> str | None:
        row = self.db.fetchone("SELECT target_id FROM id_map WHERE flow = ? AND source_key = ?",
                               [flow, source_key])
        return row[0] if row else None

    def source_of(self, flow: str, target_id: str) -> str | None:
        row = self.db.fetchone("SELECT source_key FROM id_map WHERE flow = ? AND target_id = ? LIMIT 1",
                               [flow, target_id])
        return row[0] if row else None

    def sources_of(self, flow: str, target_ids: Iterable[str]) -> dict[str, list[str]]:
        """Source keys by target id, for many target ids in one query (two keys on one record are a conflict)."""
        ids = list(dict.fromkeys(target_ids))
        if not ids:
            return {}
        rows = self.db.fetchall(
            "SELECT target_id, source_key FROM id_map WHERE flow = ? AND target_id IN (SELECT unnest(?::VARCHAR[])) "
            "ORDER BY source_key", [flow, ids])
        found: dict[str, list[str]] = {}
        for target, key in rows:
            found.setdefault(target, []).append(key)
        return found

    def save(self, flow: str, rows: Iterable[tuple[str, str, str | None]]) -> None:
        """Upsert (source_key, target_id, payload_hash) rows after the target confirmed the writes."""
        latest = {key: (flow, key, target, digest) for key, target, digest in rows}  # one row per key
        batch = list(latest.values())
        self.db.insert_rows(
            "id_map", (("flow", "VARCHAR"), ("source_key", "VARCHAR"), ("target_id", "VARCHAR"),
                       ("payload_hash", "VARCHAR")), batch, computed={"updated_at": "now()"},
            on_conflict="ON CONFLICT (flow, source_key) DO UPDATE SET target_id = excluded.target_id, "
                        "payload_hash = excluded.payload_hash, updated_at = now()")

    def forget(self, flow: str, source_key: str) -> None:
        self.db.execute("DELETE FROM id_map WHERE flow = ? AND source_key = ?", [flow, source_key])

    def forget_hashes(self, flow: str, source_keys: list[str] | None = None) -> list[str]:
        """Make these records (None: all of the flow) look changed, so the next read pushes them again; the target
        ids stay, so the push updates, never duplicates. Returns the keys found."""
        sql = "SELECT source_key, target_id FROM id_map WHERE flow = ?"
        params: list[Any] = [flow]
        if source_keys is not None:
            sql += " AND source_key IN (SELECT unnest(?::VARCHAR[]))"
            params.append(source_keys)
        rows = self.db.fetchall(sql + " ORDER BY source_key", params)
        keys, targets = [key for key, _ in rows], [target for _, target in rows]
        if keys:
            with self.db.transaction():
                self.db.execute("UPDATE id_map SET payload_hash = NULL, updated_at = now() WHERE flow = ? AND "
                                "source_key IN (SELECT unnest(?::VARCHAR[]))", [flow, keys])
                # what the target was last seen holding would let the echo guard skip the push (sync/echo.py)
                self.db.execute("DELETE FROM target_values WHERE flow = ? AND target_id IN "
                                "(SELECT unnest(?::VARCHAR[]))", [flow, targets])
        return keys

    def count(self, flow: str) -> int:
        row = self.db.fetchone("SELECT count(*) FROM id_map WHERE flow = ?", [flow])
        return int(row[0]) if row else 0

    def note_target_values(self, flow: str, rows: Iterable[tuple[str, Mapping[str, Any]]]) -> None:
        """Remember what target records of ``flow`` hold at its field paths: (target_id, {path: value}) rows.

        Written when the reverse flow of a two-way pair reads those records, and when ``flow`` writes them; a
        payload they already hold is an echo (see engine.sync.echo).
        """
        latest = {target: (flow, target, json.dumps(values, sort_keys=True, default=str))
                  for target, values in rows}
        self.db.insert_rows(
            "target_values", (("flow", "VARCHAR"), ("target_id", "VARCHAR"), ("target_values", "JSON")),
            list(latest.values()), computed={"updated_at": "now()"},
            on_conflict="ON CONFLICT (flow, target_id) DO UPDATE SET target_values = excluded.target_values, "
                        "updated_at = now()")

    def target_values(self, flow: str, target_ids: Iterable[str]) -> dict[str, dict[str, Any]]:
        """What each target record of ``flow`` was last known to hold at its field paths (absent: unknown)."""
        ids = list(dict.fromkeys(target_ids))
        if not ids:
            return {}
        rows = self.db.fetchall(
            "SELECT target_id, target_values FROM target_values WHERE flow = ? AND target_id IN "
            "(SELECT unnest(?::VARCHAR[]))", [flow, ids])
        return {target: json.loads(values) for target, values in rows}
