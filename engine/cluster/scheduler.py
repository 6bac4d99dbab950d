"""The scheduler: finds each tenant's due flows and enqueues them, dependencies first.

It keeps in memory which tasks it sent and not yet saw completed ("outstanding"), and reads the rest from each
tenant's state: when a flow last completed (store/flow_locks.py, a killed run does not count) and whether a worker
holds its lease. A flow is not enqueued while its task is outstanding or it runs; a dependent is not enqueued while
one of its `depends_on` flows is due, outstanding or running, so across workers it runs after its dependencies' run
of this cycle, as one `run` does in order. A scheduler restarted loses only its memory: a task it then sends twice
finds its cycle done (tasks.py) or the flow leased.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from ml_connector.cluster.jobs import FlowJob, Tenant
from ml_connector.config import MappingConfig
from ml_connector.store.flow_locks import FlowLocks
from ml_connector.sync.schedule import is_due
from ml_connector.workspace import Workspace

log = logging.getLogger("ml_connector.cluster")


def utc_now() -> datetime:
    """Naive UTC, as the state stores times."""
    return datetime.now(UTC).replace(tzinfo=None)


@dataclass(frozen=True)
class Sent:
    after: datetime | None  # the flow's last completed run when the task was sent
    at: datetime


class Scheduler:
    """One tick: every tenant's due flows enqueued once; a tenant that fails is noted in ``problems`` and skipped."""

    def __init__(self, tenants: Iterable[Tenant], send: Callable[[FlowJob], None], *,
                 clock: Callable[[], datetime] = utc_now, stale_after: timedelta = timedelta(hours=1)) -> None:
        self.tenants = list(tenants)
        self.send = send
        self.clock = clock
        self.stale_after = stale_after  # a task not completed by then (dead-lettered, lost) is sent again
        self.problems: dict[str, str] = {}  # by tenant: why its last tick failed
        self._outstanding: dict[tuple[str, str], Sent] = {}
        self._workspaces: dict[Path, Workspace] = {}

    def tick(self) -> list[FlowJob]:
        now = self.clock()
        sent: list[FlowJob] = []
        for tenant in self.tenants:
            try:
                sent += self._tick(tenant, now)
            except Exception as exc:  # one tenant's broken workspace or busy state never holds up the others
                reason = " ".join(str(exc).split()) or type(exc).__name__
                if self.problems.get(tenant.name) != reason:
                    log.warning("tenant %s skipped: %s", tenant.name, reason)
                self.problems[tenant.name] = reason
            else:
                self.problems.pop(tenant.name, None)
        return sent

    def _tick(self, tenant: Tenant, now: datetime) -> list[FlowJob]:
        workspace = self._workspace(tenant.workspace)
        state = workspace.state()
        try:
            locks = FlowLocks(state.db)
            busy: set[str] = set()  # flows a dependent must wait for
            jobs: list[FlowJob] = []
            for flow in workspace.project.flow_order():
                config = workspace.project.flows[flow].config
                if not isinstance(config, MappingConfig):
                    continue
                last = locks.last_completed(flow)
                running = locks.holder(flow) is not None
                if self._outstanding_still(tenant, flow, last, running, now) or running:
                    busy.add(flow)
                    continue
                if not is_due(config.schedule, last, now):
                    continue
                busy.add(flow)
                if any(dependency in busy for dependency in config.depends_on):
                    continue
                job = FlowJob(str(tenant.workspace), tenant.name, flow, now.isoformat(),
                              last.isoformat() if last else None)
                self.send(job)
                self._outstanding[(tenant.name, flow)] = Sent(last, now)
                jobs.append(job)
            return jobs
        finally:
            state.close()

    def _outstanding_still(self, tenant: Tenant, flow: str, last: datetime | None, running: bool,
                           now: datetime) -> bool:
        """Whether the task sent for ``flow`` is still to complete (forgotten once completed, or once stale)."""
        sent = self._outstanding.get((tenant.name, flow))
        if sent is None:
            return False
        completed = last is not None and (sent.after is None or last > sent.after) and not running
        if completed or now - sent.at >= self.stale_after:
            del self._outstanding[(tenant.name, flow)]
            return False
        return True

    def _workspace(self, path: Path) -> Workspace:
        if path not in self._workspaces:
            self._workspaces[path] = Workspace.open(path)
        return self._workspaces[path]
