"""Typed entity config: custom fields, read (incremental), get, expand, and write with its operations.

Field names are the spec's keys; see docs/spec-language.md and schema/connector.schema.json for their meaning.
Defaults are the schema's (filled in by the loader); a field that defaults to None may be absent.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from ml_connector.config.channel import EntityEventsConfig
from ml_connector.config.expr import Expr


@dataclass(frozen=True, kw_only=True)
class FieldDeclConfig:
    """A declared field of a record: what validate checks mappings against (`fields` of an entity or expand)."""

    type: Literal["string", "number", "integer", "boolean", "date", "datetime", "object", "array", "any"]
    required: bool
    writable: bool
    description: str | None = None
    fields: Mapping[str, FieldDeclConfig] | None = None  # of an object, or of each object of an array


@dataclass(frozen=True, kw_only=True)
class CatalogConfig:
    """Where the label -> id catalog of custom fields is read."""

    path: Expr
    params: Expr
    records: Expr
    paginator: str | None = None
    key: str
    label: str
    quota: str | None = None


@dataclass(frozen=True, kw_only=True)
class FieldCreateConfig:
    """How to create a custom field the target lacks (templates see `field`: label, name, type)."""

    method: Literal["POST", "PUT", "PATCH"]
    path: Expr
    body: Expr
    key: Expr


@dataclass(frozen=True, kw_only=True)
class CustomFieldsConfig:
    """A record sub-object keyed by opaque ids that mappings name by label."""

    object: str
    catalog: CatalogConfig
    create: FieldCreateConfig | None = None


@dataclass(frozen=True, kw_only=True)
class IncrementalConfig:
    """Read only what changed since the watermark."""

    param: str | None = None
    field: str
    format: str
    lookback: float
    header: str | None = None


@dataclass(frozen=True, kw_only=True)
class JobRequestConfig:
    """One request of a bulk job (a start, an abort)."""

    method: Literal["GET", "POST", "PUT", "PATCH", "DELETE"]
    path: Expr
    params: Expr
    body: Expr | None = None
    quota: str | None = None


@dataclass(frozen=True, kw_only=True)
class JobCreateConfig:
    """The request that creates a bulk job, and where its answer names the job."""

    method: Literal["POST", "PUT", "GET"]
    path: Expr
    params: Expr
    body: Expr | None = None
    quota: str | None = None
    id: Expr


@dataclass(frozen=True, kw_only=True)
class JobPollConfig:
    """The status request, repeated until a done or failed state (bounded by `timeout`)."""

    method: Literal["GET", "POST"]
    path: Expr
    params: Expr
    quota: str | None = None
    state: Expr
    done: tuple[str, ...]
    failed: tuple[str, ...]
    error: Expr | None = None
    interval: float
    timeout: float


@dataclass(frozen=True, kw_only=True)
class ResultPagesConfig:
    """Result pages of one job: a header names the next, sent back as a query parameter."""

    header: str
    param: str
    end: tuple[str, ...]


@dataclass(frozen=True, kw_only=True)
class JobDownloadConfig:
    """The result file of a done job, size-bounded."""

    method: Literal["GET", "POST"]
    path: Expr
    params: Expr
    quota: str | None = None
    format: Literal["csv", "csv_zip"]
    member: Expr | None = None
    max_bytes: int
    max_members: int
    next: ResultPagesConfig | None = None


@dataclass(frozen=True, kw_only=True)
class JobWindowsConfig:
    """One job per date window of at most `days`, from `start` (empty: one window) to now."""

    days: int
    start: Expr
    format: str


@dataclass(frozen=True, kw_only=True)
class JobNextConfig:
    """A new job for the next page of records, with the token the done job names."""

    more: Expr
    token: Expr
    into: str | None = None


@dataclass(frozen=True, kw_only=True)
class JobRowsConfig:
    """How CSV rows become records."""

    columns: Mapping[str, str]
    nest: bool
    empty: Literal["null", "keep"]
    null_text: str | None = None


@dataclass(frozen=True, kw_only=True)
class BulkReadConfig:
    """A server-side bulk read job (engine/http/jobs.py)."""

    when: Literal["full", "always"]
    create: JobCreateConfig
    start: JobRequestConfig | None = None
    poll: JobPollConfig
    download: JobDownloadConfig
    next: JobNextConfig | None = None
    windows: JobWindowsConfig | None = None
    abort: JobRequestConfig | None = None
    rows: JobRowsConfig
    page_size: int


@dataclass(frozen=True, kw_only=True)
class KeysConfig:
    """A read that needs keys: one paged query per batch of up to `batch` keys (`keys` in its templates)."""

    batch: int


@dataclass(frozen=True, kw_only=True)
class ReadConfig:
    """How to list records."""

    path: Expr
    params: Expr
    records: Expr
    paginator: str | None = None
    incremental: IncrementalConfig | None = None
    method: Literal["GET", "POST"]
    body: Expr | None = None
    max_depth: int | None = None
    narrow: Literal["cursor", "key"]
    quota: str | None = None
    empty_statuses: tuple[int, ...]
    bulk: BulkReadConfig | None = None
    keys: KeysConfig | None = None  # None: the entity can be listed


@dataclass(frozen=True, kw_only=True)
class GetConfig:
    """How to get one record by id."""

    path: Expr
    params: Expr
    record: Expr
    quota: str | None = None
    gone: tuple[int, ...]


@dataclass(frozen=True, kw_only=True)
class ExpandConfig:
    """Children fetched per page of parents."""

    path: Expr
    params: Expr
    batch: int
    records: Expr
    paginator: str | None = None
    parent_key: str | None = None  # None: one parent per call (batch 1)
    parent_field: str | None = None  # the parent's field its children name in parent_key; None: the entity key
    quota: str | None = None
    fields: Mapping[str, FieldDeclConfig] | None = None  # None: not declared, not checked


@dataclass(frozen=True, kw_only=True)
class SearchConfig:
    """How to find an existing target record by the match value (a GET, or a query sent with a JSON body)."""

    method: Literal["GET", "POST", "PUT", "PATCH"]
    path: Expr
    params: Expr
    body: Expr | None = None
    records: Expr
    not_found: tuple[int, ...]
    not_found_body: Expr | None = None  # truthy over an answer's body: nothing found
    quota: str | None = None


@dataclass(frozen=True, kw_only=True)
class BatchConfig:
    """Up to `size` records in one call."""

    size: int
    body: Expr
    atomic: bool


@dataclass(frozen=True, kw_only=True)
class ResultsConfig:
    """Per-item outcomes of a batch response, matched to the records sent by `match`."""

    match: Literal["key", "id", "position", "index"]
    created: Expr | None = None
    error_id: Expr | None = None
    items: Expr
    id: Expr | None = None
    errors: Expr | None = None
    error_index: Expr | None = None
    error_message: Expr | None = None
    key: Expr | None = None
    error_key: Expr | None = None
    failed: Expr | None = None
    index: Expr | None = None  # match: index — the input's position each result carries
    skip_flow: Expr | None = None  # a result that says the flow cannot apply here
    skip_message: Expr | None = None


@dataclass(frozen=True, kw_only=True)
class CreatedConfig:
    """How a single-record answer tells a created record from an updated one (a status, or a body field)."""

    status: tuple[int, ...] | None = None
    body: Expr | None = None


@dataclass(frozen=True, kw_only=True)
class WriteOpConfig:
    """A create or update operation."""

    method: Literal["POST", "PUT", "PATCH", "DELETE"]
    path: Expr
    params: Expr
    body: Expr | None = None
    id: Expr | None = None
    quota: str | None = None
    batch: BatchConfig | None = None
    results: ResultsConfig | None = None
    created: CreatedConfig | None = None
    merge: Expr | None = None
    fetch_existing: bool
    idempotent: bool | None = None  # None: true for PUT/PATCH/DELETE, false for POST


@dataclass(frozen=True, kw_only=True)
class DeleteOpConfig:
    """How a target record is deleted; a `gone` status means it already was (counted as deleted)."""

    method: Literal["DELETE", "POST", "PATCH", "PUT"]
    path: Expr
    params: Expr
    body: Expr | None = None
    quota: str | None = None
    gone: tuple[int, ...]


@dataclass(frozen=True, kw_only=True)
class WriteStepConfig:
    """A follow-up request after a record's create or update is confirmed (`write.then`)."""

    name: str
    method: Literal["POST", "PUT", "PATCH", "DELETE"]
    path: Expr
    params: Expr
    body: Expr | None = None
    when: Expr | None = None  # None: always
    quota: str | None = None
    idempotent: bool | None = None  # None: true for PUT/PATCH/DELETE, false for POST
    expect: Expr | None = None  # what the record read back carries once the step landed


