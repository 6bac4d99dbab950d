"""Paginators: given one page's request and response, the request for the next page (or none)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

import jmespath


class Paginator(Protocol):
    """Turns a response into the parameters of the next request."""

    def first(self) -> dict[str, Any]: ...

    def next(self, params: dict[str, Any], body: Any, records: list[Any]) -> dict[str, Any] | None: ...


class _Limited:
    def __init__(self, spec: Mapping[str, Any]) -> None:
        limit = spec.get("limit") or {}
        self.limit_param: str | None = limit.get("param")
        self.limit: int | None = limit.get("max")
        self.has_more = jmespath.compile(spec["has_more"]) if spec.get("has_more") else None

    def _limit_params(self) -> dict[str, Any]:
        return {self.limit_param: self.limit} if self.limit_param and self.limit else {}

    def _more(self, body: Any, records: list[Any]) -> bool:
        if not records:
            return False
        if self.has_more is not None and isinstance(body, dict):
            return bool(self.has_more.search(body))
        return self.limit is None or len(records) >= self.limit


class CursorPaginator(_Limited):
    """An opaque cursor read from each response (``next`` JMESPath), sent back as ``param``."""

    def __init__(self, spec: Mapping[str, Any]) -> None:
        super().__init__(spec)
        self.param: str = spec["param"]
        self.next_path = jmespath.compile(spec["next"])

    def first(self) -> dict[str, Any]:
        return self._limit_params()

    def next(self, params: dict[str, Any], body: Any, records: list[Any]) -> dict[str, Any] | None:
        cursor = self.next_path.search(body) if isinstance(body, dict) else None
        if not cursor or cursor == params.get(self.param):
            return None
        return {**params, self.param: cursor}


class OffsetPaginator(_Limited):
    """A record offset (``param``) advanced by the number of records received."""

    default_first = 0

    def __init__(self, spec: Mapping[str, Any]) -> None:
        super().__init__(spec)
        self.param: str = spec["param"]
        self.start = int(spec.get("first", self.default_first))

    def first(self) -> dict[str, Any]:
        return {self.param: self.start, **self._limit_params()}

    def step(self, records: list[Any]) -> int:
        return len(records)

    def next(self, params: dict[str, Any], body: Any, records: list[Any]) -> dict[str, Any] | None:
        if not self._more(body, records):
            return None
        return {**params, self.param: int(params[self.param]) + self.step(records)}


class PagePaginator(OffsetPaginator):
    """A page number (``param``) starting at ``first`` (default 1)."""

    default_first = 1

    def step(self, records: list[Any]) -> int:
        return 1


class SinglePage:
    """No pagination: one request."""

    def first(self) -> dict[str, Any]:
        return {}

    def next(self, params: dict[str, Any], body: Any, records: list[Any]) -> dict[str, Any] | None:
        return None


_TYPES: dict[str, type] = {"cursor": CursorPaginator, "offset": OffsetPaginator, "page": PagePaginator}


def build_paginator(spec: Mapping[str, Any] | None) -> Paginator:
    """The paginator a connector's paginator spec describes (none: a single page)."""
    if not spec:
        return SinglePage()
    paginator: Paginator = _TYPES[spec["type"]](spec)
    return paginator
