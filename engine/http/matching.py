"""Finding the target record a source record matches: a listed index, recent changes, or the API's search."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import jmespath

from engine.http.client import ConnectorClient
from engine.http.errors import RecordError
from engine.transform.expressions import TemplateTree, compile_path

Records = Callable[[], Awaitable[list[dict[str, Any]]]]


def get_path(record: Mapping[str, Any], dotted: str) -> Any:
    node: Any = record
    for part in dotted.split("."):
        if not isinstance(node, Mapping):
            return None
        node = node.get(part)
    return node


class TargetFinder:
    """Answers "which target records carry this match value?" as cheaply and as safely as the API allows.

    * a prefetched index of the whole entity (one list read instead of a search per record), when many are unknown;
    * the records changed within the search index's lag (``search_lag``), read by a consistent list call;
    * otherwise the API's search.
    """

    def __init__(self, client: ConnectorClient, write: Mapping[str, Any], match_field: str | None, key_field: str,
                 *, recent: Records | None = None, everything: Records | None = None) -> None:
        self.client = client
        self.match_field = match_field
        self.key_field = key_field
        self.search = write.get("search")
        if self.search:
            self._search_path = compile_path(self.search["path"])
            self._search_params = TemplateTree(self.search.get("params") or {})
            self._search_records = jmespath.compile(self.search.get("records", "data"))
        prefetch = write.get("prefetch")
        self.prefetch_min: int | None = int(prefetch.get("min", 25)) if prefetch is not None else None
        self.index: dict[str, list[dict[str, Any]]] | None = None
        self._recent_reader = recent if write.get("search_lag") else None
        self._recent: dict[str, list[dict[str, Any]]] | None = None
        self._lock = asyncio.Lock()
        self._everything = everything
        self._refreshed_at = 0.0  # when the last re-read of the consistent views (index, recent) started

    def _by_match(self, records: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
        index: dict[str, list[dict[str, Any]]] = {}
        for record in records:
            value = get_path(record, self.match_field) if self.match_field else None
            if value not in (None, ""):
                index.setdefault(str(value), []).append(record)
        return index

    def use_index(self, records: list[dict[str, Any]]) -> None:
        """Match against these target records (the whole entity, read once) instead of searching."""
        self.index = self._by_match(records)

    async def prepare(self, unresolved: int) -> None:
        """Read the whole target entity once when that is cheaper than one search per unknown record."""
        if self.index is None and self._everything is not None and self.prefetch_min is not None \
                and unresolved >= self.prefetch_min:
            self.use_index(await self._everything())

    async def refresh_after_uncertain(self, failed_at: float) -> bool:
        """Re-read the consistent views (not a search index that may lag) after a create of unknown outcome.

        A re-read that started after the failure sees that create if it landed, so concurrent failures share one.
        False when nothing can tell whether the create landed.
        """
        if self._recent_reader is None and (self.index is None or self._everything is None) and not self.search:
            return False
        async with self._lock:
            if self._refreshed_at < failed_at:
                self._refreshed_at = time.monotonic()
                if self._recent_reader is not None:
                    self._recent = self._by_match(await self._recent_reader())
                if self.index is not None and self._everything is not None:
                    self.index = self._by_match(await self._everything())
        return True

    async def _recently_changed(self) -> dict[str, list[dict[str, Any]]]:
        """Target records changed within the search index's lag, read by a consistent list call (not search)."""
        if self._recent_reader is None:
            return {}
        async with self._lock:
            if self._recent is None:
                self._recent = self._by_match(await self._recent_reader())
            return self._recent

    def remember(self, match_value: Any, record: dict[str, Any]) -> None:
        """A record this run wrote: later records with the same match value find it without asking the API."""
        if match_value in (None, ""):
            return
        for index in (self.index, self._recent):
            if index is not None:
                index[str(match_value)] = [record]

    async def find(self, match_value: Any) -> list[dict[str, Any]]:
        """Target records whose match field equals ``match_value``."""
        if self.index is not None:
            return list(self.index.get(str(match_value), []))
        if not self.search or match_value in (None, ""):
            return []
        recent = await self._recently_changed()  # what the search index may not show yet
        if str(match_value) in recent:
            return list(recent[str(match_value)])
        context = {**self.client.context, "match": {"field": self.match_field, "value": match_value}}
        try:
            reply = await self.client.request(
                "GET", str(self._search_path.evaluate(context)), params=self._search_params.render(context),
                quota=self.search.get("quota"))
        except RecordError as exc:
            if exc.status in set(self.search.get("not_found") or []):
                return []
            raise
        hits = self._search_records.search(reply.body)
        if isinstance(hits, dict):
            hits = [hits]
        return [h for h in (hits or []) if isinstance(h, dict)]