@dataclass(frozen=True, kw_only=True)
class PrefetchConfig:
    """List the whole target once when many records of a run are unresolved."""

    min: int


@dataclass(frozen=True, kw_only=True)
class WriteConfig:
    """How records of an entity are written."""

    strategy: Literal["search_then_write", "upsert", "create_only", "update_only", "link_only"]
    search: SearchConfig | None = None
    create: WriteOpConfig | None = None
    update: WriteOpConfig | None = None
    prefetch: PrefetchConfig | None = None
    search_lag: float | None = None
    then: tuple[WriteStepConfig, ...]
    delete: DeleteOpConfig | None = None


@dataclass(frozen=True, kw_only=True)
class DeletedReadConfig:
    """A deleted-records endpoint: paged like a read, incremental on the deletion time, `key` per record."""

    path: Expr
    params: Expr
    records: Expr
    paginator: str | None = None
    key: Expr
    incremental: IncrementalConfig | None = None
    quota: str | None = None


@dataclass(frozen=True, kw_only=True)
class AbsenceConfig:
    """A complete full read lists every live record; at most `max_share` of a flow's links go in one read."""

    max_share: float


@dataclass(frozen=True, kw_only=True)
class DeletesConfig:
    """How a source tells deletions: a flag in its records, an endpoint, or absence from a full read."""

    flag: Expr | None = None
    read: DeletedReadConfig | None = None
    absent: AbsenceConfig | None = None


@dataclass(frozen=True, kw_only=True)
class EntityConfig:
    """An entity (record type) of a system."""

    key: str
    updated: str | None = None
    fields: Mapping[str, FieldDeclConfig] | None = None  # None: not declared, not checked
    custom_fields: CustomFieldsConfig | None = None
    read: ReadConfig | None = None
    get: GetConfig | None = None
    expand: Mapping[str, ExpandConfig]
    write: WriteConfig | None = None
    deletes: DeletesConfig | None = None
    events: EntityEventsConfig | None = None  # this entity can be watched through a channel
