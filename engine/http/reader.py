"""Reading an entity: paged, incremental from a watermark, with children expanded per page."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import AsyncIterator, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import jmespath

from engine.http.catalog import LazyCatalog
from engine.http.client import ConnectorClient
from engine.http.errors import FatalError
from engine.transform.expressions import TemplateTree, compile_path


def parse_timestamp(value: str) -> datetime:
    """An ISO 8601 / RFC 3339 timestamp as an aware datetime (naive values are UTC)."""
    parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def format_watermark(value: str, fmt: str, lookback: float) -> str:
    """The watermark as the API wants it, moved back by ``lookback`` seconds."""
    if fmt == "iso" and not lookback:
        return value
    moment = parse_timestamp(value) - timedelta(seconds=lookback)
    if fmt == "iso":
        return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")
    return moment.astimezone(UTC).strftime(fmt)


def later(a: str | None, b: str | None) -> str | None:
    """The later of two timestamps (as given), ignoring missing ones."""
    if not a or not b:
        return a or b
    return a if parse_timestamp(a) >= parse_timestamp(b) else b


class EntityReader:
    """Reads one entity of one connection."""

    def __init__(self, client: ConnectorClient, entity: str, spec: Mapping[str, Any],
                 catalog: LazyCatalog | None = None) -> None:
        if "read" not in spec:
            raise FatalError(f"{client.connection.name}.{entity} cannot be read (no read operation)")
        self.client = client
        self.entity = entity
        self.spec = spec
        self.read = spec["read"]
        self.catalog = catalog
        self.records_path = jmespath.compile(self.read.get("records", "data"))
        self.incremental = self.read.get("incremental")
        self._path = compile_path(self.read["path"])
        self._params = TemplateTree(self.read.get("params") or {})
        self._expansions = {name: _Expansion(spec) for name, spec in (spec.get("expand") or {}).items()}

    @property
    def watermark_field(self) -> str | None:
        return (self.incremental or {}).get("field") or self.spec.get("updated")

    async def pages(self, *, since: str | None = None, params: Mapping[str, Any] | None = None,
                    expand: list[str] | None = None) -> AsyncIterator[list[dict[str, Any]]]:
        context = self.client.context
        query = self._params.render(context)
        query.update(TemplateTree(params or {}).render(context))
        if since and self.incremental:
            query[self.incremental["param"]] = format_watermark(
                since, self.incremental.get("format", "iso"), float(self.incremental.get("lookback", 0)))
        path = str(self._path.evaluate(context))
        paginator = self.client.paginator(self.read.get("paginator"))
        page_params: dict[str, Any] | None = {**query, **paginator.first()}
        while page_params is not None:
            reply = await self.client.request("GET", path, params=page_params)
            records = [r for r in (self.records_path.search(reply.body) or []) if isinstance(r, dict)]
            catalog = await self.catalog.get() if self.catalog is not None and records else None
            if catalog is not None:
                records = [catalog.to_labels(r) for r in records]
            for name in expand or []:
                await self._expand(records, name)
            yield records
            page_params = paginator.next(page_params, reply.body, records)

    async def _expand(self, records: list[dict[str, Any]], name: str) -> None:
        if name not in self._expansions:
            raise FatalError(f"{self.client.connection.name}.{self.entity}: no expansion {name!r}")
        expansion = self._expansions[name]
        key_field = self.spec.get("key", "id")
        keys = [str(r[key_field]) for r in records if r.get(key_field) is not None]
        children: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for start in range(0, len(keys), expansion.batch):
            chunk = keys[start:start + expansion.batch]
            context = {**self.client.context, "keys": chunk, "id": chunk[0]}
            paginator = self.client.paginator(expansion.paginator)
            params: dict[str, Any] | None = {**expansion.params.render(context), **paginator.first()}
            path = str(expansion.path.evaluate(context))
            while params is not None:
                reply = await self.client.request("GET", path, params=params)
                rows = [r for r in (expansion.records.search(reply.body) or []) if isinstance(r, dict)]
                for row in rows:
                    owner = str(row.get(expansion.parent_key)) if expansion.parent_key else chunk[0]
                    children[owner].append(row)
                params = paginator.next(params, reply.body, rows)
        for record in records:
            record[name] = children.get(str(record.get(key_field)), [])


class _Expansion:
    """A compiled ``expand`` entry: children fetched for a batch of parent keys."""

    def __init__(self, spec: Mapping[str, Any]) -> None:
        self.path = compile_path(spec["path"])
        self.params = TemplateTree(spec.get("params") or {})
        self.records = jmespath.compile(spec.get("records", "data"))
        self.batch = int(spec.get("batch", 1))
        self.parent_key: str | None = spec.get("parent_key")
        self.paginator: str | None = spec.get("paginator")
