"""One flow run: pull -> map -> diff -> push -> record, page by page."""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import time
from collections.abc import Callable, Coroutine, Mapping
from contextlib import aclosing
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from ml_connector.config import MappingConfig
from ml_connector.config.entity import EntityConfig
from ml_connector.errors import MlConnectorError
from ml_connector.http.ahead import ReadAhead
from ml_connector.http.catalog import FieldCatalog, LazyCatalog
from ml_connector.http.client import ConnectorClient
from ml_connector.http.errors import RecordError
from ml_connector.http.matching import get_path
from ml_connector.http.reader import EntityReader, Latest
from ml_connector.http.redact import REDACTOR
from ml_connector.http.skips import FlowSkipped
from ml_connector.http.usage import QuotaExhausted
from ml_connector.http.write_ops import progress_mark, step_left
from ml_connector.http.writer import CREATE, LINK, EntityWriter, PushAborted, PushItem, PushResult
from ml_connector.store import DEFERRED, FAILED, AuditRow, PendingRecord, State
from ml_connector.store.audit import FILTERED_SUMMARY, UNCHANGED_SUMMARY
from ml_connector.store.pending import Parking
from ml_connector.sync.by_id import read_by_ids, record_skipped
from ml_connector.sync.deletes import FlowDeletes
from ml_connector.sync.echo import EchoGuard
from ml_connector.sync.ensure_fields import FieldEnsurer
from ml_connector.sync.horizon import ReadHorizon
from ml_connector.sync.keyed import flow_keys
from ml_connector.sync.lookups import IdMapLookups
from ml_connector.sync.progress import FlowCounts, NullProgress, Progress
from ml_connector.sync.schedule import is_due
from ml_connector.transform.mapping import CompiledMapping, Deferred, MappingError, content_hash

PENDING_PAGE = 500
# records mapped between two turns of the event loop: often enough for the page read ahead to keep arriving
YIELD_EVERY = 100
QUOTA = "quota"  # a flow or run status: stopped because the API's allowance is spent (http/usage.py); resumes
SKIPPED = "skipped"  # a flow status: a response rule said the flow cannot apply here (http/skips.py); not an error
log = logging.getLogger("ml_connector.sync")


@dataclass
class FlowSummary:
    """What one flow did in one run; the numbers ``run --json`` reports."""

    flow: str
    status: str = "ok"
    read: int = 0
    created: int = 0
    updated: int = 0
    linked: int = 0  # matched to a target record that exists, nothing written (a link_only target)
    unchanged: int = 0
    deferred: int = 0
    failed: int = 0
    filtered: int = 0
    api_reads: int = 0
    api_writes: int = 0
    rate_limited: int = 0
    waited_seconds: float = 0.0
    seconds: float = 0.0
    error: str | None = None
    retried_pending: int = 0
    waiting: int = 0  # parked records not sent: their back-off or a lost create's grace period has not passed
    future_stamped: int = 0  # read records stamped after the read began (synced; the watermark did not follow)
    echoes: int = 0  # changed records not sent: the target already holds them (two-way flows, see sync/echo.py)
    new_fields: list[str] = field(default_factory=list)  # custom fields created (a plan: to create), ensure_fields
    deleted: int = 0  # target records deleted for records deleted at the source (on_delete: delete)
    cleared: int = 0  # links cleared for records deleted at the source (on_delete: clear)
    delete_refused: int = 0  # deletes inferred from absence, parked as a mass delete (deletes.absent.max_share)
    delete_keys: list[str] = field(default_factory=list)  # the source keys deleted or cleared (the first 100)
    read_path: str | None = None  # how the source was read: "list" (paged) or "bulk" (a server-side job)

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["api_calls"] = {"reads": data.pop("api_reads"), "writes": data.pop("api_writes"),
                             "rate_limited": data.pop("rate_limited"),
                             "waited_seconds": round(data.pop("waited_seconds"), 3)}
        return data


@dataclass
class _Mapped:
    key: str
    unit: dict[str, Any]
    payload: dict[str, Any]
    digest: str
    target_id: str | None = None


