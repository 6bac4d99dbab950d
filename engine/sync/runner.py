"""A run: the flows of the loaded integrations, in dependency order, against live connections."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx

from ml_connector.cluster.lease import FlowLeases, run_leased, take_lease
from ml_connector.config import ConnectorConfig, MappingConfig
from ml_connector.config.entity import EntityConfig
from ml_connector.connection import Connection
from ml_connector.http.catalog import LazyCatalog
from ml_connector.http.client import ClientOptions, ConnectorClient
from ml_connector.http.errors import FatalError
from ml_connector.http.redact import REDACTOR
from ml_connector.http.shared_quota import shared_quotas_for
from ml_connector.spec import Project
from ml_connector.store import State
from ml_connector.store.flow_locks import FlowLocks
from ml_connector.sync.flow import QUOTA, SKIPPED, FlowContext, FlowRun, FlowSummary, describe_failure
from ml_connector.sync.progress import Fanout, FlowCounts, NullProgress, Progress, Timeline
from ml_connector.sync.schedule import is_due
from ml_connector.transform.mapping import CompiledMapping

INTERRUPTED = "interrupted"  # a run or flow status: stopped from outside (a signal), not failed
#: How a stop from outside arrives: Ctrl-C in plain Python, or the cancellation a signal handler sends the run.
INTERRUPTS = (KeyboardInterrupt, asyncio.CancelledError)


def describe_interrupt(exc: BaseException) -> str:
    """``interrupted (SIGINT)`` when the canceller named the signal, else the exception's type."""
    reason = exc.args[0] if exc.args and isinstance(exc.args[0], str) else type(exc).__name__
    return f"{INTERRUPTED} ({reason})"


@dataclass
class RunSummary:
    run_id: str
    mode: str
    flows: list[FlowSummary] = field(default_factory=list)
    stopped: str | None = None  # INTERRUPTED (a signal) or "failed" (a crash) between or inside flows
    not_started: list[str] = field(default_factory=list)  # flows left when the API's allowance ran out
    elsewhere: list[str] = field(default_factory=list)  # with leases: flows another process runs, or just ran

    @property
    def status(self) -> str:
        """interrupted, failed, quota (the API's allowance ran out: the next run resumes), partial or ok; a skipped
        flow (nothing to do for this account) counts as ok."""
        if self.stopped == INTERRUPTED:
            return INTERRUPTED
        if self.stopped or any(f.status not in ("ok", SKIPPED, QUOTA) for f in self.flows):
            return "failed"
        if any(f.status == QUOTA for f in self.flows):
            return QUOTA
        return "partial" if self.failed_records else "ok"

    @property
    def quota_note(self) -> str | None:
        """One line for a run stopped by the API's allowance: which flow stopped, which were not started."""
        stopped = [f.flow for f in self.flows if f.status == QUOTA]
        if not stopped:
            return None
        left = f", not started: {', '.join(self.not_started)}" if self.not_started else ""
        return (f"API usage limit reached: flow {', '.join(stopped)} stopped{left}; what the targets confirmed is "
                "recorded, the next run resumes")

    @property
    def failed_records(self) -> int:
        """Records parked in this run, refused mass deletes included (they wait for a person's replay)."""
        return sum(f.failed + f.delete_refused for f in self.flows)

    def as_dict(self) -> dict[str, Any]:
        totals = {name: sum(getattr(f, name) for f in self.flows)
                  for name in ("read", "created", "updated", "unchanged", "deferred", "failed", "filtered",
                               "future_stamped", "waiting", "deleted", "cleared", "delete_refused")}
        totals["api_calls"] = {"reads": sum(f.api_reads for f in self.flows),
                               "writes": sum(f.api_writes for f in self.flows),
                               "rate_limited": sum(f.rate_limited for f in self.flows),
                               "waited_seconds": round(sum(f.waited_seconds for f in self.flows), 3)}
        data = {"run_id": self.run_id, "mode": self.mode, "status": self.status, "totals": totals,
                "flows": [f.as_dict() for f in self.flows]}
        if self.not_started:
            data["not_started"] = list(self.not_started)
        if self.elsewhere:
            data["elsewhere"] = list(self.elsewhere)
        return data


