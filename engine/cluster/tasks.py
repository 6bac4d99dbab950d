"""The `run_flow` task: one flow of one tenant's workspace, run by whichever worker takes it.

At-least-once delivery means a task may arrive twice, or while another worker still runs the flow; the state
database settles both: the flow's lease (store/flow_locks.py) lets one worker at a time run it, and a task whose
cycle already has a completed run does nothing. A task that finds its flow busy is sent again with a delay (the
queue acks the old one after the new one is queued), never dropped.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dramatiq

from ml_connector.cluster.jobs import ACTOR, QUEUE, FlowJob
from ml_connector.cluster.lease import LeaseLost, run_leased
from ml_connector.errors import MlConnectorError
from ml_connector.spec import Project
from ml_connector.store import State
from ml_connector.store.database import StateLocked
from ml_connector.store.flow_locks import FlowLocks
from ml_connector.store.runs import Runs
from ml_connector.sync.runner import Runner
from ml_connector.workspace import Workspace

log = logging.getLogger("ml_connector.cluster")


@dataclass(frozen=True)
class TaskSettings:
    lease_seconds: float = 60.0  # a killed worker's flow is taken again at most this long after it died
    renew_every: float | None = None  # None: a third of the lease
    retry_delay: float = 5.0  # seconds before the task of a busy flow comes back
    max_retries: int = 5  # for a task that crashed (workspace unreadable, state unreachable); then dead-lettered
    time_limit: float = 24 * 3600.0  # seconds; dramatiq stops a task after 10 minutes unless told otherwise


class Refused(MlConnectorError):
    """A task names a workspace this worker does not serve (never retried: another worker pool serves it)."""


class FlowTasks:
    """The actor, bound to one broker, and what it does with each task."""

    def __init__(self, broker: dramatiq.Broker, *, holder: str, workspaces: Iterable[Path],
                 settings: TaskSettings | None = None,
                 make_runner: Callable[[Project, State], Runner] = Runner,
                 on_outcome: Callable[[FlowJob, str], None] | None = None) -> None:
        self.holder = holder  # this worker's name in the flow leases
        self.served = {Path(path).resolve() for path in workspaces}
        self.settings = settings or TaskSettings()
        self.make_runner = make_runner
        self.on_outcome = on_outcome or (lambda job, outcome: log.info("%s/%s: %s", job.tenant, job.flow, outcome))
        self._workspaces: dict[Path, Workspace] = {}
        max_retries = self.settings.max_retries
        self.actor: dramatiq.Actor[Any, None] = dramatiq.Actor(
            self._receive, broker=broker, actor_name=ACTOR, queue_name=QUEUE, priority=0,
            options={"retry_when": lambda retries, exc: not isinstance(exc, Refused) and retries < max_retries,
                     "min_backoff": round(self.settings.retry_delay * 1000),
                     "time_limit": round(self.settings.time_limit * 1000)})

    def send(self, job: FlowJob, *, delay: float | None = None) -> None:
        self.actor.send_with_options(args=job.args(), delay=None if delay is None else round(delay * 1000))

    def _receive(self, workspace: str, tenant: str, flow: str, due_at: str, after: str | None = None) -> None:
        self.perform(FlowJob(workspace, tenant, flow, due_at, after))

    def perform(self, job: FlowJob) -> str:
        """Run ``job``'s flow if it is free and its cycle not yet done; the outcome in a word or a line."""
        try:
            outcome = self._perform(job)
        except Exception as exc:
            self.on_outcome(job, f"{'refused' if isinstance(exc, Refused) else 'error'}: {exc}")
            raise
        self.on_outcome(job, outcome)
        return outcome

    def _perform(self, job: FlowJob) -> str:
        path = Path(job.workspace).resolve()
        if path not in self.served:
            raise Refused(f"this worker does not serve {job.workspace}")
        workspace = self._workspace(path)
        try:
            state = workspace.state()
        except StateLocked:  # an embedded (DuckDB) state is used by one process at a time
            return self._later(job)
        try:
            locks = FlowLocks(state.db)
            if not locks.take(job.flow, self.holder, ttl=self.settings.lease_seconds):
                return self._later(job)
            try:
                # holding the lease, a run of this flow still 'running' is a killed worker's: a shared state has
                # no one else to say so (store/runs.py, Runs.start)
                Runs(state.db).interrupt_flow(job.flow)
                if locks.completed_after(job.flow, job.after_time):
                    return "already run"
                log.info("%s/%s: started by %s", job.tenant, job.flow, self.holder)
                runner = self.make_runner(workspace.project, state)
                every = self.settings.renew_every or self.settings.lease_seconds / 3
                summary = asyncio.run(run_leased(runner.run([job.flow]), locks, job.flow, self.holder,
                                                 ttl=self.settings.lease_seconds, every=every))
                return summary.status
            except LeaseLost:
                return "lease lost"
            finally:
                locks.release(job.flow, self.holder)
        finally:
            state.close()

    def _later(self, job: FlowJob) -> str:
        self.send(job, delay=self.settings.retry_delay)
        return "busy"

    def _workspace(self, path: Path) -> Workspace:
        """Specs are loaded once per worker process (a changed spec needs a worker restart, as `serve` does)."""
        if path not in self._workspaces:
            self._workspaces[path] = Workspace.open(path)
        return self._workspaces[path]
