"""`ml-connector preview FLOW --limit 5`: what a flow would send, record by record, and how each would change its
target record, without writing anything (not to the target, not to the state).

For each of the first N source records: the record, the mapped payload, and where it would go. A record the target
already holds (by the id map, or found read-only by the flow's match search) is read back with the entity's `get`,
and each payload field is compared with the target's current value at the same path.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import click
import httpx

from ml_connector.commands.options import workspace_option
from ml_connector.config import MappingConfig
from ml_connector.http.errors import ConnectorError
from ml_connector.http.matching import get_path
from ml_connector.http.reader import EntityReader
from ml_connector.http.redact import REDACTOR
from ml_connector.http.writer import EntityWriter, first_difference
from ml_connector.store import State
from ml_connector.sync.keyed import flow_keys
from ml_connector.sync.lookups import IdMapLookups
from ml_connector.sync.runner import Runner
from ml_connector.transform.mapping import CompiledMapping, Deferred, MappingError
from ml_connector.workspace import Workspace

MATCHED = ("search_then_write", "upsert")


def base_transport() -> httpx.AsyncBaseTransport | None:
    """The network (None: httpx's own); tests put an in-process API here."""
    return None


@dataclass
class Change:
    field: str
    current: Any
    new: Any


@dataclass
class Preview:
    """One source record as the flow would handle it."""

    key: str | None
    source: dict[str, Any]
    action: str  # create | update | deferred | filtered | failed
    payload: dict[str, Any] | None = None
    target_id: str | None = None
    found_by: str | None = None  # "id map" | "match"
    reason: str | None = None
    changes: list[Change] = field(default_factory=list)
    unchanged: int = 0


def leaves(payload: Mapping[str, Any], prefix: str = "") -> Iterator[tuple[str, Any]]:
    """(dotted path, value) of every field a payload sets; lists are one value, compared whole."""
    for name, value in payload.items():
        path = f"{prefix}{name}"
        if isinstance(value, Mapping) and value:
            yield from leaves(value, path + ".")
        else:
            yield path, value


def compare(payload: Mapping[str, Any], current: Mapping[str, Any]) -> tuple[list[Change], int]:
    """The payload fields the target's current value does not carry, and how many it does carry.

    "Carries" as a read-back check means it: what the API adds next to a sent value (ids and defaults inside a
    list of objects) is no change.
    """
    changes = [Change(path, get_path(current, path), value) for path, value in leaves(payload)
               if first_difference(value, get_path(current, path)) is not None]
    return changes, sum(1 for _ in leaves(payload)) - len(changes)


class Previewer:
    """Maps the first records of one flow and compares them with the target, reading only."""

    def __init__(self, runner: Runner, state: State, config: MappingConfig) -> None:
        self.runner = runner
        self.state = state
        self.config = config
        self.mapping = CompiledMapping(config)
        self.lookups = IdMapLookups(state.id_maps, set(runner.project.flows))
        self.match_field = config.match.target if config.match is not None else None
        self._writer: EntityWriter | None = None

    async def writer(self) -> EntityWriter:
        """The target's writer, used only for its read-only parts (match search, get)."""
        if self._writer is None:
            target = self.config.target
            entity = self.runner.entity(target.connection, target.entity)
            catalog = await self.runner.catalog(target.connection, target.entity, entity).get() \
                if entity.custom_fields is not None else None
            self._writer = EntityWriter(
                self.runner.client(target.connection), target.entity, entity, match_field=self.match_field,
                catalog=catalog, match_normalize=self.config.match.normalize if self.config.match else ())
        return self._writer

    async def records(self, limit: int) -> list[dict[str, Any]]:
        source = self.config.source
        entity = self.runner.entity(source.connection, source.entity)
        reader = EntityReader(self.runner.client(source.connection), source.entity, entity,
                              self.runner.catalog(source.connection, source.entity, entity))
        units: list[dict[str, Any]] = []
        keys = flow_keys(self.state, source.keys)  # a keyed read: the keys the id map of source.keys.flow holds
        async for page in reader.pages(params=source.params, expand=source.expand, bulk=False, keys=keys):
            for record in page:
                units.extend(self.mapping.explode(record))
            if len(units) >= limit:
                break
        return units[:limit]

    async def preview(self, unit: dict[str, Any]) -> Preview:
        key: str | None = None
        try:
            key = self.mapping.source_key(unit)
            result = self.mapping.map(unit, self.lookups.lookup, self.lookups.lookup_source, key=key)
        except Deferred as exc:
            return Preview(key, unit, "deferred", reason=str(exc))
        except MappingError as exc:
            return Preview(key, unit, "failed", reason=str(exc))
        if result.payload is None:
            return Preview(key, unit, "filtered")
        item = Preview(key, unit, "create", result.payload)
        entry = self.state.id_maps.get_many(self.config.flow, [key]).get(key)
        item.target_id = result.target_id or (entry.target_id if entry else None)
        item.found_by = "id map" if item.target_id else None
        writer = await self.writer()
        current: dict[str, Any] | None = None
        write = self.runner.entity(self.config.target.connection, self.config.target.entity).write
        if item.target_id is None and self.match_field and write is not None and write.strategy in MATCHED:
            hits = await writer.finder.find(get_path(result.payload, self.match_field))
            if len(hits) > 1:
                item.action, item.reason = "failed", f"{len(hits)} target records match {self.match_field}"
                return item
            if hits:
                item.target_id, item.found_by = str(hits[0].get(writer.key_field)), "match"
                current = hits[0]
        if item.target_id is None:
            return item
        item.action = "update"
        if writer.can_read_back:
            current = await writer.fetch(item.target_id)
            if current is None:
                item.action, item.reason = "create", f"target record {item.target_id} is gone"
                return item
            if writer.catalog is not None:
                current = writer.catalog.to_labels(dict(current))
        if current is None:
            item.reason = "the target entity has no get: current values not shown"
            return item
        item.changes, item.unchanged = compare(result.payload, current)
        return item


def preview_flow(workspace: Workspace, flow: str, limit: int,
                 transport: httpx.AsyncBaseTransport | None = None) -> list[Preview]:
    """The first ``limit`` records of ``flow`` as it would handle them; nothing is written anywhere."""
    state = workspace.state()
    try:
        runner = Runner(workspace.project, state, transport=transport or base_transport())
        config = runner.flow_config(flow)

        async def previews() -> list[Preview]:
            previewer = Previewer(runner, state, config)
            try:
                return [await previewer.preview(unit) for unit in await previewer.records(limit)]
            finally:
                await runner.aclose()

        return asyncio.run(previews())
    finally:
        state.close()


def _text(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=str, ensure_ascii=False)


def lines(items: list[Preview]) -> Iterator[str]:
    for number, item in enumerate(items, start=1):
        where = {"create": "create", "update": f"update target {item.target_id} (found by {item.found_by})"}.get(
            item.action, item.action)
        yield f"[{number}] {item.key or '?'}: {where}" + (f": {item.reason}" if item.reason else "")
        yield f"  source:  {_text(item.source)}"
        if item.payload is not None:
            yield f"  payload: {_text(item.payload)}"
        if item.action == "update" and item.reason is None:
            if item.changes:
                yield "  changes:"
                for change in item.changes:
                    yield f"    {change.field}: {_text(change.current)} -> {_text(change.new)}"
            yield f"  ({item.unchanged} {'field' if item.unchanged == 1 else 'fields'} already as sent)"


@click.command()
@workspace_option
@click.argument("flow")
@click.option("--limit", default=5, show_default=True, type=click.IntRange(1, 1000),
              help="How many source records to show.")
@click.option("--json", "as_json", is_flag=True, help="Print the previews as JSON.")
def preview(workspace_path: Path, flow: str, limit: int, as_json: bool) -> None:
    """Show what FLOW would send for its first source records and, for records the target already holds, each
    field's current value next to the new one. Reads only: nothing is written to the target or the state.

    \b
    Example:
      ml-connector preview items_to_products --limit 5
    """
    workspace = Workspace.open(workspace_path)
    if flow not in workspace.project.flows:
        raise click.BadParameter(f"unknown flow {flow!r} (flows: {', '.join(sorted(workspace.project.flows))})",
                                 param_hint="FLOW")
    try:
        items = preview_flow(workspace, flow, limit)
    except ConnectorError as exc:
        raise ConnectorError(f"{flow}: {exc}") from exc
    if as_json:
        click.echo(REDACTOR(json.dumps([asdict(item) for item in items], indent=2, default=str)))
        return
    for line in lines(items):
        click.echo(REDACTOR(line))
    if not items:
        click.echo("the source has no records")
