"""Deletes: a record deleted at the source ends its link (`on_delete: clear`) or its target record (`delete`).

A source tells deletions in up to three ways (its entity's `deletes`): a flag in the records read, a
deleted-records endpoint read after the flow's read, or absence from a full read that completed. Each delete of a
linked record leaves one audit row (action `delete` or `clear`); one that the target refused, or whose outcome is
unknown, is parked like a record (as ``{"$deleted": key}``) and tried again, never counted as done. A key never
linked has nothing to delete: it is filtered.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from ml_connector.config import MappingConfig
from ml_connector.config.entity import DeletesConfig, EntityConfig, ReadConfig
from ml_connector.http.errors import FatalError, RecordError, TransientError
from ml_connector.http.reader import EntityReader, later
from ml_connector.http.redact import REDACTOR
from ml_connector.store import FAILED, AuditRow, PendingRecord
from ml_connector.store.links import Links
from ml_connector.store.pending import Parking
from ml_connector.sync.horizon import ReadHorizon
from ml_connector.transform.expressions import UnsafePath
from ml_connector.transform.mapping import MappingError

if TYPE_CHECKING:
    from ml_connector.sync.flow import FlowContext, FlowSummary

MARK = "$deleted"  # the record of a parked delete: {"$deleted": "<source key>"}
REFUSED_UNTIL = datetime(9999, 12, 31)  # a refused mass delete waits for `ml-connector replay`
KEYS_SHOWN = 100  # deleted keys a flow summary names (the count is exact)
OK, REJECTED, UNKNOWN = "ok", "failed", "unknown"
log = logging.getLogger("ml_connector.sync")


def parked_delete(unit: Mapping[str, Any]) -> str | None:
    """The source key of a parked delete, or None for an ordinary record."""
    key = unit.get(MARK) if len(unit) == 1 else None
    return key if isinstance(key, str) else None


def watermark_name(flow: str) -> str:
    """Where the watermark of a flow's deleted-records endpoint is kept (next to the flow's own)."""
    return f"{flow}#deleted"


@dataclass(frozen=True)
class _Outcome:
    status: str  # OK | REJECTED | UNKNOWN
    message: str | None = None  # the error, or a note on a success (e.g. "already gone")


class FlowDeletes:
    """The deletes of one flow run: detects them (flag, endpoint, absence) and applies `on_delete`."""

    def __init__(self, config: MappingConfig, ctx: FlowContext, summary: FlowSummary,
                 now: Callable[[], datetime]) -> None:
        """``now``: the flow's clock as the state stores moments (UTC, naive)."""
        self.config = config
        self.ctx = ctx
        self.summary = summary
        self.now = now
        self.flow = config.flow
        self.action = config.on_delete
        self.signals: DeletesConfig | None = ctx.source_entity.deletes if self.action != "ignore" else None
        self.seen: set[str] = set()  # keys the flow's read met alive (or flagged): never deleted by another signal
        self.complete = True  # every record read got its key (absence is only inferred from a complete read)
        self.absence = False  # this run's read may show deletes by absence (a full read, not filtered)
        self.tracking = False
        # keys deleted (or planned) in this run, for a later signal of it to skip: kept only while one may come
        # (``tracking``), else a flag alone kept every deleted key of a first sync to its end
        self.handled: set[str] = set()
        self.quiet_filtered: dict[str, int] = {}  # by note: keys filtered again, for the flow run's summary rows

    # ---- detection -------------------------------------------------------------------------------------------

    def start_read(self, full: bool) -> None:
        """Before the flow's read: keys are tracked for an endpoint, and for absence on an unfiltered full read."""
        signals = self.signals
        absent = signals is not None and signals.absent is not None and full
        if absent and self.config.source.params.source:
            log.warning("%s: no deletes are inferred from absence: the read is filtered by from.params", self.flow)
            absent = False
        self.absence = absent
        self.tracking = absent or (signals is not None and signals.read is not None)

    def saw(self, units: Iterable[Mapping[str, Any]]) -> None:
        """Records of the flow's read, before they are processed."""
        if not self.tracking:
            return
        for unit in units:
            try:
                self.seen.add(self.ctx.mapping.source_key(unit))
            except MappingError:
                self.complete = False

    async def take(self, units: list[dict[str, Any]]) -> dict[int, str]:
        """Apply the deletes among ``units`` (flagged records, parked deletes): their keys by position."""
        flag = self.signals.flag if self.signals is not None else None
        deleted: dict[int, str] = {}
        for index, unit in enumerate(units):
            key = parked_delete(unit)
            if key is None and flag is not None and flag.evaluate(unit):
                try:
                    key = self.ctx.mapping.source_key(unit)
                except MappingError:
                    key = None  # the ordinary path parks it with its key error
            if key is not None:
                deleted[index] = key
        keys = list(dict.fromkeys(deleted.values()))
        if keys and self.action == "ignore":  # parked while the flow said clear or delete
            self._filter(keys, "a parked delete dropped: the flow's on_delete is ignore")
        elif keys:
            await self.apply(keys, read=True)
        return deleted

    async def after_read(self) -> None:
        """After the flow's read and retries: the deleted-records endpoint, then absence from a full read."""
        signals = self.signals
        if signals is None:
            return
        if signals.read is not None:
            await self._read_endpoint(signals)
        if signals.absent is not None and self.absence:
            await self._absent(signals.absent.max_share)

    async def _read_endpoint(self, signals: DeletesConfig) -> None:
        assert signals.read is not None
        endpoint = signals.read
        state, name = self.ctx.state, watermark_name(self.flow)
        read = ReadConfig(path=endpoint.path, params=endpoint.params, records=endpoint.records,
                          paginator=endpoint.paginator, incremental=endpoint.incremental, method="GET",
                          quota=endpoint.quota, empty_statuses=(), narrow="cursor")
        entity = EntityConfig(key=self.ctx.source_entity.key, read=read, expand={})
        reader = EntityReader(self.ctx.source, self.config.source.entity, entity)
        stored = state.watermarks.get(name)
        began = self.ctx.now()
        newest = stored
        field = endpoint.incremental.field if endpoint.incremental is not None else None
        async for page in reader.pages(since=stored):
            keys: dict[str, None] = {}
            for record in page:
                key = endpoint.key.evaluate(record)
                if key is None or isinstance(key, (dict, list)):
                    raise FatalError(f"{self.config.source.entity}: a deleted record has no key at "
                                     f"{endpoint.key.source!r}: {str(record)[:200]}")
                keys[str(key)] = None
                stamp = record.get(field) if field else None
                if isinstance(stamp, str) and stamp:
                    newest = later(newest, stamp)
            await self.apply([k for k in keys if k not in self.seen and k not in self.handled])
        if newest and newest != stored and not self.ctx.dry_run:
            horizon = ReadHorizon.of(began, reader.server_date, reader.lookback)
            state.watermarks.set(name, horizon.cap(newest))

    async def _absent(self, max_share: float) -> None:
        if not self.complete:
            log.warning("%s: no deletes are inferred from absence: some records read have no key", self.flow)
            return
        links = Links(self.ctx.state.db).all(self.flow)
        missing = sorted(k for k in links if k not in self.seen and k not in self.handled)
        if not missing:
            return
        if len(missing) > max_share * len(links):
            self._refuse(missing, links, max_share)
            return
        await self.apply(missing)

    def _refuse(self, missing: list[str], links: Mapping[str, str], max_share: float) -> None:
        """Too many at once looks like a broken read, not a purge: nothing is deleted, the deletes are parked."""
        share = len(missing) / len(links)
        reason = (f"mass delete refused: {len(missing)} of {len(links)} linked records ({share:.0%}) are missing "
                  f"from the full read, more than deletes.absent.max_share ({max_share:.0%}) allows; nothing was "
                  f"deleted; `ml-connector replay --flow {self.flow}` applies them")
        log.warning("%s: %s", self.flow, reason)
        self.summary.delete_refused += len(missing)
        if self.ctx.dry_run:
            return
        state, run_id = self.ctx.state, self.ctx.run_id
        previous = state.pending.standing(self.flow, missing)
        rows = [AuditRow(run_id, self.flow, key, links[key], self.action, "parked",
                         previous[key].attempts + 1 if key in previous else 1, reason) for key in missing]

        def write() -> None:
            state.pending.park(self.flow, run_id, [(key, FAILED, {MARK: key}, reason) for key in missing],
                               {key: Parking(REFUSED_UNTIL) for key in missing})
            state.audit.add(rows)
        state.db.atomically(write)

    # ---- applying --------------------------------------------------------------------------------------------

    async def apply(self, keys: list[str], *, read: bool = False) -> None:
        """Clear or delete the targets of these source keys, each recorded when its outcome is known.

        ``read``: the keys are of records read (flagged, or parked), so one never linked is said filtered; a key
        from a deleted-records endpoint that was never linked is none of this flow's business.
        """
        if not keys:
            return
        state = self.ctx.state
        links = {k: e.target_id for k, e in state.id_maps.get_many(self.flow, keys).items()}
        if self.tracking:
            self.handled.update(keys)
        never = [k for k in keys if k not in links]
        if never and read:
            self._filter(never, "deleted at the source; never linked")
        linked = [k for k in keys if k in links]
        if self.ctx.dry_run:
            for key in linked:
                self._count(key)
            return
        previous = state.pending.standing(self.flow, linked)
        for key in linked:
            outcome = _Outcome(OK) if self.action == "clear" else await self._delete(links[key])
            self._record(key, links[key], outcome, previous.get(key))

    def _filter(self, keys: list[str], note: str) -> None:
        """Nothing to do (deleted before they were ever linked): said like a filtered record, with a row of its own
        the first time; filtered again for the same reason, only counted into the flow run's summary row (the note
        kept there: store/filtered.py)."""
        self.summary.filtered += len(keys)
        if self.ctx.dry_run:
            return
        state = self.ctx.state
        again, _ = state.filtered.recall(self.flow, keys, (), reason=note)
        news = [key for key in keys if key not in again]
        if again:
            self.quiet_filtered[note] = self.quiet_filtered.get(note, 0) + len(keys) - len(news)
        rows = [AuditRow(self.ctx.run_id, self.flow, key, None, "filter", "filtered", note=note) for key in news]

        def write() -> None:
            state.pending.clear(self.flow, keys)
            state.filtered.remember(self.flow, news, reason=note)
            state.audit.add(rows)
        state.db.atomically(write)

    def _count(self, key: str) -> None:
        if self.action == "delete":
            self.summary.deleted += 1
        else:
            self.summary.cleared += 1
        if len(self.summary.delete_keys) < KEYS_SHOWN:
            self.summary.delete_keys.append(key)

    async def _delete(self, target_id: str) -> _Outcome:
        """One call of the target's delete operation; a `gone` status means it was deleted already."""
        write = self.ctx.target_entity.write
        op = write.delete if write is not None else None
        if op is None:
            return _Outcome(REJECTED, f"{self.config.target.entity} has no write.delete operation")
        client = self.ctx.target
        context = {**client.context, "target_id": target_id, "id": target_id}
        try:
            path = str(op.path.evaluate(context))
            body = op.body.evaluate(context) if op.body is not None else None
            await client.request(op.method, path, params=op.params.evaluate(context), json=body, quota=op.quota,
                                 idempotent=True)
        except UnsafePath as exc:
            return _Outcome(REJECTED, str(exc))
        except RecordError as exc:
            if exc.status in op.gone:
                return _Outcome(OK, f"already gone (HTTP {exc.status})")
            return _Outcome(REJECTED, str(exc))
        except TransientError as exc:  # retries spent: it may have happened; checked again after the grace period
            return _Outcome(UNKNOWN, f"outcome unknown: {exc}")
        return _Outcome(OK)

    def _record(self, key: str, target_id: str, outcome: _Outcome, previous: PendingRecord | None) -> None:
        state, run_id = self.ctx.state, self.ctx.run_id
        attempts = (previous.attempts if previous is not None else 0) + 1
        message = REDACTOR(outcome.message) if outcome.message else None
        if outcome.status == OK:
            row = AuditRow(run_id, self.flow, key, target_id, self.action, "ok", attempts, note=message)

            def write() -> None:
                Links(state.db).unlink(self.flow, [key])
                state.pending.clear(self.flow, [key])
                state.audit.add([row])
            state.db.atomically(write)
            self._count(key)
            return
        self.summary.failed += 1
        row = AuditRow(run_id, self.flow, key, target_id, self.action, outcome.status, attempts, message)
        parking = {key: self._parking(previous, unknown=outcome.status == UNKNOWN)}

        def park() -> None:
            state.pending.park(self.flow, run_id, [(key, FAILED, {MARK: key}, message or outcome.status)], parking)
            state.audit.add([row])
        state.db.atomically(park)

    def _parking(self, previous: PendingRecord | None, *, unknown: bool) -> Parking:
        """As for records: a delete of unknown outcome after the grace period; a refused one with back-off."""
        settings, now = self.config.parking, self.now()
        if unknown:
            return Parking(now + timedelta(seconds=settings.unknown_outcome_grace), outcome_unknown=True)
        failures = (previous.failures if previous is not None else 0) + 1
        if failures < 2:
            return Parking(failures=failures)
        wait = min(settings.backoff_max, settings.backoff * 2 ** (failures - 2))
        return Parking(now + timedelta(seconds=wait), failures=failures)
