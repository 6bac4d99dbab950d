"""Lookups into other flows' id maps from mapping templates; a miss defers the record, an empty value parks it."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ml_connector.store import IdMaps
from ml_connector.transform.mapping import Deferred, require_reference

_DEFER = object()  # no default given: a miss defers the record


class IdMapLookups:
    """``lookup(flow, source_key[, default])`` and ``lookup_source(flow, target_id[, default])``, cached per flow run.

    A miss defers the record, unless a default is given: then the record goes on with it (a reference that is
    optional, or a record that may be new on this side).
    """

    def __init__(self, id_maps: IdMaps, known_flows: set[str]) -> None:
        self.id_maps = id_maps
        self.known_flows = known_flows
        self._cache: dict[tuple[str, str, str], str | None] = {}

    def lookup(self, flow: str, source_key: Any, default: Any = _DEFER) -> Any:
        """The target id ``flow`` wrote for ``source_key``."""
        return self._find("target", flow, source_key, self.id_maps.target_of,
                          f"{flow} has not synced source key {source_key!r} yet", default)

    def lookup_source(self, flow: str, target_id: Any, default: Any = _DEFER) -> Any:
        """The source key ``flow`` wrote to ``target_id``."""
        return self._find("source", flow, target_id, self.id_maps.source_of,
                          f"{flow} has no source record for target id {target_id!r}", default)

    def _find(self, direction: str, flow: str, value: Any, query: Callable[[str, str], str | None],
              missing: str, default: Any) -> Any:
        if flow not in self.known_flows:
            raise ValueError(f"lookup into unknown flow {flow!r}")
        key = (direction, flow, require_reference(flow, value))
        if key not in self._cache:
            self._cache[key] = query(flow, str(value))
        found = self._cache[key]
        if found is None:
            if default is _DEFER:
                raise Deferred(missing)
            return default
        return found
