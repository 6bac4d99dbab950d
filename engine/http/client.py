"""The connector client: one connection's base URL, auth, response rules, retries, quotas and call counts."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import random
import socket
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

import httpx

from ml_connector.config import Expr
from ml_connector.connection import Connection
from ml_connector.errors import MlConnectorError
from ml_connector.http.auth import Auth, Vault, build_auth
from ml_connector.http.bodies import BodyMismatch, BodyTooLarge, RecordsAt, receive
from ml_connector.http.errors import (
    ConnectorError,
    FatalError,
    NeedsReauth,
    RateLimited,
    RecordError,
    RequestError,
    TransientError,
)
from ml_connector.http.paginators import Paginator, build_paginator
from ml_connector.http.quotas import Quota
from ml_connector.http.redact import REDACTOR
from ml_connector.http.rules import (
    FATAL,
    OK,
    QUOTA_EXHAUSTED,
    RATE_LIMITED,
    REAUTH,
    RECORD_ERROR,
    REQUEST_ERROR,
    RETRY,
    SKIP_FLOW,
    ResponseRules,
    parse_body,
)
from ml_connector.http.shared_quota import SharedPool, SharedQuotas, credential_identity
from ml_connector.http.skips import FlowSkipped
from ml_connector.http.tls import verified_context
from ml_connector.http.usage import RESUMES, QuotaExhausted
from ml_connector.http.waits import Clock, within_max_wait
from ml_connector.transform.expressions import TemplateTree

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "PATCH", "DELETE"})
log = logging.getLogger("ml_connector.http")


class UncertainWrite(TransientError):
    """A non-idempotent write may or may not have happened (timeout, dropped connection, 5xx)."""


class Unreachable(FatalError):
    """The host cannot be reached at all (its name does not resolve, nothing listens): not worth a retry loop."""


def _unreachable(connection: str, exc: httpx.ConnectError) -> ConnectorError:
    """A connect failure named by host: a DNS failure or a refused connection stops the flow at once; any other
    (a TLS handshake, a reset) stays worth the usual retries. Nothing was sent either way."""
    url = exc.request.url
    host = f"{url.host}:{url.port}" if url.port else url.host
    cause: BaseException | None = exc
    while cause is not None:
        if isinstance(cause, socket.gaierror):
            reason = cause.strerror or str(cause)
            return Unreachable(f"connection {connection}: cannot reach {host}: the name does not resolve "
                               f"(DNS: {reason})")
        if isinstance(cause, ConnectionRefusedError):
            return Unreachable(f"connection {connection}: cannot reach {host}: connection refused (nothing listens "
                               "there)")
        cause = cause.__cause__ or cause.__context__
    return TransientError(f"connection {connection}: cannot reach {host}: {exc or type(exc).__name__}")


@dataclass
class CallStats:
    """Calls made through one client, split the way run summaries report them."""

    reads: int = 0
    writes: int = 0
    retries: int = 0
    rate_limited: int = 0
    waited_seconds: float = 0.0  # backing off after failures, and pacing to quota windows

    def snapshot(self) -> tuple[int, int, int, float]:
        return self.reads, self.writes, self.rate_limited, self.waited_seconds


@dataclass(frozen=True)
class Reply:
    status: int
    body: Any
    headers: Mapping[str, str]
    records: list[Any] | None = None  # what `request(records=...)` found at the records path


@dataclass
class ClientOptions:
    max_retries: int  # connector `retries`: retries after a first attempt; also each record's write budget
    max_wait: float  # connector `max_wait` (the workspace may override it): a longer wait stops the flow instead
    max_rate_limited: int = 50
    backoff_base: float = 0.5
    backoff_cap: float = 30.0
    timeout: float = 60.0  # per phase (connect, each read, ...): the whole attempt is bounded by request_timeout
    max_response_bytes: int = 52428800  # connector `limits.max_response_bytes`
    request_timeout: float = 120.0  # connector `limits.request_timeout`: one attempt, connect to last byte
    stop_grace: float = 10.0  # connector `limits.stop_grace`: a write on the wire when the run is stopped

    @classmethod
    def of(cls, connection: Connection) -> ClientOptions:
        """The options a connection sets: the connector's `retries`, `max_wait` (the workspace may override it) and
        `limits`."""
        limits = connection.connector.limits
        return cls(max_retries=connection.connector.retries, max_wait=connection.max_wait_seconds,
                   max_response_bytes=limits.max_response_bytes, request_timeout=limits.request_timeout,
                   stop_grace=limits.stop_grace)


@functools.lru_cache(maxsize=512)
def _join(base: str, path: str) -> httpx.URL:
    """The URL for ``path`` under ``base``; a path that would leave the base is refused.

    The check reads the path as sent: an encoded ``x%2F..%2Fy`` is one segment, not a way out. Cached: parsing
    and checking cost more than a small write call, and a create path is the same for every record (URLs are
    immutable, so sharing one is safe; a refusal raises and is not cached).
    """
    base_url = httpx.URL(base.rstrip("/") + "/")
    url = httpx.URL(path) if path.startswith(("http://", "https://")) else base_url.join(path.lstrip("/"))
    sent, under = (u.raw_path.split(b"?", 1)[0].decode("ascii") for u in (url, base_url))
    if (url.scheme, url.host, url.port) != (base_url.scheme, base_url.host, base_url.port) or not \
            sent.startswith(under) or "/../" in f"{sent}/":
        raise FatalError(f"request path {path!r} leaves the connection's base URL {base}")
    return url


class RetryPolicy:
    """When a failed call is tried again and after how long: built once per client, used by every call.

    Only transient failures are retried. A write whose outcome is unknown never is (the writer checks it instead);
    a rate-limited call gets ``max_rate_limited`` tries, any other ``max_retries``. The wait is the API's when it
    names one (beyond ``max_wait`` the flow stops), else capped, jittered exponential backoff.

    Not tenacity: its retrying object keeps a call's state on itself (per thread, not per task), so one object
    cannot serve concurrent calls, and building one per call was the largest cost of a single-record write.
    """

    def __init__(self, options: ClientOptions, label: str, pause: Callable[[float], Awaitable[None]]) -> None:
        self.options = options
        self.label = label
        self.pause = pause

    async def run(self, attempt: Callable[[], Awaitable[Reply]]) -> Reply:
        """The reply of the first attempt that succeeds; the last failure when no retry is left."""
        number = 1
        while True:
            try:
                return await attempt()
            except TransientError as error:
                if self.stop(error, number):
                    raise
                await self.pause(self.wait(error, number))
                number += 1

    def stop(self, error: TransientError, attempt_number: int) -> bool:
        if isinstance(error, UncertainWrite):
            return True
        if isinstance(error, RateLimited):
            return attempt_number > self.options.max_rate_limited
        return attempt_number > self.options.max_retries

    def wait(self, error: TransientError, attempt_number: int) -> float:
        if error.wait is not None:
            wait = within_max_wait(error.wait, self.options.max_wait, self.label)
            return min(wait + random.uniform(0.0, 0.1), self.options.max_wait)
        backoff = min(self.options.backoff_cap, self.options.max_wait,
                      self.options.backoff_base * 2 ** (attempt_number - 1))
        return random.uniform(backoff / 2, backoff)


class ConnectorClient:
    """Makes calls for one connection, applying its connector's rules."""

    def __init__(self, connection: Connection, vault: Vault, *, transport: httpx.AsyncBaseTransport | None = None,
                 options: ClientOptions | None = None,
                 sleep: Callable[[float], Awaitable[None]] = asyncio.sleep, clock: Clock = time.time,
                 shared_quotas: SharedQuotas | None = None) -> None:
        """``sleep`` and ``clock`` (wall time, for waits given as a moment) are injectable for tests;
        ``shared_quotas``: the workspace's store of pools shared by every worker (None: this process's own)."""
        config = connection.connector
        self.connection = connection
        self.context = connection.context(vault)
        self.options = options or ClientOptions.of(connection)
        self._configured_base = str(self._render("base_url", config.base_url)).rstrip("/")
        rendered = {name: str(self._render(f"headers.{name}", part))
                    for name, part in config.headers.compiled.parts().items()}
        self.headers = {name: value for name, value in rendered.items() if value}  # empty: not this deployment's
        auth_name, auth_config = connection.auth_spec
        self.auth: Auth = build_auth(connection.name, auth_config, self.context, vault,
                                     base_url=self._configured_base, sandbox=connection.sandbox)
        self.rules = ResponseRules(config.responses, clock=clock)
        max_wait = self.options.max_wait
        self.shared_quotas = shared_quotas
        identity = credential_identity(config.connector, auth_name, self._configured_base, connection.secret_refs)

        def shared(pool: str) -> SharedPool | None:
            return shared_quotas.pool(connection.name, identity, pool) if shared_quotas is not None else None

        self.quotas = {name: Quota(q, max_wait=max_wait, label=f"connection {connection.name}, quota {name}",
                                   clock=clock, sleep=sleep, shared=shared(name))
                       for name, q in connection.quotas().items()}
        self.default_quota = self.quotas.get("default") or Quota(connection.unnamed_pool, max_wait=max_wait,
                                                                   label=f"connection {connection.name}",
                                                                   clock=clock, sleep=sleep, shared=shared(""))
        self.stats = CallStats()
        self.exhausted: str | None = None  # why no new call may start: the API's allowance is spent (http/usage.py)
        self.http = httpx.AsyncClient(transport=transport, timeout=self.options.timeout, verify=verified_context())
        self._sleep = sleep
        self.retries = RetryPolicy(self.options, f"connection {connection.name}", self._pause)

    def _render(self, field: str, template: Expr | TemplateTree) -> Any:
        """A connector template evaluated for this connection; a failure names the connection and the field."""
        try:
            return template.evaluate(self.context) if isinstance(template, Expr) else template.render(self.context)
        except MlConnectorError:
            raise
        except Exception as exc:  # a template error is a spec error of this connection, not a crash
            raise FatalError(f"connection {self.connection.name}: {field}: the template failed: {exc}") from exc

    @property
    def base_url(self) -> str:
        """The configured base URL, with scheme and host replaced by the token's when the auth says so."""
        override = self.auth.base_url
        if not override:
            return self._configured_base
        configured = httpx.URL(self._configured_base)
        chosen = httpx.URL(override)
        return str(configured.copy_with(scheme=chosen.scheme, host=chosen.host, port=chosen.port)).rstrip("/")

    def paginator(self, name: str | None) -> Paginator:
        if name is None:
            return build_paginator(None)
        paginators = self.connection.connector.paginators
        if name not in paginators:
            raise FatalError(f"connector {self.connection.connector.connector}: no paginator {name!r}")
        return build_paginator(paginators[name])

    async def aclose(self) -> None:
        await self.http.aclose()
        if self.shared_quotas is not None:
            await self.shared_quotas.aclose()

    async def request(self, method: str, path: str, *, params: Mapping[str, Any] | None = None,
                      json: Any = None, quota: str | None = None, idempotent: bool | None = None,
                      reads: bool | None = None, records: RecordsAt | None = None,
                      headers: Mapping[str, str] | None = None) -> Reply:
        """One logical call: retried on transient failures, re-authenticated once on a reauth signal.

        ``reads``: whether the call counts as a read (default: GET does); a query sent as POST is a read.
        ``records``: where the records of a read are; a body without them is a transient failure (``Reply.records``).
        """
        method = method.upper()
        safe = method in SAFE_METHODS if idempotent is None else idempotent
        is_read = method == "GET" if reads is None else reads
        pool = self.quotas.get(quota, self.default_quota) if quota else self.default_quota

        async def attempt() -> Reply:
            try:
                return await self._once(method, path, params, json, pool, safe, is_read, records, headers)
            except NeedsReauth:
                self.auth.invalidate()
                try:
                    return await self._once(method, path, params, json, pool, safe, is_read, records, headers)
                except NeedsReauth as again:
                    raise FatalError(f"connection {self.connection.name}: credentials refused after "
                                     f"renewal ({method} {path})") from again

        return await self.retries.run(attempt)

    async def _pause(self, seconds: float) -> None:
        log.info("%s: waiting %.1f s before trying again", self.connection.name, seconds)
        self.stats.retries += 1
        self.stats.waited_seconds += seconds
        await self._sleep(seconds)

    async def _once(self, method: str, path: str, params: Mapping[str, Any] | None, json: Any, pool: Quota,
                    safe: bool, is_read: bool, records: RecordsAt | None = None,
                    extra_headers: Mapping[str, str] | None = None) -> Reply:
        if self.exhausted is not None:  # nothing is sent once the allowance is spent, whichever pool a call names
            raise QuotaExhausted(self.exhausted)
        headers = {**self.headers, **(extra_headers or {})}
        query: dict[str, Any] = {k: v for k, v in (params or {}).items() if v is not None}
        try:
            await self.auth.apply(self.http, headers, query)  # first: a token may name the base URL
        except TransientError as exc:  # a token endpoint that cannot be reached at all stops here too
            unreachable = _unreachable(self.connection.name, exc.__cause__) \
                if isinstance(exc.__cause__, httpx.ConnectError) else None
            if isinstance(unreachable, Unreachable):
                raise unreachable from exc
            raise
        url = _join(self.base_url, path)
        queued = time.monotonic()
        outer = self.quotas.get(pool.within) if pool.within else None  # a window inside another: both are spent
        async with pool, outer if outer is not None else contextlib.nullcontext():
            self.stats.waited_seconds += time.monotonic() - queued
            if is_read:
                self.stats.reads += 1
            else:
                self.stats.writes += 1
            started = time.monotonic()
            # no parameters: a query the path carries (a next-page link) is kept; httpx would replace it with {}
            request = self.http.build_request(method, url, params=query or None, json=json, headers=headers)
            try:
                async with asyncio.timeout(self.options.request_timeout):  # a trickling body must not outlive it
                    response, content = await receive(self.http, request, self.options.max_response_bytes)
            except TimeoutError as exc:
                message = (f"{method} {url.path}: no complete answer within {self.options.request_timeout:g} s "
                           "(the connector's limits.request_timeout)")
                raise (TransientError(message) if safe else UncertainWrite(message)) from exc
            except BodyTooLarge as exc:  # the same next time: refused, not retried (a write may have happened)
                message = f"{method} {url.path} -> HTTP {exc.status}: {exc}"
                raise (FatalError(message) if safe else UncertainWrite(message)) from None
            except httpx.ConnectError as exc:  # nothing was sent: safe to retry, unless the host is unreachable
                raise _unreachable(self.connection.name, exc) from exc
            except httpx.TransportError as exc:
                message = f"{method} {url.path}: {type(exc).__name__}"
                raise (TransientError(message) if safe else UncertainWrite(message)) from exc
            pool.observe(response)
            await pool.tell_others()  # a pause the headers announced holds every worker on this credential
            if pool.usage is not None and pool.usage.spent and self.exhausted is None:  # this answer still counts
                self.exhausted = f"connection {self.connection.name}: {pool.usage.spent}; {RESUMES}"
            log.debug("%s %s %s -> %s in %.0f ms", self.connection.name, method, url.path, response.status_code,
                      (time.monotonic() - started) * 1000)
        body = parse_body(response, content)
        if records is not None and records.none_left(response.status_code, body):
            return Reply(response.status_code, body, response.headers, [])  # e.g. 204/304: nothing (more) to read
        decision = self.rules.classify(response, body)
        where = f"{method} {url.path} -> HTTP {response.status_code}"
        if decision.action == OK:
            try:
                rows = records.of(body) if records is not None else None
            except BodyMismatch as exc:  # a maintenance page or a cut-off body: worth another try, never "none"
                raise (TransientError(f"{where}: {exc}") if safe else UncertainWrite(f"{where}: {exc}")) from None
            return Reply(response.status_code, body, response.headers, rows)
        detail = REDACTOR(decision.message or _describe(body))[:500]
        if decision.action == RETRY:
            if not safe:
                raise UncertainWrite(f"{where}: {detail}", decision.wait)
            raise TransientError(f"{where}: {detail}", decision.wait)
        if decision.action == RATE_LIMITED:
            self.stats.rate_limited += 1
            await pool.tell_others(decision.wait if decision.wait is not None else 1.0)
            raise RateLimited(f"{where}: rate limited", decision.wait)
        if decision.action == REAUTH:
            raise NeedsReauth(where)
        if decision.action == RECORD_ERROR:
            raise RecordError(f"{where}: {detail}", response.status_code, body)
        if decision.action == REQUEST_ERROR:
            raise RequestError(f"{where}: {detail}")
        if decision.action == FATAL:
            raise FatalError(f"{where}: {detail}")
        if decision.action == QUOTA_EXHAUSTED:
            self.exhausted = f"connection {self.connection.name}: API usage limit reached: {where}: {detail}; {RESUMES}"
            raise QuotaExhausted(self.exhausted)
        if decision.action == SKIP_FLOW:
            raise FlowSkipped(detail if decision.message else f"{where}: {detail}")
        raise FatalError(f"{where}: unknown action {decision.action!r}")


def _describe(body: Any) -> str:
    if isinstance(body, list) and len(body) == 1 and isinstance(body[0], dict):  # a list of one error object
        body = body[0]
    if isinstance(body, dict):
        for key in ("error", "message", "error_description"):
            if body.get(key):
                return str(body[key])
    return str(body)[:300]
