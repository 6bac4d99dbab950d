"""Echo suppression for two-way flows: a change made on one side costs one write, and nothing is written back.

Two flows name each other as `reverse` and sync the same records in opposite directions. Without care, flow A
writes a change to side B, flow B then reads that write as a change of its own and writes the same value back to
side A (an echo), and the next run may bounce it again.

The guard keeps, per flow and target record, what that record was last known to hold at the flow's field paths
(`IdMaps.target_values`): noted when the reverse flow reads the record (it is the reverse flow's source) and when
the flow itself writes it. A changed payload the target already holds is an echo: it is not sent; the id map takes
its hash as if written, so the record is unchanged on later runs.

The pair is aligned by id: each flow's `key` is the record id the other flow writes to. A record the flow has no
target id for yet is paired through the reverse flow's id map (the reverse flow wrote this very record).

Conflicts (the same record changed on both sides between runs) are record-wide: the flow that runs first (the
`depends_on` order) writes its whole payload, and the other flow then reads that value back as an echo.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from ml_connector.config import MappingConfig
from ml_connector.http.matching import get_path
from ml_connector.store import IdMaps
from ml_connector.transform.mapping import CompiledMapping, MappingError


def project(record: Mapping[str, Any], paths: Iterable[str]) -> dict[str, Any]:
    """The record's values at the given dotted field paths (None where it has none)."""
    return {path: get_path(record, path) for path in paths}


def holds(known: Any, wanted: Any) -> bool:
    """Whether a target known to hold ``known`` already holds ``wanted`` (a payload's value).

    Objects compare by the keys the payload sends (a target may carry more); a missing value equals null; lists
    compare item by item; true is not 1.
    """
    if isinstance(wanted, Mapping):
        return isinstance(known, Mapping) and all(holds(known.get(k), v) for k, v in wanted.items())
    if isinstance(wanted, list):
        return (isinstance(known, list) and len(known) == len(wanted)
                and all(holds(k, w) for k, w in zip(known, wanted, strict=True)))
    if isinstance(wanted, bool) or isinstance(known, bool):
        return wanted is known
    return bool(wanted == known)


class EchoGuard:
    """Echo suppression for one flow of a two-way pair (``reverse`` syncs the same records the other way)."""

    def __init__(self, flow: MappingConfig, reverse: MappingConfig, id_maps: IdMaps) -> None:
        self.flow, self.reverse = flow.flow, reverse.flow
        self.paths = tuple(flow.fields)  # what this flow writes
        self.reverse_paths = tuple(reverse.fields)  # what the reverse flow writes into this flow's sources
        self.id_maps = id_maps

    def read(self, mapping: CompiledMapping, records: Iterable[Mapping[str, Any]]) -> None:
        """Source records this flow read are the reverse flow's targets (by their key): note what they hold."""
        rows = []
        for record in records:
            try:
                rows.append((mapping.source_key(record), project(record, self.reverse_paths)))
            except MappingError:  # no key: the flow parks it, and no target of the reverse flow is this record
                continue
        self.id_maps.note_target_values(self.reverse, rows)

    def wrote(self, rows: Iterable[tuple[str, Mapping[str, Any]]]) -> None:
        """Payloads the target confirmed (by target id): the target now holds them."""
        self.id_maps.note_target_values(self.flow, [(target, project(payload, self.paths))
                                                     for target, payload in rows])

    def paired(self, keys: list[str]) -> dict[str, str]:
        """Source keys the reverse flow wrote (it made this very record from one of our targets): that target.

        Such a record is new to this flow's id map, yet its target exists: it must be updated there, never matched
        by key or created (a target made on the other side does not hold our key yet).
        """
        return {key: found[0] for key, found in self.id_maps.sources_of(self.reverse, keys).items()
                if len(found) == 1}

    def echoes(self, changed: Iterable[tuple[str, Mapping[str, Any], str | None]]) -> dict[str, str]:
        """Of changed (source key, payload, target id or None) records, those whose target already holds the
        payload: source key -> target id."""
        items = list(changed)
        paired = self.paired([key for key, _, target in items if target is None])
        targets = {key: target or paired.get(key) for key, _, target in items}
        known = self.id_maps.target_values(self.flow, [t for t in targets.values() if t is not None])
        found = {}
        for key, payload, _ in items:
            target = targets[key]
            if target is not None and target in known and holds(known[target], project(payload, self.paths)):
                found[key] = target
        return found
