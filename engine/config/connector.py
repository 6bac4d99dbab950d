"""Typed connector config: connection declarations, auth strategies, response rules, quotas, paginators.

Field names are the spec's keys; see docs/spec-language.md and schema/connector.schema.json for their meaning.
Defaults are the schema's (filled in by the loader); a field that defaults to None may be absent.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

from ml_connector.config.channel import ChannelConfig
from ml_connector.config.entity import EntityConfig
from ml_connector.config.expr import Expr
from ml_connector.config.stream import StreamConfig

Scalar = str | int | float | bool
WaitUnit = Literal["seconds", "ms", "epoch", "epoch_ms", "http_date"]
PagingPlace = Literal["query", "body", "template"]  # a paginator's `in`: where its values go


@dataclass(frozen=True, kw_only=True)
class SettingDecl:
    """A plain setting a workspace connection gives (`connection.<name>` in templates)."""

    description: str | None = None
    required: bool
    default: Scalar | None = None


@dataclass(frozen=True, kw_only=True)
class SecretDecl:
    """A secret a workspace connection refers to (`secrets.<name>` in templates)."""

    description: str | None = None
    required: bool


@dataclass(frozen=True, kw_only=True)
class ConnectionDecl:
    """What a workspace connection provides."""

    settings: Mapping[str, SettingDecl]
    secrets: Mapping[str, SecretDecl]


@dataclass(frozen=True, kw_only=True)
class ApiKeyAuthConfig:
    """A static key in a header or a query parameter."""

    type: Literal["api_key"]
    header: str | None = None
    query: str | None = None
    value: Expr


@dataclass(frozen=True, kw_only=True)
class OAuth2AuthConfig:
    """An OAuth 2.0 grant with proactive renewal."""

    type: Literal["oauth2"]
    grant: Literal["refresh_token", "client_credentials", "password"]
    token_url: Expr
    client_auth: Literal["basic", "body", "query"]
    token_method: Literal["GET", "POST"]
    client_id: Expr | None = None
    client_secret: Expr | None = None
    refresh_token: Expr | None = None
    username: Expr | None = None
    password: Expr | None = None
    scope: Expr | None = None
    extra: Expr
    refresh_ahead: float
    base_url_from: str | None = None
    base_url_hosts: tuple[str, ...]
    token_scheme: str
    reauthorize_errors: tuple[str, ...]


@dataclass(frozen=True, kw_only=True)
class LoginConfig:
    """The login request of a session."""

    method: Literal["GET", "POST", "PUT", "PATCH"]
    url: Expr
    params: Expr
    form: Expr | None = None
    json: Expr | None = None


@dataclass(frozen=True, kw_only=True)
class SessionAuthConfig:
    """A login call returning a session token, sent in templated headers."""

    type: Literal["session"]
    login: LoginConfig
    token: Expr
    expires_in: Expr | None = None
    ttl: int | None = None
    header: Expr
    refresh_ahead: float


@dataclass(frozen=True, kw_only=True)
class OAuth1AuthConfig:
    """OAuth 1.0a: every request signed with consumer and token credentials that never expire."""

    type: Literal["oauth1"]
    consumer_key: Expr
    consumer_secret: Expr
    token: Expr
    token_secret: Expr
    signature_method: Literal["HMAC-SHA256", "HMAC-SHA1"]
    parameter_order: Literal["bytes", "natural"]
    realm: Expr | None = None


AuthConfig = ApiKeyAuthConfig | OAuth2AuthConfig | SessionAuthConfig | OAuth1AuthConfig


@dataclass(frozen=True, kw_only=True)
class WhenConfig:
    """What a response must look like for a rule to match (all given parts)."""

    status: tuple[int, ...] | None = None
    header: Mapping[str, str]
    body: Expr | None = None


@dataclass(frozen=True, kw_only=True)
class WaitConfig:
    """How long to wait before the next call: a header, a body field, or a fixed number of seconds."""

    header: str | None = None
    body: Expr | None = None
    seconds: float | None = None
    unit: WaitUnit | None = None
    backoff: float | None = None  # each further consecutive wait of the rule times this (http/rules.py)
    max: float | None = None
    jitter: float | None = None


@dataclass(frozen=True, kw_only=True)
class RuleConfig:
    """A response rule: the first match wins, then the built-in defaults."""

    when: WhenConfig
    do: Literal["ok", "retry", "reauth", "rate_limited", "record_error", "request_error", "fatal", "quota_exhausted",
                "skip_flow"]
    wait: WaitConfig | None = None
    message: Expr | None = None


@dataclass(frozen=True, kw_only=True)
class QuotaConfig:
    """A pool of calls shared by the operations that name it."""

    remaining_header: str | None = None
    reset_header: str | None = None
    reset_unit: WaitUnit
    concurrency: int
    calls: int | None = None
    window: float | None = None
    limit_header: str | None = None
    usage_header: str | None = None  # a longer allowance (daily calls) used so far, read by `usage_pattern`
    usage_pattern: str | None = None
    reserve: float
    reserve_calls: int | None = None
    within: str | None = None  # another pool whose window this pool's calls also spend


@dataclass(frozen=True, kw_only=True)
class LimitConfig:
    """Page size parameter and the largest page the API allows (readers always ask for it)."""

    param: str
    max: int


@dataclass(frozen=True, kw_only=True)
class CursorStartConfig:
    """The call that hands out a cursor paginator's first cursor (its params see `since`)."""

    path: Expr
    params: Expr | None = None
    token: Expr
    quota: str | None = None


