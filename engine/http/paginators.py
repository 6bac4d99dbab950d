"""Paginators: given one page's request and response, the request for the next page (or none)."""

from __future__ import annotations

import copy
import hashlib
import json
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Protocol

import httpx

from ml_connector.config.connector import (
    CursorPaginatorConfig,
    NextUrlPaginatorConfig,
    OffsetPaginatorConfig,
    PagePaginatorConfig,
    PaginatorConfig,
)
from ml_connector.http.errors import FatalError


class Paginator(Protocol):
    """Turns a response into the parameters of the next request."""

    def first(self) -> dict[str, Any]: ...

    def next(self, params: dict[str, Any], body: Any, records: list[Any]) -> dict[str, Any] | None: ...

    def request(self, params: dict[str, Any], body: Any) -> tuple[dict[str, Any], Any]: ...

    def variables(self, params: dict[str, Any]) -> dict[str, Any]: ...

    def path(self, params: dict[str, Any], path: str, base_url: str) -> str: ...


class _Limited:
    """The largest page the API allows, asked for on every request."""

    def __init__(self, config: CursorPaginatorConfig | OffsetPaginatorConfig | PagePaginatorConfig) -> None:
        self.param = config.param
        self.limit_param = config.limit.param
        self.limit = config.limit.max
        self.has_more = None if isinstance(config, CursorPaginatorConfig) else config.has_more
        self.in_body = config.placement == "body"
        self.in_template = config.placement == "template"
        self.variable = {"cursor": "cursor", "offset": "offset", "page": "number"}[config.type]

    def _limit_params(self) -> dict[str, Any]:
        return {self.limit_param: self.limit}

    def request(self, params: dict[str, Any], body: Any) -> tuple[dict[str, Any], Any]:
        """A page's query parameters and JSON body.

        ``params`` holds the paging values with the query, whichever way they are sent, so that paging state,
        cursor comparison and the page guard work the same; with ``in: body`` they move into a copy of the body,
        each at its dotted path (a search endpoint reads its cursor or offset next to its filters).
        """
        if self.in_template:  # the body template placed them (`page`, see variables)
            return {k: v for k, v in params.items() if k not in (self.param, self.limit_param)}, body
        if not self.in_body:
            return params, body
        if body is None:
            body = {}
        if not isinstance(body, dict):
            raise FatalError("a paginator with `in: body` needs a JSON object body")
        query, placed = dict(params), copy.deepcopy(body)
        for name in (self.param, self.limit_param):
            if name in query:
                _set_path(placed, name, query.pop(name))
        return query, placed

    def path(self, params: dict[str, Any], path: str, base_url: str) -> str:
        """Every page of a query asks the same path."""
        return path

    def variables(self, params: dict[str, Any]) -> dict[str, Any]:
        """A page's paging values by meaning, for a body template (`page.offset`, `page.number`, `page.cursor`,
        `page.limit`): a query language that pages inside its query text (``limit 200 offset 400``)."""
        return {self.variable: params.get(self.param), "limit": self.limit}

    def _more(self, body: Any, records: list[Any]) -> bool:
        if not records:
            return False
        if self.has_more is not None and isinstance(body, dict):
            return bool(self.has_more.evaluate(body))
        return len(records) >= self.limit


class CursorPaginator(_Limited):
    """An opaque cursor read from each response (``next`` JMESPath), sent back as ``param``.

    With ``more`` the API's own flag ends the read: some APIs name a next cursor on every page, the last one too.
    While the flag holds, a missing cursor or one that repeats the cursor just sent is an error, never a loop.
    """

    def __init__(self, config: CursorPaginatorConfig) -> None:
        super().__init__(config)
        self.next_path = config.next
        self.more = config.more
        self.start = config.start

    def first(self) -> dict[str, Any]:
        return self._limit_params()

    def next(self, params: dict[str, Any], body: Any, records: list[Any]) -> dict[str, Any] | None:
        cursor = self.next_path.evaluate(body) if isinstance(body, dict) else None
        if self.more is not None:
            if not (isinstance(body, dict) and self.more.evaluate(body)):
                return None
            if cursor is None or cursor == "":
                raise FatalError(f"a page says there is more ({self.more.source}) but gives no cursor at "
                                 f"{self.next_path.source}")
            if cursor == params.get(self.param):
                raise FatalError(f"the next cursor repeats the one just sent ({str(cursor)[:100]!r}) while the page "
                                 f"says there is more ({self.more.source})")
            return {**params, self.param: cursor}
        if not cursor or cursor == params.get(self.param):
            return None
        return {**params, self.param: cursor}