@dataclass
class FlowContext:
    """What a flow run needs from its surroundings."""

    run_id: str
    state: State
    source: ConnectorClient
    target: ConnectorClient
    source_entity: EntityConfig
    target_entity: EntityConfig
    mapping: CompiledMapping
    known_flows: set[str]
    source_catalog: LazyCatalog | None = None
    target_catalog: LazyCatalog | None = None
    dry_run: bool = False
    full: bool = False
    audit_unchanged: bool = True
    reverse: MappingConfig | None = None  # the flow syncing the same records the other way (two-way flows)
    planned: dict[str, set[str]] = field(default_factory=dict)  # a plan: source keys each earlier flow would write
    now: Callable[[], datetime] = field(default=lambda: datetime.now(UTC))  # the clock (tests inject one)
    progress: Progress = field(default_factory=NullProgress)  # told after each page (sync/progress.py)


def describe_failure(exc: Exception) -> str:
    """One line for a failed flow: a connector's own message, else the exception's type and message."""
    return str(exc) if isinstance(exc, MlConnectorError) else f"{type(exc).__name__}: {exc}"


def _unit_key_fallback(unit: Mapping[str, Any]) -> str:
    text = json.dumps(unit, sort_keys=True, default=str)
    return "unkeyed:" + hashlib.sha256(text.encode()).hexdigest()[:16]


