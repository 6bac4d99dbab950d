"""Downloading a bulk job's result file: streamed to a bounded spool file, never held whole in memory.

A result file can be hundreds of megabytes (200,000 rows a page), far past what a JSON answer may be
(`limits.max_response_bytes`), so it does not go through `ConnectorClient.request`, which keeps a body in memory.
It gets the same treatment otherwise: the connection's headers and auth, the base URL check, the quota pool, the
response rules for an answer that is not a file, retries of transient failures, and a time bound.
"""

from __future__ import annotations

import asyncio
import random
import tempfile
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import IO, Any

import httpx

from ml_connector.http.client import ConnectorClient, _join
from ml_connector.http.errors import FatalError, NeedsReauth, RateLimited, TransientError
from ml_connector.http.quotas import Quota
from ml_connector.http.redact import REDACTOR
from ml_connector.http.rules import OK, RATE_LIMITED, REAUTH, RETRY, parse_body
from ml_connector.http.waits import within_max_wait

SPOOL_IN_MEMORY = 1 << 20  # a larger file spills to a temporary file on disk
NOT_FILES = ("application/json", "text/html", "application/problem+json")  # an error page, not a result file
_ERROR_BODY = 65536  # how much of an answer that is not a file is read, to classify it


@dataclass
class Downloaded:
    """A result file (rewound) and the answer's headers (a next-page locator may be among them)."""

    file: IO[bytes]
    headers: Mapping[str, str]


class NotAFile(FatalError):
    """The answer is not the result file (an error page, a JSON error inside a 200)."""


async def download(client: ConnectorClient, method: str, path: str, params: Mapping[str, Any], *,
                   max_bytes: int, quota: str | None,
                   sleep: Callable[[float], Awaitable[None]] | None = None) -> Downloaded:
    """The file at ``path``, retried on transient failures (the connector's ``retries``), refused past
    ``max_bytes``. The caller closes ``Downloaded.file``."""
    pool = client.quotas.get(quota, client.default_quota) if quota else client.default_quota
    pause = sleep or asyncio.sleep
    options, who = client.options, f"connection {client.connection.name}"
    failures = limited = 0
    reauthorised = False
    while True:
        try:
            return await _once(client, method, path, params, pool, max_bytes)
        except NeedsReauth:
            if reauthorised:
                raise FatalError(f"{who}: credentials refused after renewal ({method} {path})") from None
            client.auth.invalidate()
            reauthorised = True
            continue
        except RateLimited as exc:  # as the client counts them: a rate limit is not a failure
            limited += 1
            if limited > options.max_rate_limited:
                raise
            wait = exc.wait
        except TransientError as exc:
            failures += 1
            if failures > options.max_retries:
                raise
            wait = exc.wait
        if wait is not None:
            wait = within_max_wait(wait, options.max_wait, who)
        else:
            backoff = min(options.backoff_cap, options.max_wait, options.backoff_base * 2 ** (failures + limited - 1))
            wait = random.uniform(backoff / 2, backoff)
        client.stats.retries += 1
        client.stats.waited_seconds += wait
        await pause(wait)


async def _once(client: ConnectorClient, method: str, path: str, params: Mapping[str, Any], pool: Quota,
                max_bytes: int) -> Downloaded:
    headers = dict(client.headers)
    query: dict[str, Any] = {k: v for k, v in params.items() if v is not None}
    await client.auth.apply(client.http, headers, query)
    url = _join(client.base_url, path)
    where = f"{method} {url.path}"
    async with pool:
        client.stats.reads += 1
        request = client.http.build_request(method, url, params=query, headers=headers)
        spool: IO[bytes] = tempfile.SpooledTemporaryFile(max_size=SPOOL_IN_MEMORY)  # noqa: SIM115 - returned
        try:
            async with asyncio.timeout(client.options.request_timeout):
                response = await client.http.send(request, stream=True)
                try:
                    pool.observe(response)
                    if not 200 <= response.status_code < 300:
                        _refuse(client, response, await _head(response), where)
                    kind = response.headers.get("content-type", "").split(";")[0].strip().lower()
                    if kind in NOT_FILES:
                        text = (await _head(response)).decode("utf-8", "replace")[:200]
                        raise NotAFile(f"the download is not a file (content-type {kind}): {REDACTOR(text)}")
                    declared = response.headers.get("content-length", "")
                    if declared.isdigit() and int(declared) > max_bytes:
                        raise FatalError(f"{where}: the file is larger than {max_bytes} bytes "
                                         "(read.bulk.download.max_bytes)")
                    size = 0
                    async for chunk in response.aiter_bytes():
                        size += len(chunk)
                        if size > max_bytes:
                            raise FatalError(f"{where}: the file is larger than {max_bytes} bytes "
                                             "(read.bulk.download.max_bytes)")
                        spool.write(chunk)
                finally:
                    await response.aclose()
        except TimeoutError as exc:
            spool.close()
            raise TransientError(f"{where}: no complete file within {client.options.request_timeout:g} s "
                                 "(the connector's limits.request_timeout)") from exc
        except httpx.TransportError as exc:
            spool.close()
            raise TransientError(f"{where}: {type(exc).__name__}") from exc
        except BaseException:
            spool.close()
            raise
    spool.seek(0)
    return Downloaded(spool, response.headers)


async def _head(response: httpx.Response) -> bytes:
    """The first bytes of an answer that is not the file (enough to classify it)."""
    chunks, size = [], 0
    async for chunk in response.aiter_bytes():
        chunks.append(chunk)
        size += len(chunk)
        if size >= _ERROR_BODY:
            break
    return b"".join(chunks)[:_ERROR_BODY]


def _refuse(client: ConnectorClient, response: httpx.Response, content: bytes, where: str) -> None:
    """Raise what the connector's response rules make of a failed download (never "no file, no rows")."""
    body = parse_body(response, content)
    decision = client.rules.classify(response, body)
    message = REDACTOR(decision.message or str(body)[:300])
    where = f"{where} -> HTTP {response.status_code}"
    if decision.action == RETRY:
        raise TransientError(f"{where}: {message}", decision.wait)
    if decision.action == RATE_LIMITED:
        client.stats.rate_limited += 1
        raise RateLimited(f"{where}: rate limited", decision.wait)
    if decision.action == REAUTH:
        raise NeedsReauth(where)
    if decision.action == OK:  # a rule said fine, but a 3xx/4xx is no file
        raise FatalError(f"{where}: not a file")
    raise FatalError(f"{where}: {message}")
