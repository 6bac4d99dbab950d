"""Typed mapping (flow) config: source and target, key, filter, let, fields with child lists, match, examples.

Field names are the spec's keys (`from`, `to` and `in` are read into `source`, `target` and `input`); see
docs/spec-language.md and schema/mapping.schema.json. Defaults are the schema's (filled in by the loader).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from ml_connector.config.expr import Expr


@dataclass(frozen=True, kw_only=True)
class FromKeysConfig:
    """The keys a keyed read asks for: the id map of another flow, its source keys or its target ids."""

    flow: str
    side: Literal["source", "target"]


@dataclass(frozen=True, kw_only=True)
class SourceConfig:
    """Where records come from."""

    connection: str
    entity: str
    params: Expr
    expand: tuple[str, ...]
    each: Expr | None = None
    keys: FromKeysConfig | None = None  # a keyed read (the entity's read.keys)


@dataclass(frozen=True, kw_only=True)
class TargetConfig:
    """Where records go."""

    connection: str
    entity: str


@dataclass(frozen=True, kw_only=True)
class MatchConfig:
    """The mapped field that identifies the target record, and how match values are normalised."""

    target: str
    normalize: tuple[Literal["casefold", "trim"], ...]


@dataclass(frozen=True, kw_only=True)
class TriggerConfig:
    """The channel whose callbacks, or the stream whose events, run this flow for the records they name (between
    its scheduled runs); exactly one of the two."""

    channel: str | None = None
    stream: str | None = None


@dataclass(frozen=True, kw_only=True)
class ChildListConfig:
    """A child list: one item per element of `each`, each mapped with `fields`."""

    each: Expr
    fields: Mapping[str, FieldConfig]


FieldConfig = Expr | ChildListConfig


@dataclass(frozen=True, kw_only=True)
class ExampleConfig:
    """An example record with its expected payload (None: filtered out), `deferred`, or a mapping `error`."""

    input: Mapping[str, Any] = field(metadata={"key": "in"})
    out: Any = None
    lookups: Mapping[str, Mapping[str, Any]]
    deferred: bool | None = None
    error: str | None = None


@dataclass(frozen=True, kw_only=True)
class ParkingConfig:
    """When a parked record is sent again: after a lost create's grace period, or a poison pill's back-off."""

    unknown_outcome_grace: float  # seconds before a create of unknown outcome is looked for (next run at the earliest)
    backoff: float  # the wait after a record failed on two runs in a row; doubles with each further failure
    backoff_max: float


@dataclass(frozen=True, kw_only=True)
class MappingConfig:
    """A mapping spec (one flow), typed and normalised."""

    flow: str
    title: str | None = None
    description: str | None = None
    source: SourceConfig = field(metadata={"key": "from"})
    target: TargetConfig = field(metadata={"key": "to"})
    depends_on: tuple[str, ...]
    schedule: str | None = None
    reconcile: str | None = None
    trigger: TriggerConfig | None = None  # callbacks of this channel re-read the records they name (events/)
    filter: Expr | None = None
    key: Expr
    match: MatchConfig | None = None
    target_id: Expr | None = None
    reverse: str | None = None  # the flow syncing the same records the other way (echo suppression)
    let: Mapping[str, Expr]
    fields: Mapping[str, FieldConfig]
    max_value_length: int
    ensure_fields: Mapping[str, str]  # custom-field label -> field type, created in the target when missing
    on_delete: Literal["ignore", "clear", "delete"]
    parking: ParkingConfig
    examples: tuple[ExampleConfig, ...]
