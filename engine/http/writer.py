"""Writing an entity: write strategies, single and batch calls, per-item results, bounded and safe retries.

Every push is one work-queue loop (engine.http.work): records are resolved, loaded, written, re-checked, re-read
as jobs, never by a step calling back into the writer. A record counts as written only when the target's answer
confirms it; an answer that leaves it unknown sends it to a re-check (creates) or a read-back (updates). A create
the re-check does not find is never re-sent in the same run (the target may apply it late): it is parked as an
unknown outcome, and a later run looks for it before creating it again. Every re-send spends the record's attempt
budget, checked in one place (``_Push.retry``).

A write may have follow-up steps (``write.then``): once the main write is confirmed, each step whose ``when`` holds
is a job of its own, and the record counts as written only when the last one succeeded. A failed step gives a result
that names it and carries the confirmed target id (the flow records both, so that the next run resumes at that
step instead of writing the record again); a step whose answer is lost is read back (``expect``) or parked.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Coroutine, Iterable, Mapping, Sequence
from contextlib import suppress
from dataclasses import dataclass
from typing import Any

from ml_connector.config import Expr
from ml_connector.config.entity import EntityConfig
from ml_connector.http.bodies import RecordsAt
from ml_connector.http.catalog import FieldCatalog
from ml_connector.http.client import ConnectorClient, Reply, UncertainWrite
from ml_connector.http.errors import FatalError, RecordError, TransientError
from ml_connector.http.matching import Records, TargetFinder
from ml_connector.http.work import (
    CHECK,
    LOAD,
    LOOK,
    REREAD,
    RESOLVE,
    STEP,
    STEP_CHECK,
    WRITE,
    Job,
    PushAborted,
    WorkQueue,
    root_cause,
)
from ml_connector.http.write_ops import WriteOp, WriteStep
from ml_connector.http.write_results import Answer, Sent
from ml_connector.transform.expressions import UnsafePath

CREATE = "create"
UPDATE = "update"
UPSERT = "upsert"  # sent through the upsert operation; reported as create or update as the answer tells
LINK = "link"  # link_only: matched to a target record that exists; nothing written

Owners = Callable[[Iterable[str]], Mapping[str, Sequence[str]]]

__all__ = ["CREATE", "UPDATE", "EntityWriter", "PushAborted", "PushItem", "PushResult"]


@dataclass
class PushItem:
    """One changed record on its way to the target."""

    source_key: str
    payload: dict[str, Any]
    match_value: Any = None
    target_id: str | None = None
    existing: dict[str, Any] | None = None
    attempts: int = 1  # times sent; a re-send needs budget left
    pinned: bool = False  # the mapping names the target id: if it is gone, nothing else may take its place
    unknown_create: bool = False  # an earlier create (or, with `resume`, step) may have landed: look for it first
    on_demand: bool = False  # a person asked for it (replay): sent even when nothing can look for it first
    resume: str | None = None  # the main write of this very payload is confirmed: only this step and later ones left


@dataclass
class PushResult:
    item: PushItem
    action: str
    target_id: str | None = None
    error: str | None = None
    unknown: bool = False  # a create whose outcome is unknown: a later run looks for it before creating it again
    step: str | None = None  # failed at this follow-up step: the main write is confirmed (target_id), the step is not

    @property
    def ok(self) -> bool:
        return self.error is None


def first_difference(sent: Any, found: Any, path: str = "") -> str | None:
    """Where a record read back does not carry what was sent (None: it carries all of it)."""
    if isinstance(sent, Mapping):
        if not isinstance(found, Mapping):
            return path or "the record"
        for name, value in sent.items():
            where = first_difference(value, found.get(name), f"{path}.{name}" if path else str(name))
            if where is not None:
                return where
        return None
    if isinstance(sent, list):
        if not isinstance(found, list) or len(found) != len(sent):
            return path
        for index, (mine, theirs) in enumerate(zip(sent, found, strict=True)):
            where = first_difference(mine, theirs, f"{path}[{index}]")
            if where is not None:
                return where
        return None
    return None if sent == found else path


class EntityWriter:
    """Pushes changed records to one entity with the entity's write strategy."""

    def __init__(self, client: ConnectorClient, entity: str, config: EntityConfig, *,
                 match_field: str | None, catalog: FieldCatalog | None = None, concurrency: int = 4,
                 recent: Records | None = None, everything: Records | None = None,
                 match_normalize: Iterable[str] = (), owners: Owners | None = None,
                 remember_written: bool = True) -> None:
        write = config.write
        if write is None:
            raise FatalError(f"{client.connection.name}.{entity} cannot be written (no write operation)")
        self.client = client
        self.entity = entity
        self.config = config
        self.strategy: str = write.strategy
        self.match_field = match_field
        self.catalog = catalog
        self.concurrency = concurrency
        self.max_attempts = client.options.max_retries + 1  # the connector's `retries`, as for one call
        self.create = WriteOp.compile(write.create) if write.create is not None else None
        self.update = WriteOp.compile(write.update) if write.update is not None else None
        self.steps = [WriteStep(step) for step in write.then]
        self._get = config.get
        self.key_field = config.key
        self.owners = owners
        self.finder = TargetFinder(client, write, match_field, self.key_field, normalize=match_normalize,
                                   recent=recent, everything=everything,
                                   fetch=self.fetch if config.get is not None else None,
                                   labels=catalog.to_labels if catalog is not None else None,
                                   remember_written=remember_written)

    async def prepare(self, unresolved: int) -> None:
        """Before pushing: list the target once when many records of this run are unknown to the id map."""
        await self.finder.prepare(unresolved)

    def op(self, action: str) -> WriteOp | None:
        if action == UPSERT:
            return self.create or self.update
        return self.create if action == CREATE else self.update

    async def fetch(self, target_id: str) -> dict[str, Any] | None:
        """The target record as the API stores it (None: it does not exist, as a 404 says).

        A 200 without the record (a proxy's page, a cut-off or empty body) proves nothing: it is retried like any
        read, never taken for "no such record" (a search hit dropped so would be created a second time).
        """
        if self._get is None:
            raise FatalError(f"{self.entity}: reading a record back needs a get operation")
        get = self._get
        context = {**self.client.context, "id": target_id}
        try:
            reply = await self.client.request("GET", str(_path(get.path, context)),
                                              params=get.params.evaluate(context), quota=get.quota,
                                              records=RecordsAt(get.record, single=True,
                                                                none_statuses=frozenset(get.gone)))
        except RecordError as exc:
            if exc.status in get.gone:
                return None
            raise
        if not reply.records:  # a status the spec says means "no such record" (204 with no body)
            return None
        found = get.record.evaluate(reply.body)
        return found if isinstance(found, dict) else None

    async def push(self, items: list[PushItem]) -> list[PushResult]:
        """Write every item; each gets exactly one result (ok with a target id, or an error).

        A failure that ends the push (fatal, request-level, a crash) raises PushAborted carrying the results
        reached so far, so that confirmed writes are recorded all the same.
        """
        return await _Push(self).run(items)

    @property
    def can_read_back(self) -> bool:
        return self._get is not None

    def wire(self, item: PushItem) -> dict[str, Any]:
        return self.catalog.to_keys(item.payload) if self.catalog is not None else item.payload

    def context(self, item: PushItem) -> dict[str, Any]:
        return {**self.client.context, "record": self.wire(item), "target_id": item.target_id,
                "existing": item.existing or {}, "match": {"field": self.match_field, "value": item.match_value}}

    def step_context(self, item: PushItem, action: str) -> dict[str, Any]:
        return {**self.context(item), "action": action}

    def step_index(self, name: str) -> int | None:
        return next((index for index, step in enumerate(self.steps) if step.name == name), None)

    def record_body(self, op: WriteOp, item: PushItem) -> dict[str, Any]:
        context = self.context(item)
        body = op.body.evaluate(context) if op.body is not None else dict(context["record"])
        if op.merge is not None:
            body.update(op.merge.evaluate(context))
        return body


