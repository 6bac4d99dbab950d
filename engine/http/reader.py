"""Reading an entity: paged, incremental from a watermark, with children expanded per page."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from ml_connector.config import Expr
from ml_connector.config.entity import EntityConfig, ExpandConfig
from ml_connector.http.bodies import RecordsAt
from ml_connector.http.catalog import LazyCatalog
from ml_connector.http.client import ConnectorClient
from ml_connector.http.errors import FatalError
from ml_connector.http.jobs import BulkRead
from ml_connector.http.keyed import batches, distinct_keys, key_text
from ml_connector.http.paginators import PageGuard, pages_empty, start_cursor

EPOCH = "1970-01-01T00:00:00Z"  # where a first read's start call begins (paginators.start_cursor)


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


class Latest:
    """The latest of many timestamps as given, each parsed once (a read offers one per record)."""

    def __init__(self, value: str | None) -> None:
        self.value = value
        self._moment = parse_timestamp(value) if value else None
        self._last: tuple[str, datetime] | None = None

    def offer(self, stamp: str) -> datetime:
        """Keep ``stamp`` when it is later than the latest so far (ties keep the first); returns its moment."""
        last = self._last
        if last is not None and last[0] == stamp:  # records of one batch often share their stamp
            moment = last[1]
        else:
            moment = parse_timestamp(stamp)
            self._last = (stamp, moment)
        if self._moment is None or moment > self._moment:
            self.value, self._moment = stamp, moment
        return moment


def later(a: str | None, b: str | None) -> str | None:
    """The later of two timestamps (as given), ignoring missing ones."""
    if not a or not b:
        return a or b
    return a if parse_timestamp(a) >= parse_timestamp(b) else b


class EntityReader:
    """Reads one entity of one connection."""

    def __init__(self, client: ConnectorClient, entity: str, config: EntityConfig,
                 catalog: LazyCatalog | None = None) -> None:
        if config.read is None:
            raise FatalError(f"{client.connection.name}.{entity} cannot be read (no read operation)")
        self.client = client
        self.entity = entity
        self.config = config
        self.read = config.read
        self.catalog = catalog
        self.records = RecordsAt(self.read.records, none_statuses=frozenset(self.read.empty_statuses))
        self.incremental = self.read.incremental
        self._max_depth = self.read.max_depth
        self.server_date: str | None = None  # the HTTP Date of the last read's first page: the source's clock
        self.read_path = "list"  # which read ran last: "list" (paging the list) or "bulk" (a server-side job)

    @property
    def watermark_field(self) -> str | None:
        return self.incremental.field if self.incremental is not None else self.config.updated

    @property
    def lookback(self) -> float:
        """Seconds an incremental read reaches back before its watermark."""
        return self.incremental.lookback if self.incremental is not None else 0.0

    async def pages(self, *, since: str | None = None, params: Expr | None = None, expand: Sequence[str] = (),
                    bulk: bool = True, keys: Sequence[str] | None = None) -> AsyncIterator[list[dict[str, Any]]]:
        """Pages of records changed since ``since`` (all records without it), children expanded.

        ``params``: a flow's own query parameters (templates), added to the read's. ``bulk``: False for a sample
        of a few records (a preview), which must not start a server-side job. ``keys``: the records a keyed read
        (``read.keys``) asks for; such a read is a full read of its key set, ``since`` does not apply.
        """
        where = f"{self.client.connection.name}.{self.entity}"
        if self.read.keys is None:
            if keys is not None:
                raise FatalError(f"{where} has no read.keys: it is listed, not read by keys")
            async for page in self._pages(self.client.context, since, params, expand, bulk):
                yield page
            return
        if keys is None:
            raise FatalError(f"{where} is read by keys (read.keys): only a flow with from.keys can read it")
        for batch in batches(distinct_keys(keys), self.read.keys.batch):  # no keys: no request, no records
            async for page in self._pages({**self.client.context, "keys": batch}, None, params, expand, False):
                yield page

    async def _pages(self, context: Mapping[str, Any], since: str | None, params: Expr | None,
                     expand: Sequence[str], bulk: bool) -> AsyncIterator[list[dict[str, Any]]]:
        """One read: a bulk job, or one paged query (several when the API caps how deep a query may page)."""
        base = dict(self.read.params.evaluate({**context, "since": None}))
        own = dict(params.evaluate(context)) if params is not None else {}
        base.update(own)
        job_spec = self.read.bulk
        if job_spec is not None and bulk and not own and (since is None or job_spec.when == "always"):
            # a full read as one server-side job; a flow's own filter parameters keep the list (a job ignores them)
            self.read_path = "bulk"
            job = BulkRead(self.client, f"{self.client.connection.name}.{self.entity}", job_spec, self.config.fields)
            formatted = self._query({}, since, self.lookback)[1]
            async for rows in job.pages(since=formatted):
                self.server_date = job.date  # the first create's answer: when the read began, by the source
                yield await self._finish(rows, expand)
            self.server_date = job.date
            return
        self.read_path = "list"
        path = str(self.read.path.evaluate(context))
        paginator = self.client.paginator(self.read.paginator)
        lookback = self.lookback
        first = True
        boundary: set[str] = set()  # keys already read at the value a restarted query starts from
        after: str | None = None  # narrow: key — the last key of the previous query (`page.after`)
        while True:  # one query, or several when the API caps how deep a query may page
            query, formatted = self._query(base, since, lookback)
            if formatted is not None:  # the read's parameters may carry the watermark (a query in a GET parameter)
                query.update({key: value for key, value in
                              self.read.params.evaluate({**context, "since": formatted}).items() if key not in own})
            last: str | None = None
            guard = self._guard(self.read.method, path, self._key)
            guard.empty_ok = pages_empty(paginator)
            first_page = await start_cursor(paginator, {**query, **paginator.first()}, self._start_call, context,
                                            formatted, format_watermark(EPOCH, self._format, 0.0))
            page_params: dict[str, Any] | None = guard.start(first_page)
            depth, newest = 0, None
            seen_at_newest: set[str] = set()
            restart = False
            while page_params is not None:
                page = {**paginator.variables(page_params), "after": after}  # for a query text that pages itself
                body = self.read.body.evaluate({**context, "since": formatted, "page": page}) \
                    if self.read.body is not None else None
                query_params, json_body = paginator.request(page_params, body)  # paging in the query or the body
                target = paginator.path(page_params, path, self.client.base_url)  # a next-URL paginator's link
                reply = await self.client.request(self.read.method, target, params=query_params, json=json_body,
                                                  reads=True, idempotent=True, records=self.records,
                                                  quota=self.read.quota, headers=self._since_header(formatted))
                if first:
                    self.server_date, first = reply.headers.get("date"), False
                rows = [r for r in reply.records or () if isinstance(r, dict)]
                depth += len(rows)
                last = self._key(rows[-1]) if rows else last
                newest, seen_at_newest = self._track_newest(rows, newest, seen_at_newest)
                records = [r for r in rows if self._key(r) not in boundary] if boundary else rows
                yield await self._finish(records, expand)
                page_params = guard.next(paginator.next(page_params, reply.body, rows), rows)
                if page_params is not None and self._max_depth and depth >= self._max_depth:
                    restart = True
                    break
            if not restart:
                return
            if self.read.narrow == "key":  # sorted by key: the next query starts after the last key read
                if last is None or last == after:
                    raise FatalError(f"{self.client.connection.name}.{self.entity}: narrowing by key makes no "
                                     f"progress: the query after {self.config.key} {after!r} ended at {last!r} again")
                after = last
                continue
            if newest is None or newest == since:
                raise FatalError(f"{self.client.connection.name}.{self.entity}: more than {self._max_depth} records "
                                 f"share {self.watermark_field}={newest!r}; the API cannot page deeper")
            since, lookback, boundary = newest, 0.0, seen_at_newest

    @property
    def _format(self) -> str:
        return self.incremental.format if self.incremental is not None else "iso"

    async def _start_call(self, path: str, params: dict[str, Any], quota: str | None) -> Any:
        """A paginator's start call (the first cursor), on the read's quota unless it names its own."""
        reply = await self.client.request("GET", path, params=params, reads=True, idempotent=True,
                                          quota=quota or self.read.quota)
        return reply.body

    def _since_header(self, formatted: str | None) -> dict[str, str] | None:
        """The watermark as a request header, for APIs that take it so (``If-Modified-Since``)."""
        header = self.incremental.header if self.incremental is not None else None
        return {header: formatted} if header and formatted else None

    async def _finish(self, records: list[dict[str, Any]], expand: Sequence[str]) -> list[dict[str, Any]]:
        """A page as the flow sees it: custom fields by label, children expanded."""
        catalog = await self.catalog.get() if self.catalog is not None and records else None
        if catalog is not None:
            records = [catalog.to_labels(r) for r in records]
        for name in expand:
            await self._expand(records, name)
        return records

    def _query(self, base: dict[str, Any], since: str | None, lookback: float) -> tuple[dict[str, Any], str | None]:
        """Query parameters for a read from ``since``, and the watermark as the API wants it (for a body)."""
        if not since or not self.incremental:
            return dict(base), None
        formatted = format_watermark(since, self.incremental.format, lookback)
        param = self.incremental.param
        return ({**base, param: formatted} if param else dict(base)), formatted

    def _guard(self, method: str, path: str, key: Callable[[Any], Any] | None = None) -> PageGuard:
        """Bounds for paging one query of ``path`` (the connector's ``limits.max_pages``)."""
        where = f"{self.client.connection.name}.{self.entity}: {method} {path}"
        return PageGuard(where, self.client.connection.connector.limits.max_pages, key)

    def _key(self, record: Mapping[str, Any]) -> str:
        return str(record.get(self.config.key))

    def _track_newest(self, records: list[dict[str, Any]], newest: str | None,
                      at_newest: set[str]) -> tuple[str | None, set[str]]:
        """The newest incremental value in this query so far, and the keys of the records that carry it."""
        field = self.watermark_field
        if not field or not self._max_depth:
            return newest, at_newest
        for record in records:
            value = record.get(field)
            if not isinstance(value, str) or not value:
                continue
            if newest is None or later(newest, value) == value and value != newest:
                newest, at_newest = value, {self._key(record)}
            elif value == newest:
                at_newest.add(self._key(record))
        return newest, at_newest

    async def _expand(self, records: list[dict[str, Any]], name: str) -> None:
        if name not in self.config.expand:
            raise FatalError(f"{self.client.connection.name}.{self.entity}: no expansion {name!r}")
        expansion: ExpandConfig = self.config.expand[name]
        if expansion.parent_field is not None:  # a reference field: distinct values, sorted; parents without none
            key_field = expansion.parent_field
            keys = distinct_keys(r.get(key_field) for r in records)
        else:
            key_field = self.config.key
            keys = [str(r[key_field]) for r in records if r.get(key_field) is not None]
        children: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for chunk in batches(keys, expansion.batch):
            context = {**self.client.context, "keys": chunk, "id": chunk[0]}
            paginator = self.client.paginator(expansion.paginator)
            path = str(expansion.path.evaluate(context))
            guard = self._guard("GET", path)
            params: dict[str, Any] | None = guard.start({**expansion.params.evaluate(context), **paginator.first()})
            while params is not None:
                reply = await self.client.request("GET", paginator.path(params, path, self.client.base_url),
                                                  params=paginator.request(params, None)[0],
                                                  records=RecordsAt(expansion.records), quota=expansion.quota)
                rows = [r for r in reply.records or () if isinstance(r, dict)]
                for row in rows:
                    owner = key_text(row.get(expansion.parent_key)) if expansion.parent_key else chunk[0]
                    if owner is not None:  # a child naming no parent belongs to none
                        children[owner].append(row)
                params = guard.next(paginator.next(params, reply.body, rows), rows)
        for record in records:
            parent = key_text(record.get(key_field))
            record[name] = list(children.get(parent, [])) if parent is not None else []