@dataclass(frozen=True, kw_only=True)
class CursorPaginatorConfig:
    """An opaque cursor read from each response and sent back."""

    type: Literal["cursor"]
    param: str
    next: Expr
    placement: PagingPlace = field(metadata={"key": "in"})
    limit: LimitConfig
    more: Expr | None = None  # truthy while more pages exist (an API that always names a next cursor)
    start: CursorStartConfig | None = None


@dataclass(frozen=True, kw_only=True)
class OffsetPaginatorConfig:
    """A record offset advanced by the number of records received (the first offset is 0)."""

    type: Literal["offset"]
    param: str
    placement: PagingPlace = field(metadata={"key": "in"})
    limit: LimitConfig
    has_more: Expr | None = None
    total: Expr | None = None  # the unpaged record count, read from every page


@dataclass(frozen=True, kw_only=True)
class PagePaginatorConfig:
    """A page number starting at `first`."""

    type: Literal["page"]
    param: str
    first: int
    placement: PagingPlace = field(metadata={"key": "in"})
    limit: LimitConfig
    has_more: Expr | None = None
    total: Expr | None = None  # the unpaged record count, read from every page


@dataclass(frozen=True, kw_only=True)
class NextUrlPaginatorConfig:
    """The next page's path or URL read from each response, requested as given (under the base URL)."""

    type: Literal["next_url"]
    next: Expr
    done: Expr | None = None


PaginatorConfig = CursorPaginatorConfig | OffsetPaginatorConfig | PagePaginatorConfig | NextUrlPaginatorConfig


@dataclass(frozen=True, kw_only=True)
class BoundsConfig:
    """The connector's `limits`: what the API may make the engine do (pages per read, body size, time per call)."""

    max_pages: int
    max_response_bytes: int
    request_timeout: float
    stop_grace: float


@dataclass(frozen=True, kw_only=True)
class PingCheckConfig:
    """A check `ping` makes after its reads: a request whose answer says whether something is wrong."""

    name: str
    method: Literal["GET", "POST"]
    path: Expr
    params: Expr
    fails_when: Expr
    message: Expr


@dataclass(frozen=True, kw_only=True)
class ConnectorConfig:
    """A connector spec, typed and normalised."""

    connector: str
    title: str | None = None
    description: str | None = None
    connection: ConnectionDecl
    base_url: Expr
    headers: Expr
    auth: Mapping[str, AuthConfig]
    retries: int
    max_wait: float
    limits: BoundsConfig
    ping: tuple[PingCheckConfig, ...]
    responses: tuple[RuleConfig, ...]
    quotas: Mapping[str, QuotaConfig]
    paginators: Mapping[str, PaginatorConfig]
    entities: Mapping[str, EntityConfig]
    channels: Mapping[str, ChannelConfig]  # webhook channels the system offers (engine/events)
    streams: Mapping[str, StreamConfig]  # change streams the engine subscribes to (engine/events/stream*.py)
