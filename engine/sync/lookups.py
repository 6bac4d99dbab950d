"""Lookups into other flows' id maps from mapping templates; a miss defers the record, an empty value parks it."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ml_connector.store import IdMaps
from ml_connector.transform.mapping import Deferred, require_reference


class IdMapLookups:
    """``lookup(flow, source_key)`` and ``lookup_source(flow, target_id)``, cached for one flow run."""

    def __init__(self, id_maps: IdMaps, known_flows: set[str]) -> None:
        self.id_maps = id_maps
        self.known_flows = known_flows
        self._cache: dict[tuple[str, str, str], str | None] = {}

    def lookup(self, flow: str, source_key: Any) -> str:
        """The target id ``flow`` wrote for ``source_key``."""
        return self._find("target", flow, source_key, self.id_maps.target_of,
                          f"{flow} has not synced source key {source_key!r} yet")

    def lookup_source(self, flow: str, target_id: Any) -> str:
        """The source key ``flow`` wrote to ``target_id``."""
        return self._find("source", flow, target_id, self.id_maps.source_of,
                          f"{flow} has no source record for target id {target_id!r}")

    def _find(self, direction: str, flow: str, value: Any, query: Callable[[str, str], str | None],
              missing: str) -> str:
        if flow not in self.known_flows:
            raise ValueError(f"lookup into unknown flow {flow!r}")
        key = (direction, flow, require_reference(flow, value))
        if key not in self._cache:
            self._cache[key] = query(flow, str(value))
        found = self._cache[key]
        if found is None:
            raise Deferred(missing)
        return found
