"""Filtered records a flow has already said so of: each got its own audit row once, so filtered again with nothing
new it is only counted into the flow run's summary row (store/audit.py), and the state does not grow by every
filtered record on every full run. A record processed otherwise (written, unchanged, parked) is forgotten, so its
next filtering is news again; a record filtered for another reason (``reason``: the audit note) is news too."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import UTC, datetime, timedelta

from ml_connector.store.database import Database
from ml_connector.store.fingerprints import Fingerprints
from ml_connector.store.key_range import key_range

PLAIN = ""  # the reason of a record the flow's `filter:` left out (no audit note)


def cutoff_of(older_than_days: float) -> datetime:
    """The moment (UTC, as the state stores it) before which rows are older than that many days."""
    return datetime.now(UTC).replace(tzinfo=None) - timedelta(days=older_than_days)


class Filtered:
    """Repository for ``filtered`` rows (flow, source_key) -> reason.

    Most flows never filter: whether a flow has any row is asked once per flow run and kept (``release`` drops
    it), so their pages cost no query here.
    """

    def __init__(self, db: Database) -> None:
        self.db = db
        self._any: dict[str, bool] = {}  # per flow running: whether it may have rows
        self._loaded: dict[str, Fingerprints | None] = {}  # per flow running: its rows as fingerprints

    def has_any(self, flow: str) -> bool:
        if flow not in self._any:
            self._any[flow] = self.db.fetchone("SELECT 1 FROM filtered WHERE flow = ? LIMIT 1", [flow]) is not None
        return self._any[flow]

    def reasons(self, flow: str, keys: Iterable[str]) -> dict[str, str]:
        """The reason each of these keys is remembered filtered for (absent: not remembered); one query at most."""
        wanted = list(dict.fromkeys(keys))
        if not wanted or not self.has_any(flow):
            return {}
        # bounded like IdMaps.get_many: a page's keys are usually near each other, the range skips row groups
        range_sql, bounds = key_range(wanted)
        rows = self.db.fetchall(
            f"SELECT source_key, reason FROM filtered WHERE flow = ? {range_sql}"
            "AND source_key IN (SELECT unnest(?::VARCHAR[]))", [flow, *bounds, wanted])
        return dict(rows)

    def recall(self, flow: str, filtered: Iterable[str], processed: Iterable[str],
               reason: str = PLAIN) -> tuple[set[str], list[str]]:
        """Of one page: the ``filtered`` keys remembered for this reason (filtered again, nothing new), and the
        ``processed`` keys remembered at all (processed otherwise now: to ``forget``).

        The flow's rows are loaded once per flow run as fingerprints (store/fingerprints.py, 16 bytes a key): a page
        of records filtered again as before, or never filtered, costs no query; the others, one query at most."""
        wanted, done = list(filtered), list(processed)
        if not (wanted or done) or not self.has_any(flow):
            return set(), []
        loaded = self._fingerprints(flow)
        if loaded is None:
            reasons = self.reasons(flow, [*wanted, *done])
            return {key for key in wanted if reasons.get(key) == reason}, [key for key in done if key in reasons]
        again = {key for key in wanted if loaded.same(key, reason)}
        ask = [key for key in [*wanted, *done] if key not in again and loaded.may_be_linked(key)]
        reasons = self.reasons(flow, ask) if ask else {}
        again.update(key for key in wanted if reasons.get(key) == reason)
        return again, [key for key in done if key in reasons]

    def _fingerprints(self, flow: str) -> Fingerprints | None:
        if flow not in self._loaded:
            self._loaded[flow] = Fingerprints.load(self.db, flow, table="filtered", value="reason")
        return self._loaded[flow]

    def known(self, flow: str, keys: Iterable[str], reason: str = PLAIN) -> set[str]:
        """Which of these keys are remembered as filtered for this reason."""
        return {key for key, why in self.reasons(flow, keys).items() if why == reason}

    def remember(self, flow: str, keys: Iterable[str], reason: str = PLAIN) -> None:
        self.remember_each(flow, dict.fromkeys(keys, reason))

    def remember_each(self, flow: str, reasons: Mapping[str, str]) -> None:
        """Remember these keys as filtered, each for its reason (a row said so in the audit)."""
        if not reasons:
            return
        self._any[flow] = True
        self._touch(flow, reasons)
        self.db.insert_rows("filtered", (("flow", "VARCHAR"), ("source_key", "VARCHAR"), ("reason", "VARCHAR")),
                            [(flow, key, why) for key, why in reasons.items()], computed={"filtered_at": "now()"},
                            on_conflict="ON CONFLICT (flow, source_key) DO UPDATE SET reason = excluded.reason, "
                                        "filtered_at = now()")

    def forget(self, flow: str, keys: Iterable[str]) -> None:
        """These keys were processed otherwise: filtering them again is news (pass only keys known)."""
        gone = list(dict.fromkeys(keys))
        self._touch(flow, gone)
        if gone:
            self.db.execute("DELETE FROM filtered WHERE flow = ? AND source_key IN (SELECT unnest(?::VARCHAR[]))",
                            [flow, gone])

    def prune(self, older_than_days: float) -> None:
        """Forget records remembered before then: their own audit rows are pruned with them, so the next filtering
        of one says so again (``audit --key`` keeps finding it)."""
        self.db.execute("DELETE FROM filtered WHERE filtered_at < ?", [cutoff_of(older_than_days)])
        self._any.clear()
        self._loaded.clear()

    def _touch(self, flow: str, keys: Iterable[str]) -> None:
        """Before a write: the loaded fingerprints say "ask" for these keys from now on (store/fingerprints.py)."""
        loaded = self._loaded.get(flow)
        if loaded is not None:
            loaded.forget(keys)

    def release(self, flow: str) -> None:
        """The flow run is over: the next one asks again."""
        self._any.pop(flow, None)
        self._loaded.pop(flow, None)
