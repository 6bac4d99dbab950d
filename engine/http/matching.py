"""Finding the target record a source record matches: a listed index, recent changes, or the API's search.

A found record counts only when its match field *equals* the match value; normalisation (case-folding, trimming)
applies only where the mapping opts in (``match.normalize``).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from ml_connector.config import Expr
from ml_connector.config.entity import WriteConfig
from ml_connector.http.bodies import RecordsAt
from ml_connector.http.client import ConnectorClient
from ml_connector.http.errors import RecordError
from ml_connector.http.written_ids import WrittenIds

Records = Callable[[], Awaitable[list[dict[str, Any]]]]
Fetch = Callable[[str], Awaitable[dict[str, Any] | None]]
NORMALIZERS: dict[str, Callable[[str], str]] = {"casefold": str.casefold, "trim": str.strip}


def get_path(record: Mapping[str, Any], dotted: str) -> Any:
    node: Any = record
    for part in dotted.split("."):
        if not isinstance(node, Mapping):
            return None
        node = node.get(part)
    return node


def match_key(value: Any, normalize: Iterable[str] = ()) -> str | None:
    """The text two match values must share to match (None: the value matches nothing)."""
    if value is None or isinstance(value, (dict, list)):
        return None
    text = str(value)
    for name in normalize:
        text = NORMALIZERS[name](text)
    return text or None


def says_none(rule: Expr | None, body: Any) -> bool:
    """Whether a search answer's body says nothing was found (the search's ``not_found_body``)."""
    return rule is not None and isinstance(body, (dict, list)) and bool(rule.evaluate(body))


class WrittenHit(dict[str, Any]):
    """A record this run wrote, found by its match key: it carries the target id only (not the record), so that the
    matcher's memory stays flat in the number of records written. An update that merges from the existing record
    reads it first (``fetch_existing``), as for any record known by its id alone."""


@dataclass(frozen=True)
class SearchHits(RecordsAt):
    """A search's records: none when the body says so, else what the records path holds (one object is one hit).

    Checked inside the client call, so an answer that is neither (a maintenance page) is still retried as a read.
    """

    none: Expr | None = None

    def of(self, body: Any) -> list[Any]:
        return [] if says_none(self.none, body) else super().of(body)


class TargetFinder:
    """Answers "which target records carry this match value?" as cheaply and as safely as the API allows.

    * a prefetched index of the whole entity (one list read instead of a search per record), when many are unknown;
    * the records changed within the search index's lag (``search_lag``), read by a consistent list call;
    * otherwise the API's search, whose hits are checked: one that does not show the match field is read in full.
    """

    def __init__(self, client: ConnectorClient, write: WriteConfig, match_field: str | None, key_field: str,
                 *, normalize: Iterable[str] = (), recent: Records | None = None, everything: Records | None = None,
                 fetch: Fetch | None = None, labels: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
                 remember_written: bool = True) -> None:
        self.client = client
        self.match_field = match_field
        self.key_field = key_field
        self.normalize = tuple(normalize)
        self.search = write.search
        self._hits = SearchHits(write.search.records, single=True, none=write.search.not_found_body) \
            if write.search is not None else None
        self.prefetch_min = write.prefetch.min if write.prefetch is not None else None
        self.index: dict[str, list[dict[str, Any]]] | None = None
        self._recent_reader = recent if write.search_lag else None
        self._recent: dict[str, list[dict[str, Any]]] | None = None
        self._lock = asyncio.Lock()
        self._everything = everything
        self._fetch = fetch
        self._labels = labels  # wire record -> the names mappings use (custom-field labels)
        self._refreshed_at = 0.0  # when the last re-read of the consistent views (index, recent) started
        # match key -> target id of the records this run wrote, until the view find() consults is read again
        # (a fingerprint and an id per record, never the payload: a million written records take ~25 MB, not 150)
        self._written = WrittenIds()
        # False where a match value is its record's own key: a later record with that value is the same record,
        # and its link in the id map answers (the flow asks the map before the matcher)
        self._remember_written = remember_written

    def key(self, value: Any) -> str | None:
        """The match key of a match value (normalised only as the mapping asks)."""
        return match_key(value, self.normalize)

    def _by_match(self, records: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
        index: dict[str, list[dict[str, Any]]] = {}
        for record in records:
            key = self.key(get_path(record, self.match_field)) if self.match_field else None
            if key is not None:
                index.setdefault(key, []).append(record)
        return index

    def use_index(self, records: list[dict[str, Any]]) -> None:
        """Match against these target records (the whole entity, read once) instead of searching."""
        self.index = self._by_match(records)
        self._written.clear()  # the list read shows what this run wrote before it

    async def prepare(self, unresolved: int) -> None:
        """Read the whole target entity once when that is cheaper than one search per unknown record."""
        if self.index is None and self._everything is not None and self.prefetch_min is not None \
                and unresolved >= self.prefetch_min:
            self.use_index(await self._everything())

    @property
    def can_recheck(self) -> bool:
        """Whether anything can tell if a create of unknown outcome landed."""
        return self._recent_reader is not None or (self.index is not None and self._everything is not None) \
            or self.search is not None

    async def refresh_after_uncertain(self, failed_at: float) -> None:
        """Re-read the consistent views (not a search index that may lag) after a create of unknown outcome.

        A re-read that started after the failure sees that create if it landed, so concurrent failures share one.
        """
        async with self._lock:
            if self._refreshed_at < failed_at:
                self._refreshed_at = time.monotonic()
                if self._recent_reader is not None:
                    self._recent = self._by_match(await self._recent_reader())
                    if self.index is None:  # the view find() consults was read again: it shows what was written
                        self._written.clear()
                if self.index is not None and self._everything is not None:
                    self.index = self._by_match(await self._everything())
                    self._written.clear()

    async def _recently_changed(self) -> dict[str, list[dict[str, Any]]]:
        """Target records changed within the search index's lag, read by a consistent list call (not search)."""
        if self._recent_reader is None:
            return {}
        async with self._lock:
            if self._recent is None:
                self._recent = self._by_match(await self._recent_reader())
            return self._recent

    def remember(self, match_value: Any, target_id: str) -> None:
        """A record this run wrote: later records with the same match value find it without asking the API (only
        where a consistent view is in use; otherwise that view, read later, shows it)."""
        key = self.key(match_value)
        if key is not None and self._remember_written and (self.index is not None or self._recent is not None):
            self._written[key] = target_id

    def complete(self, hit: dict[str, Any]) -> bool:
        """Whether a hit is the target record as stored (not a record this run wrote, known by its id alone)."""
        return not isinstance(hit, WrittenHit)

    def _written_hit(self, key: str) -> list[dict[str, Any]] | None:
        target = self._written.get(key)
        return None if target is None else [WrittenHit({self.key_field: target})]

    async def find(self, match_value: Any) -> list[dict[str, Any]]:
        """Target records whose match field equals ``match_value``."""
        key = self.key(match_value)
        if key is None or self.match_field is None:
            return []
        if self.index is not None:
            return self._written_hit(key) or list(self.index.get(key, []))
        search = self.search
        if search is None:
            return []
        recent = await self._recently_changed()  # what the search index may not show yet
        written = self._written_hit(key)
        if written is not None:
            return written
        if key in recent:
            return list(recent[key])
        context = {**self.client.context, "match": {"field": self.match_field, "value": match_value}}
        body = search.body.evaluate(context) if search.body is not None else None
        try:  # whatever its method, a search is a read: retried like a GET, counted as a read
            reply = await self.client.request(
                search.method, str(search.path.evaluate(context)), params=search.params.evaluate(context),
                json=body, quota=search.quota, idempotent=True, reads=True, records=self._hits)
        except RecordError as exc:
            if exc.status in search.not_found or says_none(search.not_found_body, exc.body):
                return []
            raise
        found = [await self._confirmed(hit, key) for hit in reply.records or () if isinstance(hit, dict)]
        return [hit for hit in found if hit is not None]

    async def _confirmed(self, hit: dict[str, Any], key: str) -> dict[str, Any] | None:
        """The hit when its match field equals the key; a hit that does not show the field is read in full."""
        value = self._value(hit)
        if value is None:
            target = hit.get(self.key_field)
            if target is None:
                return None
            if self._fetch is None:
                raise RecordError(f"search hit {target!r} does not show {self.match_field}; "
                                  "the entity needs a get to confirm it")
            fetched = await self._fetch(str(target))
            if fetched is None:
                return None
            hit, value = fetched, self._value(fetched)
        return hit if self.key(value) == key else None

    def _value(self, record: dict[str, Any]) -> Any:
        assert self.match_field is not None  # find() asks only with a match field
        return get_path(self._labels(dict(record)) if self._labels else record, self.match_field)
