"""A flow runs only while its worker holds the flow's lease: renewed as it runs, and the run stops when it is lost.

A worker that is alive but cut off from the state database (or paused longer than the lease) may find that another
worker took the flow; going on would run the flow twice at once, so the run is cancelled (the runner records what
was confirmed, as after SIGTERM) and the other worker carries on from there.
"""

from __future__ import annotations

import asyncio
import os
import socket
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import Any, TypeVar

from ml_connector.errors import MlConnectorError
from ml_connector.store.flow_locks import FlowLocks

T = TypeVar("T")


class LeaseLost(MlConnectorError):
    """The flow's lease ran out and another worker took it: this worker's run was stopped."""


def process_holder(kind: str) -> str:
    """This process's name in the flow leases: ``<kind> <host>:<pid>`` (``dead_local_holder`` reads it back)."""
    return f"{kind} {socket.gethostname()}:{os.getpid()}"


def dead_local_holder(holder: str) -> bool:
    """Whether ``holder`` names a process of this machine that no longer runs (killed): its lease is stale, and a run
    started right after the kill need not wait for it to run out. Another machine's holder, or a live (or reused)
    process id, is never judged dead."""
    _, _, where = holder.rpartition(" ")
    host, sep, pid = where.rpartition(":")
    if not sep or host != socket.gethostname() or not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except (PermissionError, OverflowError):
        return False
    return False


def take_lease(locks: FlowLocks, name: str, holder: str, *, ttl: float) -> bool:
    """Take the lease ``name`` for ``holder``; one held by a process of this machine that is gone (killed) is taken
    over at once instead of waiting for it to run out (flows, and serve's channel and inbox leases alike)."""
    if locks.take(name, holder, ttl=ttl):
        return True
    current = locks.holder(name)
    return current is not None and dead_local_holder(current) and locks.take_over(name, holder, current, ttl=ttl)


@dataclass(frozen=True)
class FlowLeases:
    """How a process that shares its state with others (serve replicas on PostgreSQL) runs a flow: only while it
    holds the flow's lease as ``holder``, taken for ``ttl`` seconds and renewed every ``every`` (a third of it)."""

    holder: str
    ttl: float = 60.0
    every: float | None = None

    @property
    def renew_every(self) -> float:
        return self.every or self.ttl / 3


async def run_leased(work: Coroutine[Any, Any, T], locks: FlowLocks, flow: str, holder: str, *, ttl: float,
                     every: float, sleep: Callable[[float], Awaitable[None]] = asyncio.sleep) -> T:
    """Await ``work`` while renewing ``holder``'s lease on ``flow`` every ``every`` seconds (for ``ttl``)."""
    task = asyncio.ensure_future(work)
    lost: list[bool] = []

    async def renew() -> None:
        while not task.done():
            await sleep(every)
            if task.done():
                return
            if not await asyncio.to_thread(locks.renew, flow, holder, ttl=ttl):
                lost.append(True)
                task.cancel("lease lost")
                return

    renewer = asyncio.ensure_future(renew())
    try:
        return await task
    except asyncio.CancelledError:
        if lost:
            raise LeaseLost(f"the lease on flow {flow} ran out and another worker took it; this run was stopped") \
                from None
        raise
    finally:
        renewer.cancel()


async def under_lease(locks: FlowLocks, name: str, holder: str, work: Callable[[], Awaitable[T]], *, ttl: float,
                      wait: float, poll: float = 0.25) -> T | None:
    """Await ``work()`` holding the lease ``name``, waiting up to ``wait`` seconds for another holder to let go;
    None when it never did (``work`` not run). For short work that must not run in two processes at once (serve
    replicas registering webhook channels): no renewal, so ``ttl`` must outlast it."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + wait
    while not take_lease(locks, name, holder, ttl=ttl):
        if loop.time() >= deadline:
            return None
        await asyncio.sleep(poll)
    try:
        return await work()
    finally:
        locks.release(name, holder)