class Runner:
    """Owns the clients of one run and runs flows through them."""

    def __init__(self, project: Project, state: State, *, transport: httpx.AsyncBaseTransport | None = None,
                 client_options: ClientOptions | None = None, audit_unchanged: bool = True,
                 now: Callable[[], datetime] = lambda: datetime.now(UTC), progress: Progress | None = None,
                 leases: FlowLeases | None = None) -> None:
        """``leases``: the state is shared with other processes that run the same flows (serve replicas): a flow
        runs only while this runner holds its lease."""
        self.project = project
        self.leases = leases
        self.now = now  # the clock: run ids, schedules, and the moment each read begins
        self.state = state
        self.transport = transport
        self.client_options = client_options
        self.audit_unchanged = audit_unchanged
        self._clients: dict[str, ConnectorClient] = {}
        self._catalogs: dict[tuple[str, str], LazyCatalog] = {}
        self._mappings: dict[str, CompiledMapping] = {}
        self.last: RunSummary | None = None  # the latest run's summary, also when it was interrupted
        self._planned: dict[str, dict[str, set[str]]] = {}  # by run id: what each flow of a plan would write
        self.progress: Progress = progress or NullProgress()  # who watches (sync/progress.py)
        self._watch: Progress = self.progress  # the run's listeners: ``progress`` and the timeline it records

    # ---- connections ---------------------------------------------------------------------------------------

    def connection(self, name: str) -> Connection:
        workspace = self.project.workspace
        entries: Mapping[str, Any] = (workspace.data.get("connections") or {}) if workspace else {}
        if name not in entries:
            raise FatalError(f"the workspace has no connection named {name!r}")
        entry = entries[name]
        return Connection.from_workspace(name, entry, self._connector(entry["connector"]))

    def _connector(self, name: str) -> ConnectorConfig:
        config = self.project.connectors[name].config
        if not isinstance(config, ConnectorConfig):  # a loaded project has none; a caller that skipped validation
            raise FatalError(f"connector {name} has spec problems; run `ml-connector validate`")
        return config

    def client(self, name: str) -> ConnectorClient:
        if name not in self._clients:
            self._clients[name] = ConnectorClient(self.connection(name), self.state.credentials,
                                                  transport=self.transport, options=self.client_options,
                                                  shared_quotas=shared_quotas_for(self.project.workspace,
                                                                                  self.state.credentials))
        return self._clients[name]

    def catalog(self, connection: str, entity: str, config: EntityConfig) -> LazyCatalog:
        """The entity's custom-field catalog, shared by the flows of this run and read on first use."""
        key = (connection, entity)
        if key not in self._catalogs:
            self._catalogs[key] = LazyCatalog(self.client(connection), entity, config.custom_fields)
        return self._catalogs[key]

    def entity(self, connection: str, entity: str) -> EntityConfig:
        connector = self.connection(connection).connector
        if entity not in connector.entities:
            raise FatalError(f"connector {connector.connector} has no entity {entity!r}")
        return connector.entities[entity]

    def flow_config(self, name: str) -> MappingConfig:
        config = self.project.flows[name].config
        if not isinstance(config, MappingConfig):
            raise FatalError(f"flow {name} has spec problems; run `ml-connector validate`")
        return config

    async def aclose(self) -> None:
        for client in self._clients.values():
            await client.aclose()
        self._clients.clear()

    # ---- flows ---------------------------------------------------------------------------------------------

    def select(self, flows: list[str] | None = None, *, due: bool = False,
               now: datetime | None = None) -> list[str]:
        """Flow names to run, in dependency order; with ``due``, only those whose schedule has come round."""
        unknown = sorted(set(flows or []) - set(self.project.flows))
        if unknown:
            raise FatalError(f"unknown flow(s): {', '.join(unknown)}")
        order = self.project.flow_order(flows)
        if due:
            moment = (now or self.now()).astimezone(UTC).replace(tzinfo=None)
            order = [f for f in order if is_due(self.flow_config(f).schedule,
                                                 self.state.runs.last_finished(f), moment)]
        return order

    async def _context(self, run_id: str, config: MappingConfig, dry_run: bool, full: bool) -> FlowContext:
        source, target = config.source, config.target
        source_entity = self.entity(source.connection, source.entity)
        target_entity = self.entity(target.connection, target.entity)
        name = config.flow
        if name not in self._mappings:
            self._mappings[name] = CompiledMapping(config, source_entity)
        return FlowContext(
            run_id=run_id, state=self.state, source=self.client(source.connection),
            target=self.client(target.connection), source_entity=source_entity, target_entity=target_entity,
            mapping=self._mappings[name], known_flows=set(self.project.flows),
            source_catalog=self.catalog(source.connection, source.entity, source_entity),
            target_catalog=self.catalog(target.connection, target.entity, target_entity),
            dry_run=dry_run, full=full, audit_unchanged=self.audit_unchanged, now=self.now, progress=self._watch,
            reverse=self.flow_config(config.reverse) if config.reverse else None,
            planned=self._planned.setdefault(run_id, {}) if dry_run else {})

    async def run(self, flows: list[str] | None = None, *, dry_run: bool = False, due: bool = False,
                  full: bool = False, replay: Mapping[str, list[dict[str, Any]]] | None = None,
                  triggered: Mapping[str, list[str]] | None = None) -> RunSummary:
        """Run the selected flows once (``full``: re-read whole sources; ``replay``: only these parked records;
        ``triggered``: only these source record ids, by flow, re-read by id — see sync/triggered.py)."""
        mode = "plan" if dry_run else ("replay" if replay is not None else "trigger" if triggered is not None
                                       else "run")
        chosen = replay if replay is not None else triggered
        names = list(chosen) if chosen is not None else self.select(flows, due=due)
        summary = RunSummary(self.now().astimezone(UTC).strftime("%Y%m%dT%H%M%S") + "-" + uuid.uuid4().hex[:8],
                             mode)
        self.last = summary
        if due and not names:  # nothing has come round: no empty run row (a service ticks thousands of times a day)
            return summary
        timeline = Timeline()
        self._watch = Fanout(timeline, self.progress)
        if not dry_run:
            self.state.runs.start(summary.run_id, mode)
        try:
            order = self.project.flow_order(names) if names else []
            for index, name in enumerate(order):
                if not dry_run and self.leases is not None and not self._lease(name, due):
                    summary.elsewhere.append(name)
                    continue
                if not dry_run:
                    self.state.runs.start_flow(summary.run_id, name)
                self._watch.flow_started(name)
                result = FlowSummary(name, status="failed", error="interrupted")  # until the flow reports
                try:
                    config = self.flow_config(name)
                    context = await self._context(summary.run_id, config, dry_run, full)
                    flow = FlowRun(config, context)
                    result = flow.summary  # an interrupted flow marks it failed, then the interruption goes on
                    work = (flow.replay(replay[name]) if replay is not None
                            else flow.by_ids(triggered[name]) if triggered is not None else flow.execute())
                    result = await (work if self.leases is None or dry_run else run_leased(
                        work, FlowLocks(self.state.db), name, self.leases.holder, ttl=self.leases.ttl,
                        every=self.leases.renew_every))
                except Exception as exc:  # the flow could not even start (unknown connection or entity, ...)
                    result = FlowSummary(name, status="failed", error=REDACTOR(describe_failure(exc)))
                except INTERRUPTS as exc:
                    result.status, result.error = INTERRUPTED, describe_interrupt(exc)
                    raise
                finally:  # the flow is never left 'running' in state, whatever happened
                    if self.leases is not None and not dry_run:
                        FlowLocks(self.state.db).release(name, self.leases.holder)
                    summary.flows.append(result)
                    timeline.flow_finished(name, result.status, _counts(result))
                    if not dry_run:
                        self.state.runs.finish_flow(summary.run_id, name, result.status,
                                                    {**result.as_dict(), "timeline": timeline.samples(name)})
                    self.progress.flow_finished(name, result.status, _counts(result))  # after the state is true
                if result.status == QUOTA:  # the allowance is spent: starting more flows would only fail them
                    summary.not_started = order[index + 1:]
                    break
        except INTERRUPTS:
            summary.stopped = INTERRUPTED
            raise
        except BaseException:  # a crash of any kind fails the run
            summary.stopped = "failed"
            raise
        finally:
            if not dry_run:
                self.state.runs.finish(summary.run_id, summary.status, summary.as_dict())
            await self.aclose()
        return summary

    def _lease(self, name: str, due: bool) -> bool:
        """Take ``name``'s lease for this run; False when another process holds it or, for a due run, ran the
        flow since it was found due (its lease free again, the flow no longer due)."""
        assert self.leases is not None
        locks = FlowLocks(self.state.db)
        if not take_lease(locks, name, self.leases.holder, ttl=self.leases.ttl):
            return False
        moment = self.now().astimezone(UTC).replace(tzinfo=None)
        if due and not is_due(self.flow_config(name).schedule, self.state.runs.last_finished(name), moment):
            locks.release(name, self.leases.holder)
            return False
        self.state.runs.interrupt_flow(name)  # holding the lease: a run of it still 'running' was killed
        return True


def _counts(result: FlowSummary) -> FlowCounts:
    """A finished flow's numbers, as progress reports them."""
    return FlowCounts(read=result.read, written=result.created + result.updated, deferred=result.deferred,
                      failed=result.failed, rate_limited=result.rate_limited,
                      waited_seconds=round(result.waited_seconds, 3))
