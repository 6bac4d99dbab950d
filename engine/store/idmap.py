"""Id maps: which target record each source record became, and the hash of what was last pushed."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from ml_connector.store.database import Database
from ml_connector.store.fingerprints import Fingerprints
from ml_connector.store.key_range import key_range


@dataclass(frozen=True)
class IdMapEntry:
    target_id: str
    payload_hash: str | None


class IdMaps:
    """Repository for ``id_map`` rows (flow, source_key) -> (target_id, payload_hash)."""

    FINGERPRINT_MIN = 20_000  # links from which a flow run diffs against fingerprints (below, a query is as fast)
    # pages a flow run diffs with a query before it loads fingerprints: loading scans the map once, about what 8 to 15
    # page queries cost, so a short incremental run never pays more than about twice what it did
    LOAD_AFTER_PAGES = 8

    def __init__(self, db: Database) -> None:
        self.db = db

    def diff(self, flow: str, digests: Mapping[str, str], also: Iterable[str] = ()) -> tuple[set[str],
                                                                                             dict[str, IdMapEntry]]:
        """Which records are stored with exactly this hash (unchanged), and the entries of the others (and of
        ``also``) that the map holds: a page of unchanged records costs no query once the flow's fingerprints are
        loaded (store/fingerprints.py: loaded at the flow run's page ``LOAD_AFTER_PAGES`` + 1, dropped by
        ``release``)."""
        fingerprints = self.db.fingerprints
        if flow not in fingerprints.flows:
            fingerprints.pages[flow] = pages = fingerprints.pages.get(flow, 0) + 1
            if pages > self.LOAD_AFTER_PAGES:
                self.load_fingerprints(flow)
        loaded = fingerprints.flows.get(flow)
        same = {key for key, digest in digests.items() if loaded.same(key, digest)} if loaded is not None else set()
        wanted = set(also)
        entries = self.get_many(flow, [key for key in digests if key not in same or key in wanted]
                                + [key for key in wanted if key not in digests])
        same.update(key for key, entry in entries.items() if key in digests and entry.payload_hash == digests[key])
        return same, {key: entry for key, entry in entries.items() if key not in same or key in wanted}

    def load_fingerprints(self, flow: str) -> None:
        """Load the flow's fingerprints now, when its map is large enough to gain from them: at once for a full read,
        which reads every page (its first pages' lookups each scanned a map whose keys the source lists in no
        particular order, filling the database's cache), else after ``LOAD_AFTER_PAGES`` pages."""
        self.db.fingerprints.flows[flow] = (Fingerprints.load(self.db, flow) if self.count(flow) >= self.FINGERPRINT_MIN
                                            else None)

    def release(self, flow: str) -> None:
        """The flow run is over: its fingerprints go (the next run loads what the map holds then)."""
        self.db.fingerprints.flows.pop(flow, None)
        self.db.fingerprints.pages.pop(flow, None)

    def get_many(self, flow: str, source_keys: Iterable[str]) -> dict[str, IdMapEntry]:
        keys = list(dict.fromkeys(source_keys))
        loaded = self.db.fingerprints.flows.get(flow)
        if loaded is not None:  # keys the map certainly does not hold are not asked for
            keys = [key for key in keys if loaded.may_be_linked(key)]
        if not keys:
            return {}
        # the range lets the database skip the row groups outside it: a page's keys are usually near each other in
        # the map (written in the order the source lists them), so a lookup costs about the same at 10k or 1M links
        range_sql, bounds = key_range(keys)
        rows = self.db.fetchall(
            f"SELECT source_key, target_id, payload_hash FROM id_map WHERE flow = ? {range_sql}"
            "AND source_key IN (SELECT unnest(?::VARCHAR[]))", [flow, *bounds, keys])
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
        self.db.fingerprints.forget(flow, latest)  # before the write: a rolled-back write must not make them lie
        self.db.insert_rows(
            "id_map", (("flow", "VARCHAR"), ("source_key", "VARCHAR"), ("target_id", "VARCHAR"),
                       ("payload_hash", "VARCHAR")), batch, computed={"updated_at": "now()"},
            on_conflict="ON CONFLICT (flow, source_key) DO UPDATE SET target_id = excluded.target_id, "
                        "payload_hash = excluded.payload_hash, updated_at = now()")

    def forget(self, flow: str, source_key: str) -> None:
        self.db.fingerprints.forget(flow, [source_key])
        self.db.execute("DELETE FROM id_map WHERE flow = ? AND source_key = ?", [flow, source_key])

    def forget_hashes(self, flow: str, source_keys: list[str] | None = None) -> list[str]:
        """Make these records (None: all of the flow) look changed, so the next read pushes them again; the target
        ids stay, so the push updates, never duplicates. Returns the keys found."""
        sql = "SELECT source_key, target_id FROM id_map WHERE flow = ?"
        params: list[Any] = [flow]
        if source_keys is not None:
            sql += " AND source_key IN (SELECT unnest(?::VARCHAR[]))"
            params.append(source_keys)
        with self.db.roomy():  # maybe every link of the flow
            rows = self.db.fetchall(sql + " ORDER BY source_key", params)
        keys, targets = [key for key, _ in rows], [target for _, target in rows]
        self.db.fingerprints.forget(flow, keys)
        if keys:
            with self.db.roomy(), self.db.transaction():
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