class FlowRun:
    """Runs one mapping spec once."""

    def __init__(self, config: MappingConfig, ctx: FlowContext) -> None:
        self.config = config
        self.ctx = ctx
        self.name = config.flow
        self.summary = FlowSummary(self.name)
        self.match_field = config.match.target if config.match is not None else None
        self.lookups = IdMapLookups(ctx.state.id_maps, ctx.known_flows)
        self._entity_writer: EntityWriter | None = None
        self._unmet: set[str] = set()  # keys parked before this run that this run has not processed yet
        self._on_demand = False  # a replay: parked records are sent whatever their back-off says
        self._stats_base: list[tuple[ConnectorClient, tuple[int, int, int, float]]] = []  # API counts at start
        self._quiet_unchanged = 0  # unchanged records without a row of their own: one summary row at the end
        self._quiet_filtered = 0  # records filtered again (each had a row of its own once): likewise
        self.echo = EchoGuard(config, ctx.reverse, ctx.state.id_maps) if ctx.reverse is not None else None
        self._fields = FieldEnsurer(self.name, config.ensure_fields, ctx.target, config.target.entity,
                                    ctx.target_entity.custom_fields, ctx.target_catalog, dry_run=ctx.dry_run)
        self.deletes = FlowDeletes(config, ctx, self.summary, self._now)

    async def execute(self) -> FlowSummary:
        """Everything changed since the watermark, then the parked records that read did not meet."""
        return await self._measured(self._execute())

    async def replay(self, units: list[dict[str, Any]]) -> FlowSummary:
        """Process only the given (parked) records: no pull, the watermark stays where it is."""
        self.summary.retried_pending = len(units)
        self._on_demand = True
        return await self._measured(self._process(units))

    async def by_ids(self, ids: list[str]) -> FlowSummary:
        """Re-read these source records by id (a callback named them) and sync them; the watermark stays where it
        is, and parked records of other keys wait for the flow's scheduled run (sync/by_id.py)."""
        return await self._measured(self._by_ids(ids))

    async def _by_ids(self, ids: list[str]) -> None:
        source = self.config.source
        found = await read_by_ids(self.ctx.source, source.entity, self.ctx.source_entity, ids,
                                  catalog=self.ctx.source_catalog, expand=source.expand)
        units = [unit for record in found.records for unit in self.ctx.mapping.explode(record)]
        self.summary.read += len(units)
        if self.echo is not None and not self.ctx.dry_run:  # what the source holds now, as a listing read notes it
            self.echo.read(self.ctx.mapping, units)
        await self._process(units)
        if found.gone and self.config.on_delete != "ignore":
            await self.deletes.apply(found.gone, read=True)
        self.summary.filtered += len(found.gone) if self.config.on_delete == "ignore" else 0
        self.summary.failed += len(found.refused)
        if not self.ctx.dry_run:
            record_skipped(self.ctx.state, self.ctx.run_id, self.name,
                           found.gone if self.config.on_delete == "ignore" else [], found.refused)
        self.ctx.progress.flow_update(self.name, self.counts())

    async def _measured(self, work: Coroutine[Any, Any, None]) -> FlowSummary:
        """Run the work; a connection-level failure fails the flow; count the API calls and time it took."""
        started = time.monotonic()
        clients = list({id(c): c for c in (self.ctx.source, self.ctx.target)}.values())
        before = [c.stats.snapshot() for c in clients]
        self._stats_base = list(zip(clients, before, strict=True))
        try:
            await work
        except QuotaExhausted as exc:  # ends like a failure (confirmed writes recorded, watermark kept), named apart
            self._fail(f"stopped: {exc}")
            self.summary.status = QUOTA
        except FlowSkipped as exc:  # nothing to do here: the watermark stays, the run goes on, not an error
            self.summary.status, self.summary.error = SKIPPED, REDACTOR(f"skipped: {exc}")
        except Exception as exc:  # any failure fails this flow, said in one line; the run goes on
            log.debug("%s failed", self.name, exc_info=exc)
            self._fail(describe_failure(exc))
        except BaseException as exc:  # interrupted: recorded as failed, and the interruption goes on
            self._fail(f"interrupted ({type(exc).__name__})")
            raise
        finally:
            for client, (reads, writes, limited, waited) in zip(clients, before, strict=True):
                self.summary.api_reads += client.stats.reads - reads
                self.summary.api_writes += client.stats.writes - writes
                self.summary.rate_limited += client.stats.rate_limited - limited
                self.summary.waited_seconds += client.stats.waited_seconds - waited
            self._summarise()
            self.ctx.state.id_maps.release(self.name)
            self.summary.seconds = round(time.monotonic() - started, 3)
        return self.summary

    def _summarise(self) -> None:
        """One audit row for the unchanged records of this flow run and one for those filtered again (one per audit
        note: store/audit.py), however the run ended; a state that cannot take them must not hide why the flow
        ended."""
        quiet = [(UNCHANGED_SUMMARY, None, self._quiet_unchanged), (FILTERED_SUMMARY, None, self._quiet_filtered),
                 *((FILTERED_SUMMARY, note, n) for note, n in self.deletes.quiet_filtered.items())]
        self._quiet_unchanged = self._quiet_filtered = 0
        self.deletes.quiet_filtered.clear()
        self.ctx.state.filtered.release(self.name)
        if self.ctx.dry_run:
            return
        for (action, outcome), note, count in quiet:
            try:
                self.ctx.state.audit.add_summary(self.ctx.run_id, self.name, action, outcome, count, note)
            except Exception as exc:  # the flow's own failure (or interruption) is what the caller must see
                log.warning("%s: the audit summary of %d %s records was not written: %s", self.name, count, outcome,
                            exc)

    def counts(self) -> FlowCounts:
        """The numbers so far, the API's rate limiting included, for whoever watches the run."""
        base, s = self._stats_base, self.summary
        return FlowCounts(read=s.read, written=s.created + s.updated, deferred=s.deferred, failed=s.failed,
                          rate_limited=sum(c.stats.rate_limited - b[2] for c, b in base),
                          waited_seconds=round(sum(c.stats.waited_seconds - b[3] for c, b in base), 3))

    def _fail(self, error: str) -> None:
        self.summary.status = "failed"
        self.summary.error = REDACTOR(error)

    async def _execute(self) -> None:
        """Everything changed since the watermark, then the parked records the read did not meet.

        A parked record the read meets again is processed once, in its newer source version; retrying the parked
        copy too would count it twice and could send an older version after the newer one.
        """
        state = self.ctx.state
        pending = state.pending.list(flow=self.name)
        self._unmet = {p.source_key for p in pending}
        source_from = self.config.source
        reader = EntityReader(self.ctx.source, source_from.entity, self.ctx.source_entity,
                              self.ctx.source_catalog)
        keys = flow_keys(state, source_from.keys)  # a keyed read: a full read of the key set, no watermark
        stored = state.watermarks.get(self.name)
        since = None if keys is not None or self._full_read_due() else stored
        self.deletes.start_read(full=since is None)
        if since is None:
            state.id_maps.load_fingerprints(self.name)
        latest = Latest(stored)
        log.info("%s: reading %s", self.name, f"changes since {since}" if since else "everything")
        watermark_field = reader.watermark_field if reader.incremental else None
        began = self.ctx.now()
        horizon: ReadHorizon | None = None
        pages = ReadAhead(reader.pages(since=since, params=source_from.params, expand=source_from.expand,
                                       keys=keys))
        async with aclosing(pages):  # the next page is read while this one is processed
            async for page in pages:
                horizon = horizon or ReadHorizon.of(began, reader.server_date, reader.lookback)
                self.summary.read_path = reader.read_path
                units: list[dict[str, Any]] = []
                notes: dict[int, str] = {}  # by position in ``units``
                for record in page:
                    children = self.ctx.mapping.explode(record)
                    stamp = record.get(watermark_field) if watermark_field else None
                    if watermark_field and isinstance(stamp, str) and stamp:
                        moment = latest.offer(stamp)  # each stamp parsed once
                        if horizon.is_future_at(moment):
                            note = horizon.note(watermark_field, stamp)
                            notes.update((len(units) + i, note) for i in range(len(children)))
                    units.extend(children)
                self.summary.read += len(units)
                if self.echo is not None and not self.ctx.dry_run:
                    self.echo.read(self.ctx.mapping, units)
                self.deletes.saw(units)
                self.summary.future_stamped += len(notes)
                await self._process(units, notes)
                self.ctx.progress.flow_update(self.name, self.counts())
                log.info("%s: %d read so far (%d created, %d updated, %d unchanged, %d deferred, %d failed)", self.name,
                         self.summary.read, self.summary.created, self.summary.updated, self.summary.unchanged,
                         self.summary.deferred, self.summary.failed)
        self.summary.read_path = reader.read_path
        unmet = [p for p in pending if p.source_key in self._unmet]
        retry = [p.record for p in unmet if not self._waits(p)]
        self.summary.waiting += len(unmet) - len(retry)
        self.summary.retried_pending = len(retry)
        for start in range(0, len(retry), PENDING_PAGE):  # retried in pages, like records read from a source
            await self._process(retry[start:start + PENDING_PAGE])
            self.ctx.progress.flow_update(self.name, self.counts())
        await self.deletes.after_read()  # the deleted-records endpoint, then absence from a full read
        if self.ctx.dry_run or keys is not None:
            return
        if horizon is not None:
            self._advance(since, stored, latest.value, horizon)
        if since is None:
            state.watermarks.full_read_done(self.name)

    def _advance(self, since: str | None, stored: str | None, newest: str | None, horizon: ReadHorizon) -> None:
        """Move the watermark last (everything before it is synced or parked), never past the read's start."""
        watermarks = self.ctx.state.watermarks
        if since is not None and horizon.is_future(since):  # left by an unbounded engine: what it skipped is unknown
            log.warning("%s: watermark %s is after the read began; dropped, the next run reads everything",
                        self.name, since)
            watermarks.reset(self.name)
        elif newest and newest != stored:
            watermarks.set(self.name, horizon.cap(newest))

    def _now(self) -> datetime:
        """The flow's clock as the state stores moments (UTC, without a zone)."""
        return self.ctx.now().astimezone(UTC).replace(tzinfo=None)

    def _waits(self, parked: PendingRecord | None, unit: Mapping[str, Any] | None = None) -> bool:
        """Whether a parked record is not sent in this run: its next attempt is later, and either an earlier create
        may still land (the grace period) or it is the very record that failed (a changed one may go through)."""
        if parked is None or self._on_demand or parked.next_attempt is None or parked.next_attempt <= self._now():
            return False
        return unit is None or parked.outcome_unknown or parked.record == unit

    def _parking(self, previous: PendingRecord | None, result: PushResult) -> Parking:
        """When a record the target did not take may be sent again: after the grace period when its create may
        still land; at the next run after a first failure, then after a back-off that doubles with each failure."""
        settings, now = self.config.parking, self._now()
        if result.unknown:
            return Parking(now + timedelta(seconds=settings.unknown_outcome_grace), outcome_unknown=True)
        failures = (previous.failures if previous is not None else 0) + 1
        if failures < 2:
            return Parking(failures=failures)
        wait = min(settings.backoff_max, settings.backoff * 2 ** (failures - 2))
        return Parking(now + timedelta(seconds=wait), failures=failures)

    def _full_read_due(self) -> bool:
        """Forced for this run, or the flow's ``reconcile`` interval has passed since its last full read."""
        if self.ctx.full:
            return True
        reconcile = self.config.reconcile
        if not reconcile:
            return False
        last = self.ctx.state.watermarks.last_full_read(self.name)
        return is_due(reconcile, last, self.ctx.now().astimezone(UTC).replace(tzinfo=None))

    async def _process(self, units: list[dict[str, Any]], notes: Mapping[int, str] | None = None) -> None:
        """Map, diff, push and record one page of records (``notes``: audit notes by position in ``units``)."""
        mapped: dict[str, _Mapped] = {}
        deferred: list[tuple[str, dict[str, Any], str]] = []
        failed: list[tuple[str, dict[str, Any], str]] = []
        filtered: list[str] = []
        keyed_notes: dict[str, str] = {}
        gone = await self.deletes.take(units)  # deleted at the source: applied by on_delete, by position
        refuses_nul = self.ctx.state.db.refuses_nul
        self._unmet.difference_update(gone.values())
        for index, unit in enumerate(units):
            if index % YIELD_EVERY == YIELD_EVERY - 1:
                await asyncio.sleep(0)  # the next page's answer is read while this page is mapped (http/ahead.py)
            if index in gone:
                continue
            error: str | None = None
            try:
                key = self.ctx.mapping.source_key(unit)
            except MappingError as exc:
                key, error = _unit_key_fallback(unit), str(exc)
            else:
                if refuses_nul and "\0" in key:  # parked under the key as that state stores it (its retries meet)
                    key, error = key.replace("\0", "\ufffd"), (
                        f"the key holds a NUL character, which this state ({refuses_nul}) cannot store: fix the "
                        "record at the source")
            self._unmet.discard(key)
            if notes and index in notes:
                keyed_notes[key] = notes[index]
            if error is not None:
                failed.append((key, unit, error))
                continue
            try:
                result = self.ctx.mapping.map(unit, self._lookup, self.lookups.lookup_source, key=key)
            except Deferred as exc:
                deferred.append((key, unit, str(exc)))
                continue
            except MappingError as exc:
                failed.append((key, unit, str(exc)))
                continue
            if result.payload is None:
                filtered.append(key)
                continue
            mapped[key] = _Mapped(key, unit, result.payload, result.digest or content_hash(result.payload),
                                  result.target_id)
        self.summary.filtered += len(filtered)
        self.summary.deferred += len(deferred)
        # unchanged: stored with this very hash (no query once the flow's fingerprints are loaded, store/idmap.py);
        # entries: the links of the others, and of unchanged records with a note (their audit row names the target)
        same, entries = self.ctx.state.id_maps.diff(self.name, {k: m.digest for k, m in mapped.items()},
                                                    also=keyed_notes)
        changed = [m for m in mapped.values() if m.key not in same]
        unchanged = [m for m in mapped.values() if m.key in same]
        self.summary.unchanged += len(unchanged)
        echoes = self._echoes(changed, entries)
        changed = [m for m in changed if m.key not in echoes]
        self._pair(changed, entries)
        # the parked rows of every record of the page, in one query: who waits, attempts so far, what to clear
        parked = self.ctx.state.pending.standing(self.name, [*mapped, *filtered,
                                                             *(key for key, _, _ in deferred + failed)])
        waiting = {m.key for m in changed if self._waits(parked.get(m.key), m.unit)}
        held = [m for m in changed if m.key in waiting]
        changed = [m for m in changed if m.key not in waiting]
        self.summary.waiting += len(held)
        if changed:  # the custom fields this flow writes exist before its first write (a plan only lists them)
            self.summary.new_fields += await self._fields.ensure()
        if self.ctx.dry_run:
            await self._plan(changed, entries)
            self.summary.failed += len(failed)
            return
        self._record_echoes(echoes, mapped, keyed_notes)
        self._hold(held, parked, entries, keyed_notes)
        results = await self._push(changed, entries, parked) if changed else []
        self._record(results, {m.key: m for m in changed}, unchanged, deferred, failed, filtered, entries, parked,
                     keyed_notes)

    def _lookup(self, flow: str, source_key: Any) -> str:
        """An id map lookup; in a plan, a record an earlier flow of the same plan would write resolves too (the
        run would find it written), instead of counting as deferred."""
        try:
            return self.lookups.lookup(flow, source_key)
        except Deferred:
            if self.ctx.dry_run and str(source_key) in self.ctx.planned.get(flow, ()):
                return f"(planned: {flow} {source_key})"
            raise

    async def _plan(self, changed: list[_Mapped], entries: Mapping[str, Any]) -> None:
        """Count what the run would do, read-only: a record unknown to the id map is an update when the match
        search finds it in the target (as the run's search would), a create when it finds none."""
        known = [m for m in changed if m.key in entries or m.target_id]
        unknown = [m for m in changed if not (m.key in entries or m.target_id)]
        self.summary.updated += len(known)
        write = self.ctx.target_entity.write
        failed: set[str] = set()
        if unknown and self.match_field and write is not None and write.strategy in ("search_then_write", "upsert"):
            writer = await self._writer()
            await writer.prepare(len(unknown))
            for m in unknown:
                try:
                    found = len(await writer.finder.find(get_path(m.payload, self.match_field)))
                except RecordError:  # the run would park it
                    found = -1
                if found < 0 or found > 1:  # a failed search, or a duplicate in the target: parked by the run
                    failed.add(m.key)
                elif found:
                    self.summary.updated += 1
                else:
                    self.summary.created += 1
        else:
            self.summary.created += len(unknown)
        self.summary.failed += len(failed)
        self.ctx.planned.setdefault(self.name, set()).update(m.key for m in changed if m.key not in failed)

    def _pair(self, changed: list[_Mapped], entries: Mapping[str, Any]) -> None:
        """Two-way flows: a record the reverse flow made from one of our targets goes to that target."""
        if self.echo is None:
            return
        new = [m for m in changed if m.key not in entries and not m.target_id]
        paired = self.echo.paired([m.key for m in new]) if new else {}
        for m in new:
            m.target_id = paired.get(m.key)

    def _echoes(self, changed: list[_Mapped], entries: Mapping[str, Any]) -> dict[str, str]:
        """Changed records whose target already holds them (two-way flows): source key -> target id."""
        if self.echo is None or not changed:
            return {}
        # a record whose follow-up step is left is not an echo, even when the target shows its fields: the step
        # (a parent, an association) is not among them
        settled = [m for m in changed if m.key not in entries or step_left(entries[m.key].payload_hash, m.digest)
                   is None]
        found = self.echo.echoes((m.key, m.payload, m.target_id or (entries[m.key].target_id if m.key in entries
                                                                     else None)) for m in settled)
        self.summary.echoes += len(found)
        return found

    def _record_echoes(self, echoes: Mapping[str, str], mapped: Mapping[str, _Mapped],
                       notes: Mapping[str, str]) -> None:
        """An echo is not sent; its hash is kept as if written, so it is unchanged on later runs."""
        if not echoes:
            return
        state, flow = self.ctx.state, self.name
        rows = [AuditRow(self.ctx.run_id, flow, key, target, "skip", "echo", 1, None, mapped[key].digest,
                         notes.get(key)) for key, target in echoes.items()]

        def write() -> None:
            state.id_maps.save(flow, [(key, target, mapped[key].digest) for key, target in echoes.items()])
            state.pending.clear(flow, list(echoes))
            state.audit.add(rows)
        state.db.atomically(write)

    def _hold(self, held: list[_Mapped], parked: Mapping[str, PendingRecord], entries: Mapping[str, Any],
              notes: Mapping[str, str]) -> None:
        """Parked records met again while they wait: they stay parked (with the newer version), unsent."""
        if not held:
            return
        state, flow = self.ctx.state, self.name
        rows = []
        for m in held:
            p = parked[m.key]
            target = entries[m.key].target_id if m.key in entries else None
            when = p.next_attempt.isoformat(sep=" ") if p.next_attempt is not None else "the next run"
            rows.append(AuditRow(self.ctx.run_id, flow, m.key, target, "hold", "parked", p.attempts,
                                 REDACTOR(f"waiting until {when}: {p.reason}"), note=notes.get(m.key)))

        def write() -> None:
            state.pending.keep(flow, [(m.key, m.unit) for m in held])
            state.audit.add(rows)
        state.db.atomically(write)

    def _match_is_key(self) -> bool:
        """Whether every match value is its record's own key, as written (no normalising, no ``let`` that could
        change the names both read): the id map then knows each record this run wrote."""
        config = self.config
        return (config.match is not None and not config.match.normalize and not config.let
                and config.fields.get(config.match.target) == config.key)

    async def _writer(self) -> EntityWriter:
        if self._entity_writer is None:
            catalog: FieldCatalog | None = None
            if self.ctx.target_catalog is not None:
                catalog = await self.ctx.target_catalog.get()
            self._entity_writer = EntityWriter(
                self.ctx.target, self.config.target.entity, self.ctx.target_entity, match_field=self.match_field,
                catalog=catalog, recent=self._recent_target_records, everything=self._all_target_records,
                match_normalize=self.config.match.normalize if self.config.match is not None else (),
                owners=lambda target_ids: self.ctx.state.id_maps.sources_of(self.name, target_ids),
                remember_written=not self._match_is_key())
        return self._entity_writer

    async def _recent_target_records(self) -> list[dict[str, Any]]:
        """Target records changed within the entity's ``search_lag`` (its search index may not show them yet)."""
        write = self.ctx.target_entity.write
        assert write is not None and write.search_lag is not None  # TargetFinder calls this only with a search_lag
        lag = write.search_lag
        since = (self.ctx.now() - timedelta(seconds=lag)).astimezone(UTC).isoformat().replace("+00:00", "Z")
        reader = EntityReader(self.ctx.target, self.config.target.entity, self.ctx.target_entity,
                              self.ctx.target_catalog)
        return [record async for page in reader.pages(since=since) for record in page]

    async def _all_target_records(self) -> list[dict[str, Any]]:
        """Every record of the target entity (largest pages), for matching locally instead of searching."""
        reader = EntityReader(self.ctx.target, self.config.target.entity, self.ctx.target_entity,
                              self.ctx.target_catalog)
        return [record async for page in reader.pages() for record in page]

    async def _push(self, changed: list[_Mapped], entries: Mapping[str, Any],
                    parked: Mapping[str, PendingRecord] | None = None) -> list[PushResult]:
        parked = parked or {}
        writer = await self._writer()
        await writer.prepare(sum(1 for m in changed if m.key not in entries and not m.target_id))
        items = [PushItem(m.key, m.payload,
                          match_value=get_path(m.payload, self.match_field) if self.match_field else None,
                          target_id=m.target_id or (entries[m.key].target_id if m.key in entries else None),
                          pinned=m.target_id is not None, on_demand=self._on_demand,
                          unknown_create=m.key in parked and parked[m.key].outcome_unknown,
                          resume=step_left(entries[m.key].payload_hash, m.digest) if m.key in entries else None)
                 for m in changed]
        try:
            return await writer.push(items)
        except PushAborted as exc:  # record what the target confirmed before the failure, then fail the flow
            self._record(exc.results, {m.key: m for m in changed}, [], [], [], [], entries, parked, {})
            raise exc.cause from None

    def _record(self, results: list[PushResult], by_key: Mapping[str, _Mapped], unchanged: list[_Mapped],
                deferred: list[tuple[str, dict[str, Any], str]], failed: list[tuple[str, dict[str, Any], str]],
                filtered: list[str], entries: Mapping[str, Any], parked: Mapping[str, PendingRecord],
                notes: Mapping[str, str]) -> None:
        state, run_id, flow = self.ctx.state, self.ctx.run_id, self.name
        failures = [(r.item.source_key, by_key[r.item.source_key].unit, REDACTOR(str(r.error)))
                    for r in results if not r.ok] + [(k, u, REDACTOR(e)) for k, u, e in failed]
        # ``parked``: the page's parked rows, read before the push (nothing parks them meanwhile)
        previous = {k: parked[k] for k, _, _ in failures + deferred if k in parked}
        attempts = {key: p.attempts for key, p in previous.items()}
        parking = {r.item.source_key: self._parking(previous.get(r.item.source_key), r) for r in results if not r.ok}
        rows: list[AuditRow] = []
        saved = []
        # a step left after a confirmed main write: its target id is kept, with a mark that resumes at the step
        progress = {r.item.source_key: (str(r.target_id), progress_mark(by_key[r.item.source_key].digest, r.step))
                    for r in results if not r.ok and r.step is not None and r.target_id is not None}
        for r in results:
            if r.ok:
                key = r.item.source_key
                digest = by_key[key].digest
                saved.append((key, str(r.target_id), digest))
                rows.append(AuditRow(run_id, flow, key, r.target_id, r.action, "ok",
                                     attempts.get(key, 0) + r.item.attempts, None, digest, notes.get(key),
                                     payload=by_key[key].payload))
                if r.action == CREATE:
                    self.summary.created += 1
                elif r.action == LINK:
                    self.summary.linked += 1
                else:
                    self.summary.updated += 1
        for key, _unit, error in failures:
            target = progress[key][0] if key in progress else entries[key].target_id if key in entries else None
            rows.append(AuditRow(run_id, flow, key, target, "park", "failed", attempts.get(key, 0) + 1, error,
                                 note=notes.get(key), payload=by_key[key].payload if key in by_key else None))
        for key, _unit, reason in deferred:
            rows.append(AuditRow(run_id, flow, key, None, "defer", "deferred", attempts.get(key, 0) + 1, reason,
                                 note=notes.get(key)))
        # an unchanged record with a note keeps its own row; the others are counted into one row per flow run
        rows.extend(AuditRow(run_id, flow, m.key, entries[m.key].target_id, "skip", "unchanged", 1, None,
                             m.digest, notes.get(m.key)) for m in unchanged if m.key in notes)
        if self.ctx.audit_unchanged:
            self._quiet_unchanged += sum(1 for m in unchanged if m.key not in notes)
        # a filtered record keeps its own row the first time (and with a note); filtered again, it is only counted;
        # one processed otherwise is forgotten, so its next filtering is news (no query for a flow that never filters)
        again, done = state.filtered.recall(flow, filtered, [r.item.source_key for r in results]
                                            + [m.key for m in unchanged] + [k for k, _, _ in failed + deferred])
        news = [key for key in filtered if key not in again or key in notes]
        self._quiet_filtered += len(filtered) - len(news)
        rows.extend(AuditRow(run_id, flow, key, None, "filter", "filtered", note=notes.get(key)) for key in news)
        self.summary.failed += len(failures)

        def write() -> None:
            state.id_maps.save(flow, saved + [(k, t, mark) for k, (t, mark) in progress.items()])  # hashes move
            # only after the target confirmed the write (a progress mark never equals a hash: the record stays dirty)
            if self.echo is not None:
                self.echo.wrote((target, by_key[key].payload) for key, target, _ in saved)
            state.pending.clear(flow, [k for k in [k for k, _, _ in saved] + [m.key for m in unchanged] + filtered
                                       if k in parked])  # only rows that exist: no query for a page with none
            state.pending.park(flow, run_id, [(k, FAILED, u, e) for k, u, e in failures]
                               + [(k, DEFERRED, u, r) for k, u, r in deferred], parking)
            state.filtered.remember(flow, [key for key in news if key not in again])
            state.filtered.forget(flow, done)
            state.audit.add(rows)
        state.db.atomically(write)
