"""Lookups into other flows' id maps from mapping templates; a miss defers the record."""

from __future__ import annotations

from typing import Any

from engine.store import IdMaps
from engine.transform.mapping import Deferred


class IdMapLookups:
    """``lookup(flow, source_key)`` and ``lookup_source(flow, target_id)``, cached for one flow run."""

    def __init__(self, id_maps: IdMaps, known_flows: set[str]) -> None:
        self.id_maps = id_maps
        self.known_flows = known_flows
        self._forward: dict[tuple[str, str], str | None] = {}
        self._reverse: dict[tuple[str, str], str | None] = {}

    def _check(self, flow: str) -> None:
        if flow not in self.known_flows:
            raise ValueError(f"lookup into unknown flow {flow!r}")

    def lookup(self, flow: str, source_key: Any) -> str:
        self._check(flow)
        if source_key is None or source_key == "":
            raise Deferred(f"lookup({flow!r}) got an empty key")
        key = (flow, str(source_key))
        if key not in self._forward:
            self._forward[key] = self.id_maps.target_of(flow, str(source_key))
        found = self._forward[key]
        if found is None:
            raise Deferred(f"{flow} has not synced source key {source_key!r} yet")
        return found

    def lookup_source(self, flow: str, target_id: Any) -> str:
        self._check(flow)
        if target_id is None or target_id == "":
            raise Deferred(f"lookup_source({flow!r}) got an empty id")
        key = (flow, str(target_id))
        if key not in self._reverse:
            self._reverse[key] = self.id_maps.source_of(flow, str(target_id))
        found = self._reverse[key]
        if found is None:
            raise Deferred(f"{flow} has no source record for target id {target_id!r}")
        return found
