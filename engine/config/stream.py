"""Typed stream config: a change feed the engine subscribes to (it connects out), instead of being called back.

A connector's `streams` declare, per stream, the protocol and the generated modules it speaks through, where to
connect (templates over the connection's settings and its current token), the topic of each entity, how much to
ask for at a time, and where each event's header keeps the record ids, the change type, the changed fields and
its origin. Spec keys and defaults are schema/connector.schema.json's; durations are held in seconds.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from ml_connector.config.channel import Duration
from ml_connector.config.expr import Expr


@dataclass(frozen=True, kw_only=True)
class ChangedFieldsConfig:
    """The header field listing the changed fields: field names, or bitmaps over the schema's field positions."""

    path: str
    encoding: Literal["bitmap", "names"]


@dataclass(frozen=True, kw_only=True)
class OriginConfig:
    """The header field naming who made a change; `own` is what our own writes carry (their echo is not queued)."""

    path: str
    own: str | None = None


@dataclass(frozen=True, kw_only=True)
class StreamConfig:
    """A change stream (its name is its key in the connector's `streams`)."""

    protocol: Literal["grpc_pubsub"]
    proto: str  # module path of the generated code, without the `_pb2` / `_pb2_grpc` suffix
    target: Expr
    tls: Expr  # true, false, or a template saying which
    ca_file: Expr | None = None  # PEM roots to check the target against (None or empty: the system's)
    metadata: Expr
    topic: Expr
    batch: int
    header: str
    ids: str
    change_type: str
    changed_fields: ChangedFieldsConfig
    gaps: tuple[str, ...]
    wildcard_ids: tuple[str, ...]
    origin: OriginConfig | None = None
    retention: Duration
    invalid_replay: str
    backoff: Duration
    backoff_max: Duration
