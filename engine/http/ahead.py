"""Reading one page ahead: the next page's request is on the wire while the current page is processed.

Without it a flow alternates: wait for the source to build a page, then map and diff it while the source idles. With
one page in flight the two overlap (the source's work and ours run on different machines, or cores), and a run takes
about the longer of the two instead of their sum. Pages still reach the flow in order, one at a time; a read error
surfaces after the pages before it were processed, as without reading ahead; at most two pages are held.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Generic, TypeVar

T = TypeVar("T")


class ReadAhead(Generic[T]):
    """Iterate ``pages``, asking for the next item as soon as the current one is handed out."""

    def __init__(self, pages: AsyncIterator[T]) -> None:
        self._pages = pages
        self._next: asyncio.Task[T] | None = None
        self._done = False

    def __aiter__(self) -> ReadAhead[T]:
        return self

    async def __anext__(self) -> T:
        if self._done:
            raise StopAsyncIteration
        task, self._next = self._next, None
        try:
            page = await (task if task is not None else self._pages.__anext__())
        except BaseException:
            self._done = True
            raise
        self._next = asyncio.ensure_future(self._pages.__anext__())
        await asyncio.sleep(0)  # let the request go out before the caller's CPU work holds the loop
        return page

    async def aclose(self) -> None:
        """Cancel the page in flight and close the source (a flow that stops early leaves no request behind)."""
        self._done = True
        task, self._next = self._next, None
        if task is not None:
            if task.done():
                with contextlib.suppress(BaseException):
                    task.result()  # a StopAsyncIteration or read error nobody will ask for
            else:
                task.cancel()
                with contextlib.suppress(BaseException):
                    await task
        closer = getattr(self._pages, "aclose", None)
        if closer is not None:
            await closer()