def pages_empty(paginator: Paginator) -> bool:
    """Whether the paginator's API may answer empty pages before the last one (it says so by a flag)."""
    return isinstance(paginator, CursorPaginator) and paginator.more is not None


#: What a start call is sent through: (path, query, quota) -> the answer's body (the client's request, bound).
StartCall = Callable[[str, dict[str, Any], "str | None"], Awaitable[Any]]


async def start_cursor(paginator: Paginator, params: dict[str, Any], call: StartCall, context: Mapping[str, Any],
                       since: str | None, epoch: str) -> dict[str, Any]:
    """The first page's request: ``params`` as given, or, for a cursor paginator with ``start``, with the cursor
    a start call hands out.

    The start call's parameters see ``since`` (the read's watermark as the API wants it; None on a first read): a
    parameter that renders empty then gets ``epoch`` (the start of time in the same format), unless its template
    names a default of its own. The start call's records, if any, are not the read's.
    """
    start = paginator.start if isinstance(paginator, CursorPaginator) else None
    if start is None:
        return params
    assert isinstance(paginator, CursorPaginator)
    scope = {**context, "since": since}
    path = str(start.path.evaluate(scope))
    query = {name: epoch if value is None or value == "" else value
             for name, value in dict(start.params.evaluate(scope) if start.params is not None else {}).items()}
    body = await call(path, query, start.quota)
    token = start.token.evaluate(body) if isinstance(body, dict) else None
    if token is None or token == "" or isinstance(token, (dict, list)):
        raise FatalError(f"the paginator's start call GET {path} answered no cursor at {start.token.source}")
    return {**params, paginator.param: token}


class OffsetPaginator(_Limited):
    """A record offset (``param``) advanced by the number of records received, from 0.

    With ``total`` (the unpaged record count each page reports) paging stops once the pages read cover it: an API
    that answers a page past the end with its last page again (clamping) is never asked for one.
    """

    def __init__(self, config: OffsetPaginatorConfig | PagePaginatorConfig) -> None:
        super().__init__(config)
        self.start = config.first if isinstance(config, PagePaginatorConfig) else 0
        self.total = config.total

    def first(self) -> dict[str, Any]:
        return {self.param: self.start, **self._limit_params()}

    def step(self, records: list[Any]) -> int:
        return len(records)

    def covered(self, following: dict[str, Any]) -> int:
        """How many records the pages before ``following`` hold: its offset."""
        return int(following[self.param])

    def next(self, params: dict[str, Any], body: Any, records: list[Any]) -> dict[str, Any] | None:
        total = self._total(body) if self.total is not None else None  # checked on every page, the last too
        if not self._more(body, records):
            return None
        following = {**params, self.param: int(params[self.param]) + self.step(records)}
        if total is not None and self.covered(following) >= total:
            return None
        return following

    def _total(self, body: Any) -> int:
        """This page's total; anything but a non-negative integer is refused, never read as "no more records"."""
        assert self.total is not None
        value = self.total.evaluate(body) if isinstance(body, dict) else None
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise FatalError(f"the paginator's total ({self.total.source}) is {str(value)[:50]!r} on this page, "
                             "not a count of records")
        return value


class PagePaginator(OffsetPaginator):
    """A page number (``param``) starting at ``first``."""

    def step(self, records: list[Any]) -> int:
        return 1

    def covered(self, following: dict[str, Any]) -> int:
        """Pages read times the page size asked for."""
        return (int(following[self.param]) - self.start) * self.limit


class SinglePage:
    """No pagination: one request."""

    def first(self) -> dict[str, Any]:
        return {}

    def next(self, params: dict[str, Any], body: Any, records: list[Any]) -> dict[str, Any] | None:
        return None

    def request(self, params: dict[str, Any], body: Any) -> tuple[dict[str, Any], Any]:
        return params, body

    def variables(self, params: dict[str, Any]) -> dict[str, Any]:
        return {}

    def path(self, params: dict[str, Any], path: str, base_url: str) -> str:
        return path


#: The paging state key of a next-URL paginator: the link the previous page named (never sent as a parameter).
NEXT_URL = "@next_url"


