"""The writer's work queue: one loop runs jobs side by side in a task group; records ready to write are batched.

A job's handler either finishes its records or hands them on as new jobs (or as records ready to write), so no
step ever calls back into the writer: the loop is the only place work is started, and it ends when nothing is left.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

from ml_connector.http.errors import ConnectorError

RESOLVE = "resolve"  # find the target record a record matches
LOAD = "load"  # read the current target record before an update that merges from it
WRITE = "write"  # send records (one call)
CHECK = "check"  # a create of unknown outcome: did it land? (consistent views; not found: parked, never re-sent)
LOOK = "look"  # a create an earlier run left unknown: look for it before creating it again
REREAD = "reread"  # an update of unknown outcome: read the record back
STEP = "step"  # send a follow-up step of a record whose main write is confirmed
STEP_CHECK = "step_check"  # a step of unknown outcome: read the record back before sending it again


@dataclass
class Job:
    kind: str
    items: list[Any]
    action: str = ""
    reason: str = ""  # CHECK / REREAD: why the outcome is unknown
    failed_at: float = 0.0  # CHECK: when the write failed (a view read after it shows the record if it landed)
    step: int = 0  # STEP / STEP_CHECK: which follow-up step (index in the write's `then`)


class PushAborted(Exception):
    """A failure ended a push; ``results`` are the outcomes reached before it (confirmed writes must be recorded)."""

    def __init__(self, cause: BaseException, results: list[Any]) -> None:
        super().__init__(str(cause))
        self.cause = cause
        self.results = results


def root_cause(error: BaseException) -> BaseException:
    """The error that ended a task group: its first connector error, else its first error."""
    if not isinstance(error, BaseExceptionGroup):
        return error
    leaves = [root_cause(e) for e in error.exceptions]
    return next((e for e in leaves if isinstance(e, ConnectorError)), leaves[0])


@dataclass
class WorkQueue:
    """Jobs waiting to run and records waiting for a batch, per action."""

    run: Callable[[Job], Coroutine[Any, Any, None]]
    concurrency: int
    batch_size: Callable[[str], int]
    jobs: deque[Job] = field(default_factory=deque)
    writes: deque[Job] = field(default_factory=deque)  # full batches, served before other jobs
    ready: dict[str, list[Any]] = field(default_factory=dict)

    def add(self, job: Job) -> None:
        self.jobs.append(job)

    def write(self, action: str, item: Any) -> None:
        """A record ready to be sent: it waits for a full batch, or for the rest of the work to settle.

        A full batch goes first in line: the sooner a write is confirmed, the less an interruption can lose.
        """
        waiting = self.ready.setdefault(action, [])
        waiting.append(item)
        if len(waiting) >= self.batch_size(action):
            self.writes.append(Job(WRITE, waiting[:], action))
            waiting.clear()

    def _flush(self) -> None:
        for action, waiting in self.ready.items():
            if waiting:
                self.writes.append(Job(WRITE, waiting[:], action))
                waiting.clear()

    async def drain(self) -> None:
        """Run jobs (at most ``concurrency`` at once) until none is left; the first failure cancels the others."""
        async with asyncio.TaskGroup() as group:
            running: set[asyncio.Task[None]] = set()
            while True:
                if not running and not self.jobs and not self.writes:
                    self._flush()  # nothing else can join a partial batch any more
                while (self.writes or self.jobs) and len(running) < self.concurrency:
                    job = self.writes.popleft() if self.writes else self.jobs.popleft()
                    running.add(group.create_task(self.run(job)))
                if not running:
                    return
                done, running = await asyncio.wait(running, return_when=asyncio.FIRST_COMPLETED)
                if any(not task.cancelled() and task.exception() is not None for task in done):
                    return  # the task group cancels the rest and raises the failure