class _Push:
    """One push: its work queue, the results so far, and which source key holds which target record."""

    def __init__(self, writer: EntityWriter) -> None:
        self.w = writer
        self.results: list[PushResult] = []
        self.claims: dict[str, str] = {}  # target id -> the source key writing it in this push
        self.matching: dict[str, str] = {}  # match key -> the source key looking for it in this push
        self.stopping = False  # cancelled (a stop signal, a failure elsewhere): nothing new starts, unknowns park
        self.queue = WorkQueue(self.step, writer.concurrency, self._batch_size)

    def _batch_size(self, action: str) -> int:
        op = self.w.op(action)
        return op.size if op is not None else 1

    async def run(self, items: list[PushItem]) -> list[PushResult]:
        for item in items:
            if item.target_id is not None:
                self.claims.setdefault(item.target_id, item.source_key)
        for item in items:
            self.route(item)
        try:
            await self.queue.drain()
        except BaseException as exc:  # a failure group from the task group, the loop's own, or a cancellation:
            self.stopping = True
            # creates of unknown outcome still waiting for their re-check, and confirmed writes still waiting for a
            # step (their target id must be recorded, or a later run would write them again)
            for job in self.queue.jobs:
                if job.kind == CHECK:
                    self.unknown(job.items[0], job.action, job.reason, job.failed_at)
                elif job.kind == STEP:
                    self.fail(job.items[0], job.action, "not sent: the push stopped before this step", step=job.step)
                elif job.kind == STEP_CHECK:
                    self.fail(job.items[0], job.action, f"outcome unknown: {job.reason}", unknown=True, step=job.step)
            raise PushAborted(root_cause(exc), self.results) from exc  # confirmed writes are recorded all the same
        return self.results

    # ---- where a record goes next -------------------------------------------------------------------------

    def route(self, item: PushItem) -> None:
        """Resume at a step left by an earlier run; find the target record first when the strategy says so; write."""
        w = self.w
        if item.resume is not None and item.target_id is not None:
            index = w.step_index(item.resume)
            if index is not None:  # (a step the spec no longer has: the record is written again in full)
                self.resume(item, index)
                return
        if item.target_id is None and item.unknown_create:
            if w.finder.can_recheck and w.finder.key(item.match_value) is not None:
                self.queue.add(Job(LOOK, [item], self._create_action()))
            elif item.on_demand:
                self.write(item, self._create_action())
            else:
                self.fail(item, CREATE, "outcome unknown (an earlier create may have landed) and nothing can look "
                                        "for it: check the target, then replay it", unknown=True)
            return
        if w.strategy == "link_only" and item.target_id is not None:
            self.results.append(PushResult(item, LINK, target_id=item.target_id))  # linked already: no call
            return
        if item.target_id is None:
            key = w.finder.key(item.match_value)
            holder = self.matching.setdefault(key, item.source_key) if key is not None else item.source_key
            if holder != item.source_key:
                self.fail(item, CREATE, f"source keys {holder} and {item.source_key} both match "
                                        f"{w.match_field}={item.match_value!r}")
                return
            if w.strategy in ("search_then_write", "link_only"):
                self.queue.add(Job(RESOLVE, [item]))
                return
        if w.strategy == "search_then_write":
            self.write(item, UPDATE)
        elif w.strategy == "update_only" and item.target_id is None:
            self.fail(item, UPDATE, "no target record to update")
        elif w.strategy == "update_only":
            self.write(item, UPDATE)
        elif w.strategy == "upsert" and item.target_id is not None and w.update is not None:
            self.write(item, UPDATE)  # the target record is known: updated by its id, whatever its key holds now
        elif w.strategy == "create_only" and item.target_id is not None:
            self.fail(item, UPDATE, f"{w.entity} is create-only and already holds this record (target "
                                    f"{item.target_id}): the change is not sent (a create would duplicate it)")
        else:
            self.write(item, UPSERT if w.strategy == "upsert" else CREATE)

    def resume(self, item: PushItem, index: int) -> None:
        """Send the step an earlier run left; one whose earlier attempt may have landed is read back first unless
        repeating it is harmless or a person asked for it."""
        step = self.w.steps[index]
        if not item.unknown_create or step.idempotent or item.on_demand:
            self.queue.add(Job(STEP, [item], UPDATE, step=index))
        elif step.config.expect is not None and self.w.can_read_back:
            self.queue.add(Job(STEP_CHECK, [item], UPDATE, "an earlier run lost its answer", step=index))
        else:
            self.fail(item, UPDATE, "outcome unknown (an earlier attempt may have landed) and nothing can read it "
                                    "back: check the target, then replay it", unknown=True, step=index)

    def _create_action(self) -> str:
        return UPSERT if self.w.strategy == "upsert" else CREATE

    def write(self, item: PushItem, action: str) -> None:
        op = self.w.op(action)
        if op is None:
            self.fail(item, action, f"{self.w.entity} has no {action} operation")
        elif action == UPDATE and op.fetch_existing and item.existing is None:
            self.queue.add(Job(LOAD, [item], action))
        else:
            self.queue.write(action, item)

    def retry(self, item: PushItem, action: str, error: str, step: int | None = None) -> bool:
        """The one place an item's attempt budget is spent: False (and parked) when it is used up."""
        if item.attempts >= self.w.max_attempts:
            self.fail(item, action, f"gave up after {item.attempts} attempts: {error}", step=step)
            return False
        item.attempts += 1
        return True

    def gone(self, item: PushItem, action: str, error: str) -> None:
        """The target record was deleted: parked, unless search_then_write may find or create it again (within the
        budget), which it may only when the mapping does not name the target id itself."""
        if self.w.strategy != "search_then_write" or item.pinned:
            self.fail(item, action, f"target record not found: {item.target_id} ({error})")
        elif self.retry(item, action, error):
            item.target_id, item.existing = None, None
            self.route(item)

    def unknown(self, item: PushItem, action: str, reason: str, failed_at: float) -> None:
        """The answer leaves the outcome open: a create is re-checked (never re-sent in this run) or parked, an
        update is read back before any re-send; while the push is stopping, both are parked at once."""
        if self.stopping:
            self.fail(item, action, f"outcome unknown: {reason}", unknown=_reported(item, action) == CREATE)
        elif _reported(item, action) == CREATE:
            if self.w.finder.can_recheck and self.w.finder.key(item.match_value) is not None:
                self.queue.add(Job(CHECK, [item], action, reason, failed_at))
            else:
                self.fail(item, action, f"outcome unknown: {reason}", unknown=True)
        elif self.w.can_read_back:
            self.queue.add(Job(REREAD, [item], action, reason))
        else:
            self.fail(item, action, f"outcome unknown: {reason}")

    # ---- outcomes -----------------------------------------------------------------------------------------

    def confirm(self, item: PushItem, action: str, target_id: str, created: bool | None = None) -> None:
        if action == UPSERT:
            action = CREATE if created or (created is None and item.target_id is None) else UPDATE
        self.claims.setdefault(target_id, item.source_key)
        self.w.finder.remember(item.match_value, target_id)
        item.target_id = target_id
        self.follow(item, action, 0)

    def follow(self, item: PushItem, action: str, start: int) -> None:
        """The main write is confirmed: the next step whose `when` holds goes next; written when none is left."""
        context = self.w.step_context(item, action)
        for index in range(start, len(self.w.steps)):
            if self.w.steps[index].applies(context):
                if self.stopping:
                    self.fail(item, action, "not sent: the push stopped before this step", step=index)
                else:
                    self.queue.add(Job(STEP, [item], action, step=index))
                return
        self.results.append(PushResult(item, action, target_id=item.target_id))

    def fail(self, item: PushItem, action: str, error: str, *, unknown: bool = False, step: int | None = None) -> None:
        """A result that is not written; after a confirmed main write (``step``) it names the step left."""
        if step is None:
            self.results.append(PushResult(item, _reported(item, action), error=error, unknown=unknown))
        else:
            name = self.w.steps[step].name
            self.results.append(PushResult(item, action, target_id=item.target_id, error=f"step {name}: {error}",
                                           unknown=unknown, step=name))

    def conflict(self, item: PushItem, target: str) -> str | None:
        """Why a found target record cannot be this item's: another source key holds it (this push or id map)."""
        owners = self.w.owners([target]).get(target, []) if self.w.owners is not None else []
        others = [key for key in [self.claims.get(target), *owners] if key and key != item.source_key]
        return f"target record {target} is already mapped to source key {others[0]}" if others else None

    # ---- jobs ---------------------------------------------------------------------------------------------

    async def step(self, job: Job) -> None:
        if job.kind == RESOLVE:
            await self._resolve(job.items[0])
        elif job.kind == LOAD:
            await self._load(job.items[0], job.action)
        elif job.kind == WRITE:
            await self._write(job.action, job.items)
        elif job.kind == CHECK:
            await self._check(job)
        elif job.kind == LOOK:
            await self._look(job)
        elif job.kind == STEP:
            await self._step(job)
        elif job.kind == STEP_CHECK:
            await self._step_check(job)
        else:
            await self._reread(job)

    async def _find(self, item: PushItem, action: str, *, unknown: bool = False
                    ) -> tuple[bool, dict[str, Any] | None]:
        """(still going, the one target record matching the item or None); a failure is recorded here (``unknown``:
        as a create of unknown outcome, which a later run must still look for before creating it)."""
        try:
            hits = await self.w.finder.find(item.match_value)
        except RecordError as exc:
            self.fail(item, action, str(exc), unknown=unknown)
            return False, None
        if len(hits) > 1:
            ids = ", ".join(str(h.get(self.w.key_field)) for h in hits[:5])
            self.fail(item, action, f"{len(hits)} target records match {self.w.match_field}={item.match_value!r} "
                                    f"(ids {ids}); resolve the duplicate")
            return False, None
        if not hits:
            return True, None
        target = str(hits[0][self.w.key_field])
        conflict = self.conflict(item, target)
        if conflict is not None:
            self.fail(item, action, conflict)
            return False, None
        self.claims[target] = item.source_key
        return True, hits[0]

    async def _resolve(self, item: PushItem) -> None:
        going, hit = await self._find(item, LINK if self.w.strategy == "link_only" else CREATE)
        if not going:
            return
        if self.w.strategy == "link_only":
            if hit is None:
                self.fail(item, LINK, f"no {self.w.entity} with {self.w.match_field}={item.match_value!r} in the "
                                      f"target (this flow only links to existing records)")
            else:
                self.results.append(PushResult(item, LINK, target_id=str(hit[self.w.key_field])))
            return
        if hit is None:
            self.write(item, CREATE)
        else:
            item.target_id, item.existing = str(hit[self.w.key_field]), self._existing(hit)
            self.write(item, UPDATE)

    def _existing(self, hit: dict[str, Any]) -> dict[str, Any] | None:
        """A found record as the update's existing record; one known by its id alone is read when needed."""
        return hit if self.w.finder.complete(hit) else None

    async def _load(self, item: PushItem, action: str) -> None:
        try:
            item.existing = await self.w.fetch(str(item.target_id))
        except RecordError as exc:
            self.fail(item, action, str(exc))
            return
        if item.existing is None:
            self.gone(item, action, f"target record {item.target_id} is gone")
        else:
            self.queue.write(action, item)

    async def _check(self, job: Job) -> None:
        """A create of unknown outcome: look in the consistent views; found = it landed, else it is parked.

        Not found yet is no proof it failed (a target may apply a create after its answer was lost): sending it
        again now could create it twice, so a later run looks for it after the grace period.
        """
        [item] = job.items
        try:
            await self.w.finder.refresh_after_uncertain(job.failed_at)
            going, hit = await self._find(item, job.action, unknown=True)
        except asyncio.CancelledError:  # stopped mid-check: the create may have landed, so it is parked as such
            self.stopping = True
            self.unknown(item, job.action, job.reason, job.failed_at)
            raise
        except TransientError as exc:  # the views could not be read (retries spent): still unknown, not the push's end
            self.fail(item, job.action, f"outcome unknown: {job.reason}; looking for it failed: {exc}", unknown=True)
            return
        if not going:
            return
        if hit is not None:
            self.confirm(item, job.action, str(hit[self.w.key_field]), created=True)
        else:
            self.fail(item, job.action, f"outcome unknown: {job.reason}", unknown=True)

    async def _look(self, job: Job) -> None:
        """A create an earlier run left unknown: found = it landed (sent again as an update when the record has
        changed since); not found = it never did, create it."""
        [item] = job.items
        going, hit = await self._find(item, job.action, unknown=True)
        if not going:
            return
        if hit is None:
            self.write(item, job.action)
            return
        target = str(hit[self.w.key_field])
        if first_difference(self.w.wire(item), hit) is None or self.w.update is None:
            self.confirm(item, job.action, target, created=True)
        else:
            item.target_id, item.existing = target, self._existing(hit)
            self.write(item, UPDATE)

    async def _reread(self, job: Job) -> None:
        """An update of unknown outcome: read the record back; carrying what we sent = it landed."""
        [item] = job.items
        try:
            record = await self.w.fetch(str(item.target_id))
        except RecordError as exc:
            self.fail(item, job.action, f"outcome unknown: {job.reason}; reading it back failed: {exc}")
            return
        if record is None:
            self.gone(item, job.action, f"outcome unknown: {job.reason}; target record {item.target_id} is gone")
            return
        difference = first_difference(self.w.wire(item), record)
        if difference is None:
            self.confirm(item, job.action, str(item.target_id), created=False)
        elif self.retry(item, job.action, f"outcome unknown: {job.reason}; read back, {difference} differs"):
            item.existing = record
            self.queue.write(job.action, item)

    async def _write(self, action: str, items: list[PushItem]) -> None:
        w = self.w
        op = w.op(action)
        assert op is not None  # write() checked
        bodies = [w.record_body(op, item) for item in items]
        if op.batch_body is not None:
            context = {**w.client.context, "records": bodies}
            body: Any = op.batch_body.evaluate(context)
        else:
            context, body = w.context(items[0]), bodies[0]
        try:
            path = str(_path(op.path, context))
        except RecordError as exc:
            self._rejected(op, action, items, exc)
            return
        call = w.client.request(op.method, path, params=op.params.evaluate(context), json=body, quota=op.quota,
                                idempotent=op.idempotent)

        def lost(reason: str) -> None:
            for item in items:
                self.unknown(item, action, reason, time.monotonic())

        await self._call(call, lambda request: self._answered(op, action, items, request), lost)

    async def _call(self, call: Coroutine[Any, Any, Reply], answered: Callable[[asyncio.Future[Reply]], None],
                    lost: Callable[[str], None]) -> None:
        """Send one write call and apply its answer. Cancelled (the run is stopping), the call on the wire gets the
        connector's limits.stop_grace to be answered and is applied all the same; unanswered, its outcome is lost."""
        request = asyncio.ensure_future(call)
        try:
            await asyncio.wait({request})  # unlike awaiting it, a cancellation of this job leaves the call running
        except asyncio.CancelledError:
            self.stopping = True
            grace = self.w.client.options.stop_grace
            done, _ = await asyncio.wait({request}, timeout=grace)
            if done:
                answered(request)
            else:
                request.cancel()
                with suppress(asyncio.CancelledError):
                    await request
                lost("the run was stopped with this write in flight (no answer within the connector's "
                     f"limits.stop_grace, {grace:g} s)")
            raise
        answered(request)

    async def _step(self, job: Job) -> None:
        """Send one follow-up step of a record whose main write is confirmed."""
        [item] = job.items
        step = self.w.steps[job.step]
        context = self.w.step_context(item, job.action)
        try:
            path = str(_path(step.config.path, context))
        except RecordError as exc:
            self.fail(item, job.action, str(exc), step=job.step)
            return
        call = self.w.client.request(step.config.method, path, params=step.config.params.evaluate(context),
                                     json=step.body(context), quota=step.config.quota, idempotent=step.idempotent)
        await self._call(call, lambda request: self._step_answered(job, request),
                         lambda reason: self._step_unknown(job, reason))

    def _step_answered(self, job: Job, request: asyncio.Future[Reply]) -> None:
        [item] = job.items
        try:
            request.result()
        except UncertainWrite as exc:
            self._step_unknown(job, str(exc))
        except (TransientError, RecordError) as exc:
            self.fail(item, job.action, str(exc), step=job.step)
        else:
            self.follow(item, job.action, job.step + 1)

    def _step_unknown(self, job: Job, reason: str) -> None:
        """A step whose answer is lost is never counted: read back when it says what it leaves, else parked."""
        if not self.stopping and self.w.steps[job.step].config.expect is not None and self.w.can_read_back:
            self.queue.add(Job(STEP_CHECK, job.items, job.action, reason, step=job.step))
        else:
            self.fail(job.items[0], job.action, f"outcome unknown: {reason}", unknown=True, step=job.step)

    async def _step_check(self, job: Job) -> None:
        """A step of unknown outcome: read the record back; carrying what the step leaves = it landed, else it is
        sent again (within the attempt budget)."""
        [item] = job.items
        try:
            record = await self.w.fetch(str(item.target_id))
        except RecordError as exc:
            self.fail(item, job.action, f"outcome unknown: {job.reason}; reading it back failed: {exc}", unknown=True,
                      step=job.step)
            return
        except asyncio.CancelledError:
            self.stopping = True
            self.fail(item, job.action, f"outcome unknown: {job.reason}", unknown=True, step=job.step)
            raise
        if record is None:
            self.fail(item, job.action, f"target record not found: {item.target_id}", step=job.step)
            return
        expected = self.w.steps[job.step].expected(self.w.step_context(item, job.action))
        difference = first_difference(expected, record)
        if difference is None:
            self.follow(item, job.action, job.step + 1)
        elif self.retry(item, job.action, f"outcome unknown: {job.reason}; read back, {difference} differs",
                        step=job.step):
            self.queue.add(Job(STEP, [item], job.action, step=job.step))

    def _answered(self, op: WriteOp, action: str, items: list[PushItem], request: asyncio.Future[Reply]) -> None:
        """Apply the answer (or the failure) of a write call to its items."""
        try:
            reply = request.result()
        except UncertainWrite as exc:
            failed_at = time.monotonic()
            for item in items:
                self.unknown(item, action, str(exc), failed_at)
            return
        except TransientError as exc:  # the client spent the retries this call allows
            for item in items:
                self.fail(item, action, str(exc))
            return
        except RecordError as exc:
            self._rejected(op, action, items, exc)
            return
        if op.batch_body is not None:
            self._settle(op, action, items, op.answers(reply.body, self._sent(items)))
            return
        [item] = items
        id_path = op.id_path
        found = id_path.evaluate(reply.body) if id_path is not None and isinstance(reply.body, (dict, list)) else None
        if found is not None or (id_path is None and item.target_id is not None):
            # confirmed by the id the spec says the answer carries, or (no id declared) by the status alone
            self.confirm(item, action, str(found) if found is not None else str(item.target_id),
                         op.created(reply.status, reply.body))
        else:  # a 2xx that confirms nothing (a proxy's page, a body without the record): it may or may not have landed
            where = id_path.source if id_path is not None else "(no id declared)"
            self.unknown(item, action, f"the {_reported(item, action)} answer (HTTP {reply.status}) carries no id at "
                                       f"{where}", time.monotonic())

    def _sent(self, items: list[PushItem]) -> list[Sent]:
        return [Sent(item.match_value, item.target_id) for item in items]

    def _rejected(self, op: WriteOp, action: str, items: list[PushItem], exc: RecordError) -> None:
        """A call rejected as a whole: failures it names are parked, an unnamed rejection is split to find them."""
        answers = op.answers(exc.body, self._sent(items)) if op.batch_body is not None else []
        if any(a.error for a in answers):
            self._settle(op, action, items, answers, exc)
        elif len(items) > 1:  # halves, sent as they are: n records cost at most 2n - 1 calls in all
            middle = len(items) // 2
            self.queue.add(Job(WRITE, items[:middle], action))
            self.queue.add(Job(WRITE, items[middle:], action))
        elif exc.status == 404 and action == UPDATE:
            self.gone(items[0], action, str(exc))
        else:
            self.fail(items[0], action, str(exc))

    def _settle(self, op: WriteOp, action: str, items: list[PushItem], answers: list[Answer],
                rejected: RecordError | None = None) -> None:
        """Apply a batch answer item by item; an atomic batch with a failure saved nothing, so the rest go again."""
        nothing_saved = op.atomic and any(a.error for a in answers)
        failed_at = time.monotonic()
        for item, answer in zip(items, answers, strict=True):
            if answer.error is not None:
                self.fail(item, action, f"{rejected}: {answer.error}" if rejected else answer.error)
            elif nothing_saved:
                self.queue.write(action, item)
            elif not answer.confirmed:
                self.unknown(item, action, answer.unknown, failed_at)
            elif answer.target_id is None and item.target_id is None:
                self.fail(item, action, "the batch response carries no id for this item")
            else:
                self.confirm(item, action, answer.target_id or str(item.target_id), answer.created)


def _path(path: Expr, context: Mapping[str, Any]) -> Any:
    """A request path built from a record: a value that makes it unsafe is that record's error, not the flow's."""
    try:
        return path.evaluate(context)
    except UnsafePath as exc:
        raise RecordError(str(exc)) from None


def _reported(item: PushItem, action: str) -> str:
    """The action a result reports: an upsert is an update of a known target record, else a create."""
    if action == UPSERT:
        return UPDATE if item.target_id is not None else CREATE
    return action