class NextUrlPaginator:
    """The next page's path or URL read from each response (``next``), requested as given, with no query
    parameters of the read's own: the first page carries the query, the link carries the rest (a locator).

    The link stays under the connection's base URL: a full URL must name the base's scheme and host (the client
    checks it and its path); an absolute path must start with the base URL's path (an API that answers with its
    own root-relative path, ``/api/v1/query/L-2000`` under ``https://host/api/v1``). Repeated links are caught by
    the page guard like repeated cursors.
    """

    def __init__(self, config: NextUrlPaginatorConfig) -> None:
        self.next_path = config.next
        self.done = config.done

    def first(self) -> dict[str, Any]:
        return {}

    def next(self, params: dict[str, Any], body: Any, records: list[Any]) -> dict[str, Any] | None:
        if not isinstance(body, dict) or (self.done is not None and self.done.evaluate(body)):
            return None
        link = self.next_path.evaluate(body)
        if link is None or link == "":
            return None
        if not isinstance(link, str):
            raise FatalError(f"the next URL of a page is not text: {str(link)[:100]!r}")
        return {NEXT_URL: link}

    def request(self, params: dict[str, Any], body: Any) -> tuple[dict[str, Any], Any]:
        return ({}, body) if NEXT_URL in params else (params, body)

    def variables(self, params: dict[str, Any]) -> dict[str, Any]:
        return {}

    def path(self, params: dict[str, Any], path: str, base_url: str) -> str:
        link = params.get(NEXT_URL)
        return path if link is None else under_base(base_url, str(link))


def under_base(base_url: str, link: str) -> str:
    """``link`` as a request path for a client at ``base_url``: a full URL as given (the client checks its host
    and path), an absolute path relative to the base once the base's own path is taken off its front, a relative
    path as given. An absolute path outside the base's path is refused here, before anything is sent."""
    if link.startswith(("http://", "https://")) or not link.startswith("/"):
        return link
    root = httpx.URL(base_url).raw_path.decode("ascii").split("?", 1)[0].rstrip("/")
    if root and not (link == root or link.startswith(root + "/")):
        raise FatalError(f"request path {link!r} leaves the connection's base URL {base_url}")
    return link[len(root):].lstrip("/")


def _set_path(body: dict[str, Any], path: str, value: Any) -> None:
    """Set ``value`` at the dotted ``path`` of ``body``, creating the objects on the way."""
    *parents, last = path.split(".")
    for part in parents:
        child = body.setdefault(part, {})
        if not isinstance(child, dict):
            raise FatalError(f"a paginator's body path {path!r} runs through {part!r}, which is not an object")
        body = child
    body[last] = value


class PageGuard:
    """Bounds one query's paging, whatever the server says.

    A server that hands out a cursor already used (A, B, A, B), repeats a page already read (a fresh cursor with the
    same or an empty page; "more" forever while ignoring the offset) or never stops would be read forever. Each
    stops the read with an error naming the endpoint. Pages are remembered by a digest of their records' keys (or
    of their content), so memory grows with pages read, not with records.

    ``empty_ok``: empty pages are not repeats. For a paginator that pages by the API's own flag (``more``): an
    API that walks its change log in fixed steps answers many empty pages, each with a fresh cursor. Cursors
    handed out again and ``max_pages`` still bound the read.
    """

    def __init__(self, where: str, max_pages: int, key: Callable[[Any], Any] | None = None) -> None:
        """``where``: the endpoint, for messages; ``key``: a record's identity (None: the record's whole content)."""
        self.where = where
        self.max_pages = max_pages
        self.key = key
        self.pages = 0
        self._asked: set[bytes] = set()
        self._read: dict[bytes, int] = {}
        self.empty_ok = False

    def start(self, params: dict[str, Any]) -> dict[str, Any]:
        """The first page's request, remembered."""
        self._asked.add(_digest(params))
        return params

    def next(self, params: dict[str, Any] | None, records: list[Any]) -> dict[str, Any] | None:
        """``params`` (the paginator's next request after a page of ``records``) when paging may go on."""
        self.pages += 1
        if params is None:
            return None
        fault = None
        seen = self.pages if self.empty_ok and not records else \
            self._read.setdefault(_digest([self.key(r) for r in records] if self.key else records), self.pages)
        asked = _digest(params)
        if seen != self.pages:
            fault = f"page {self.pages} repeats page {seen}"
        elif asked in self._asked:
            fault = f"page {self.pages} leads back to a page already asked for"
        elif self.pages >= self.max_pages:
            fault = f"more than {self.max_pages} pages (the connector's limits.max_pages)"
        if fault:
            raise FatalError(f"{self.where}: paging does not end: {fault}")
        self._asked.add(asked)
        return params


def _digest(value: Any) -> bytes:
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.blake2b(text.encode(), digest_size=16).digest()


def build_paginator(config: PaginatorConfig | None) -> Paginator:
    """The paginator a connector's paginator config describes (none: a single page)."""
    if config is None:
        return SinglePage()
    if isinstance(config, CursorPaginatorConfig):
        return CursorPaginator(config)
    if isinstance(config, NextUrlPaginatorConfig):
        return NextUrlPaginator(config)
    return PagePaginator(config) if isinstance(config, PagePaginatorConfig) else OffsetPaginator(config)
