"""Writing an entity: write strategies, single and batch calls, per-item results, safe retries of creates."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import jmespath

from engine.http.catalog import FieldCatalog
from engine.http.client import ConnectorClient, UncertainWrite
from engine.http.errors import FatalError, RecordError
from engine.http.matching import Records, TargetFinder
from engine.http.write_ops import WriteOp
from engine.transform.expressions import TemplateTree, compile_path

CREATE = "create"
UPDATE = "update"


@dataclass
class PushItem:
    """One changed record on its way to the target."""

    source_key: str
    payload: dict[str, Any]
    match_value: Any = None
    target_id: str | None = None
    existing: dict[str, Any] | None = None
    attempts: int = 1


@dataclass
class PushResult:
    item: PushItem
    action: str
    target_id: str | None = None
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


class EntityWriter:
    """Pushes changed records to one entity with the entity's write strategy."""

    def __init__(self, client: ConnectorClient, entity: str, spec: Mapping[str, Any], *,
                 match_field: str | None, catalog: FieldCatalog | None = None, concurrency: int = 4,
                 recent: Records | None = None, everything: Records | None = None) -> None:
        write = spec.get("write")
        if not write:
            raise FatalError(f"{client.connection.name}.{entity} cannot be written (no write operation)")
        self.client = client
        self.entity = entity
        self.spec = spec
        self.strategy: str = write.get("strategy", "search_then_write")
        self.match_field = match_field
        self.catalog = catalog
        self.create = WriteOp.compile(write["create"]) if write.get("create") else None
        self.update = WriteOp.compile(write["update"]) if write.get("update") else None
        get = spec.get("get")
        self._get = (compile_path(get["path"]), TemplateTree(get.get("params") or {}),
                     jmespath.compile(get.get("record", "data"))) if get else None
        self.key_field: str = spec.get("key", "id")
        self._slots = asyncio.Semaphore(concurrency)
        self.finder = TargetFinder(client, write, match_field, self.key_field, recent=recent, everything=everything)

    async def prepare(self, unresolved: int) -> None:
        """Before pushing: list the target once when many records of this run are unknown to the id map."""
        await self.finder.prepare(unresolved)

    def _remember(self, item: PushItem, target_id: str) -> None:
        self.finder.remember(item.match_value, {**item.payload, self.key_field: target_id})

    async def fetch(self, target_id: str) -> dict[str, Any] | None:
        if self._get is None:
            raise FatalError(f"{self.entity}: fetch_existing needs a get operation")
        path, params, record = self._get
        context = {**self.client.context, "id": target_id}
        try:
            reply = await self.client.request("GET", str(path.evaluate(context)), params=params.render(context))
        except RecordError as exc:
            if exc.status == 404:
                return None
            raise
        found = record.search(reply.body)
        return found if isinstance(found, dict) else None

    async def _resolve(self, item: PushItem) -> PushResult | None:
        """Decide create or update for an item the id map does not know. None = decided (item mutated)."""
        async with self._slots:
            hits = await self.finder.find(item.match_value)
        if len(hits) > 1:
            ids = ", ".join(str(h.get(self.key_field)) for h in hits[:5])
            return PushResult(item, UPDATE, error=f"{len(hits)} target records match {self.match_field}="
                                                  f"{item.match_value!r} (ids {ids}); resolve the duplicate")
        if hits:
            item.target_id = str(hits[0][self.key_field])
            item.existing = hits[0]
        return None

    # ---- push ------------------------------------------------------------------------------------------------

    async def push(self, items: list[PushItem]) -> list[PushResult]:
        """Write every item; each gets exactly one result (ok with a target id, or an error)."""
        results: list[PushResult] = []
        if self.strategy == "search_then_write":
            unresolved = [item for item in items if item.target_id is None]
            decided = await asyncio.gather(*(self._guard(self._resolve(i), i, CREATE) for i in unresolved))
            results.extend(r for r in decided if r is not None)
            failed = {id(r.item) for r in results}
            items = [i for i in items if id(i) not in failed]
        creates = [i for i in items if i.target_id is None]
        updates = [i for i in items if i.target_id is not None]
        if self.strategy == "update_only":
            results.extend(PushResult(i, UPDATE, error="no target record to update") for i in creates)
            creates = []
        if self.strategy in {"upsert", "create_only"}:
            creates, updates = creates + updates, []
        if creates:
            results.extend(await self._write(CREATE, creates))
        if updates:
            results.extend(await self._write(UPDATE, updates))
        return results

    async def _guard(self, coro: Any, item: PushItem, action: str) -> PushResult | None:
        try:
            result: PushResult | None = await coro
            return result
        except RecordError as exc:
            return PushResult(item, action, error=str(exc))

    async def _write(self, action: str, items: list[PushItem]) -> list[PushResult]:
        op = self.create if action == CREATE else self.update
        if op is None:
            return [PushResult(i, action, error=f"{self.entity} has no {action} operation") for i in items]
        if op.fetch_existing:
            loaded = await asyncio.gather(*(self._guard(self._load_existing(i), i, action)
                                            for i in items if i.existing is None))
            unreadable = [r for r in loaded if r is not None]
            if unreadable:
                failed = {id(r.item) for r in unreadable}
                return unreadable + await self._write(action, [i for i in items if id(i) not in failed])
            gone = [i for i in items if i.existing is None]
            items = [i for i in items if i.existing is not None]
            if gone:  # the target record vanished: forget it and go the create path
                for item in gone:
                    item.target_id = None
                recreated = await self.push(gone)
                return recreated + await self._write(action, items)
        if op.batch_body is not None:
            chunks = [items[i:i + op.batch_size] for i in range(0, len(items), op.batch_size)]
            nested = await asyncio.gather(*(self._batch(action, op, chunk) for chunk in chunks))
            return [result for chunk in nested for result in chunk]
        return list(await asyncio.gather(*(self._single(action, op, item) for item in items)))

    async def _load_existing(self, item: PushItem) -> None:
        async with self._slots:
            item.existing = await self.fetch(str(item.target_id))
        return None

    def _context(self, item: PushItem) -> dict[str, Any]:
        return {**self.client.context, "record": self._wire(item), "target_id": item.target_id,
                "existing": item.existing or {}, "match": {"field": self.match_field, "value": item.match_value}}

    def _wire(self, item: PushItem) -> dict[str, Any]:
        return self.catalog.to_keys(item.payload) if self.catalog is not None else item.payload

    def _record_body(self, op: WriteOp, item: PushItem) -> dict[str, Any]:
        context = self._context(item)
        body = op.body.render(context) if op.body is not None else dict(context["record"])
        if op.merge is not None:
            body.update(op.merge.render(context))
        return body

    async def _single(self, action: str, op: WriteOp, item: PushItem) -> PushResult:
        for _ in range(3):
            context = self._context(item)
            try:
                async with self._slots:
                    reply = await self.client.request(
                        op.method, str(op.path.evaluate(context)), params=op.params.render(context),
                        json=self._record_body(op, item), quota=op.quota, idempotent=op.idempotent)
            except UncertainWrite as exc:
                if action != CREATE:
                    continue
                item.attempts += 1
                if not await self.finder.refresh_after_uncertain(time.monotonic()):
                    return PushResult(item, action, error=f"outcome unknown, parked to be checked: {exc}")
                hits = await self.finder.find(item.match_value)  # did the create land after all?
                if hits:
                    self._remember(item, str(hits[0][self.key_field]))
                    return PushResult(item, action, target_id=str(hits[0][self.key_field]))
                continue
            except RecordError as exc:
                if action == UPDATE and exc.status == 404 and self.strategy == "search_then_write":
                    item.target_id, item.existing = None, None  # deleted in the target: find or create again
                    return (await self.push([item]))[0]
                return PushResult(item, action, error=str(exc))
            new_id = op.id_path.search(reply.body) if op.id_path is not None else None
            target = str(new_id) if new_id is not None else item.target_id
            if target is None:
                return PushResult(item, action, error=f"the {action} response carries no id at "
                                                      f"{self.spec['write'][action].get('id')!r}")
            self._remember(item, target)
            return PushResult(item, action, target_id=target)
        return PushResult(item, action, error=f"{action} failed: outcome unknown after 3 attempts")

    async def _batch(self, action: str, op: WriteOp, items: list[PushItem]) -> list[PushResult]:
        assert op.batch_body is not None
        bodies = [self._record_body(op, item) for item in items]
        context = {**self.client.context, "records": bodies}
        try:
            async with self._slots:
                reply = await self.client.request(
                    op.method, str(op.path.evaluate(context)), params=op.params.render(context),
                    json=op.batch_body.render(context), quota=op.quota, idempotent=op.idempotent)
        except UncertainWrite:
            if len(items) == 1 and items[0].attempts >= 3:
                return [PushResult(items[0], action, error=f"{action} failed: outcome unknown after 3 attempts")]
            if not await self.finder.refresh_after_uncertain(time.monotonic()):
                return [PushResult(i, action, error="outcome unknown, parked to be checked") for i in items]
            for item in items:  # re-resolve: records that landed are updates now
                item.attempts += 1
                item.target_id, item.existing = None, None
            return await self.push(items)
        except RecordError as exc:
            errors = op.item_errors(exc.body, [i.match_value for i in items])
            if errors:
                failed = [PushResult(items[i], action, error=f"{exc}: {msg}") for i, msg in errors.items()]
                rest = [item for i, item in enumerate(items) if i not in errors]
                if op.atomic and rest:
                    return failed + await self._batch(action, op, rest)
                return failed + [PushResult(i, action, error=f"batch rejected: {exc}") for i in rest]
            if len(items) > 1:  # rejected as a whole without naming culprits: split and retry
                middle = len(items) // 2
                return await self._batch(action, op, items[:middle]) + await self._batch(action, op, items[middle:])
            return [PushResult(items[0], action, error=str(exc))]
        return self._batch_results(action, op, items, reply.body)

    def _batch_results(self, action: str, op: WriteOp, items: list[PushItem], body: Any) -> list[PushResult]:
        values = [item.match_value for item in items]
        errors = op.item_errors(body, values)
        ids = op.saved_ids(body, values)
        results = []
        for index, item in enumerate(items):
            target = ids.get(index, item.target_id)
            if index in errors:
                results.append(PushResult(item, action, error=errors[index]))
            elif target is None:
                results.append(PushResult(item, action, error="the batch response carries no id for this item"))
            else:
                self._remember(item, target)
                results.append(PushResult(item, action, target_id=target))
        return results
