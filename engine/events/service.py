"""`ml-connector serve`: a tick every ``interval`` seconds, and with ``--listen`` a callback receiver beside it.

Each tick opens the state (a manual `run` may take it in between; a tick that finds it held waits and tries again),
maintains the channels the triggered flows need (register, renew) and hands the live ones to the receiver, runs the
flows whose schedule has come round, then the triggered flows for the ids pending in the inbox. A callback that
stored ids wakes the loop at once (an asyncio.Event), so a change is synced without waiting for the interval.

Flows triggered by a change stream (`trigger: {stream: ...}`) get a subscriber each (events/stream_serve.py),
started in the first tick and running as tasks beside the ticks: they fill the same inbox (and wake the loop) and
never open the state; each tick saves the positions and full-read marks they buffered.

The receiver (uvicorn) runs as a task in the same event loop; it never touches the state, only the inbox. Stop
signals are the command's: uvicorn's own signal handling is switched off, and the receiver is shut down on the way
out, whatever ended the loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from collections.abc import Awaitable, Callable, Generator
from dataclasses import dataclass, field
from datetime import UTC, datetime

import click
import uvicorn

from ml_connector.cluster.lease import FlowLeases, LeaseLost, process_holder, run_leased, under_lease
from ml_connector.errors import SetupError
from ml_connector.events.active import ActiveChannel
from ml_connector.events.channels import maintain_channels
from ml_connector.events.inbox import Inbox
from ml_connector.events.receiver import Receiver
from ml_connector.events.shared_inbox import open_inbox
from ml_connector.events.stream_serve import Streams
from ml_connector.report import run_table
from ml_connector.serve_view import idle_line, slots, started_lines, utc_naive
from ml_connector.spec import Project
from ml_connector.store import State
from ml_connector.store.database import StateLocked
from ml_connector.store.flow_locks import FlowLocks
from ml_connector.sync.runner import Runner, RunSummary
from ml_connector.sync.triggered import run_triggered, triggered_flows
from ml_connector.workspace import Workspace

log = logging.getLogger("ml_connector.events")
STARTUP_SECONDS = 10.0  # how long the receiver may take to bind its port
CHANNELS_LEASE = "serve:channels"  # replicas on one state maintain the webhook channels one at a time
CHANNELS_SECONDS = 60.0  # the channels lease: longer than a maintenance takes, and the longest a replica waits
INBOX_LEASE = "serve:inbox"  # replicas on one state take the shared inbox's pending ids one at a time
INBOX_ROUNDS = 10  # triggered runs one replica makes in a tick while ids keep arriving (the others wait for it)


class _Server(uvicorn.Server):
    """uvicorn without its signal handlers: SIGINT and SIGTERM belong to the command (it cancels the loop)."""

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


def parse_listen(value: str) -> tuple[str, int]:
    """HOST:PORT -> (host, port); a usage error otherwise."""
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or int(port) > 65535:
        raise SetupError(f"--listen {value!r} is not HOST:PORT (e.g. 127.0.0.1:8780)")
    return host or "127.0.0.1", int(port)


def listening_socket(host: str, port: int) -> socket.socket:
    """The receiver's listening socket, bound here so that a port in use is our one-line SetupError (uvicorn would
    exit the process).

    It carries TCP_NODELAY, which accepted connections inherit: asyncio sets it only on sockets created with the
    protocol IPPROTO_TCP named, which `socket.create_server` does not name, and without it an answer written in two
    parts (headers, then body) waits ~40 ms for the caller's delayed ACK; a source that waits for our answer (a
    synchronous webhook) would wait that long on every call.
    """
    try:
        sock = socket.create_server((host, port))
    except OSError as exc:
        reason = os.strerror(exc.errno) if exc.errno else str(exc)
        raise SetupError(f"cannot listen for callbacks on {host}:{port}: {reason}") from exc
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


async def _sleep(seconds: float) -> None:
    await asyncio.sleep(seconds)


async def until_woken(wake: asyncio.Event, seconds: float) -> None:
    """Wait until ``wake`` is set or ``seconds`` pass (the event stays set: the caller clears it).

    Not `asyncio.wait_for`: on Python 3.11 a cancellation that arrives in the loop turn the event is set returns
    normally from it, and a serve stopped by SIGTERM at that moment ticked on for ever. `asyncio.timeout` counts the
    cancellations it did not make itself and lets them through.
    """
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(seconds):
            await wake.wait()


@dataclass
class Service:
    """The loop of `serve`; ``listen`` (HOST:PORT) adds the receiver, ``public_url`` is what sources call."""

    workspace: Workspace
    interval: float
    runner: Runner | None = None  # the tick's runner while it runs
    verbose: int = 0  # -v: a line for each idle tick too
    listen: str | None = None
    public_url: str | None = None
    triggered_only: bool = False  # a receiver replica: due flows are left to `ml-connector scheduler`'s workers
    inbox_wait: float = 10.0  # seconds a replica waits for another to be done with the shared inbox
    make_runner: Callable[[Project, State], Runner] = Runner
    pause: Callable[[float], Awaitable[None]] = _sleep  # the wait while another process holds the state
    now: Callable[[], datetime] = field(default=lambda: datetime.now(UTC))
    receiver: Receiver | None = field(default=None, init=False)  # with listen: the receiver while serve runs
    _wake: asyncio.Event | None = field(default=None, init=False)  # set by a callback that stored ids
    streams: Streams | None = field(default=None, init=False)  # the change streams triggered flows need
    leases: FlowLeases = field(default_factory=lambda: FlowLeases(process_holder("serve")))

    async def loop(self, once: bool) -> None:
        project = self.workspace.project
        schedules = [(name, project.flows[name].data.get("schedule")) for name in project.flow_order()]
        address = parse_listen(self.listen) if self.listen is not None else None  # a bad one: before anything
        if self.triggered_only and address is None and not Streams.needed(project):
            raise SetupError("serve --triggered-only runs only the flows callbacks and change streams trigger: give "
                             "--listen HOST:PORT (or serve.listen in the workspace), or a flow triggered by a stream")
        click.echo("\n".join(started_lines(schedules, self.interval)), err=True)
        if address is None and not Streams.needed(project):
            await self._ticks(once, None)
            return
        inbox = open_inbox(self.workspace.state_target, self.workspace.state_path)  # PostgreSQL: shared by replicas
        try:
            self._wake = asyncio.Event()
            if Streams.needed(project):  # subscribed in the first tick (the state is open then)
                self.streams = Streams(project, inbox, on_stored=self._wake.set, now=self.now)
            try:
                await self._listen_and_tick(once, inbox, address)
            finally:  # the subscribers stop before the inbox closes
                if self.streams is not None:
                    await self.streams.stop()
        finally:
            inbox.close()

    async def _listen_and_tick(self, once: bool, inbox: Inbox, address: tuple[str, int] | None) -> None:
        if address is None:
            await self._ticks(once, inbox)
            return
        self.receiver = Receiver(inbox, now=self.now, on_stored=self._wake.set if self._wake else None)
        server, task = await self._start_receiver(self.receiver, *address)
        try:
            await self._ticks(once, inbox)
        finally:  # a stop signal too: the receiver stops taking callbacks before the inbox closes
            server.should_exit = True
            with contextlib.suppress(Exception):
                await asyncio.wait_for(asyncio.shield(task), STARTUP_SECONDS)

    async def _start_receiver(self, receiver: Receiver, host: str, port: int) -> tuple[_Server, asyncio.Task[None]]:
        sock = listening_socket(host, port)
        server = _Server(uvicorn.Config(receiver.app, log_level="warning", lifespan="off", access_log=False))
        task = asyncio.create_task(server.serve(sockets=[sock]))
        waited = 0.0
        while not server.started:
            if task.done() or waited > STARTUP_SECONDS:
                server.should_exit = True
                sock.close()
                with contextlib.suppress(Exception):
                    await task
                raise SetupError(f"cannot listen for callbacks on {host}:{port}: the receiver did not start")
            await asyncio.sleep(0.01)
            waited += 0.01
        bound = server.servers[0].sockets[0].getsockname()[1]
        address = f"http://{host}:{bound}"
        self.public_url = self.public_url or address
        click.echo(f"  listening for callbacks on {address} (public URL {self.public_url})", err=True)
        watched = [flow for flows in triggered_flows(self.workspace.project).values() for flow in flows]
        click.echo(f"  triggered by callbacks: {', '.join(watched) or 'no flow (add trigger: {channel: ...})'}",
                   err=True)
        return server, task

    async def _ticks(self, once: bool, inbox: Inbox | None) -> None:
        project = self.workspace.project
        schedules = [(name, project.flows[name].data.get("schedule")) for name in project.flow_order()]
        while True:
            try:
                state = self.workspace.state()
            except StateLocked as exc:
                click.echo(f"ml-connector: {exc}; trying again in {self.interval:g}s", err=True)
                await self.pause(self.interval)
                continue
            summary: RunSummary | None = None
            triggered: list[RunSummary] | None = None
            try:
                if self.streams is not None and not self.streams.started:
                    topics = self.streams.start(state)
                    click.echo(f"  subscribed to {', '.join(t.topic for t in topics)} (streams of "
                               f"{', '.join(sorted({f for t in topics for f in t.flows}))})", err=True)
                if inbox is not None and self.receiver is not None and self.public_url is not None:
                    live = await self._channels(project, state, self.public_url)
                    if live is not None:
                        self.receiver.update(live)
                self.runner = self._runner(project, state)
                now = utc_naive(self.runner.now())
                found = slots(schedules, state)
                full = self.streams.take_full_reads() if self.streams is not None else []
                if full:  # a stream lost its place (its replay id expired): those entities are read in full now
                    fulls = await self.runner.run(full, full=True)
                    if fulls.flows:
                        click.echo(run_table(fulls.as_dict()))
                    self.runner = self._runner(project, state)
                # nothing due: no run row; a receiver replica leaves the schedules to the scheduler's workers
                summary = None if self.triggered_only else await self.runner.run(due=True)
                if inbox is not None and triggered_flows(project):
                    triggered = await self._triggered(project, state, inbox)
            finally:
                if self.streams is not None:  # positions and full-read marks the subscribers buffered
                    for line in self.streams.save(state):
                        click.echo(f"ml-connector: {line}", err=True)
                state.close()
            self.runner = None
            for ran in (summary, *(triggered or [])):
                if ran is not None and ran.flows:
                    click.echo(run_table(ran.as_dict()))
            if not (summary and summary.flows) and not triggered and self.verbose:
                click.echo(idle_line(found, now), err=True)
            if once:
                return
            await self._wait()

    async def _triggered(self, project: Project, state: State, inbox: Inbox) -> list[RunSummary]:
        """The triggered runs of this tick. On a shared state one replica at a time takes the inbox, runs its ids
        and marks them done before letting go: a replica that read the ids while another ran them would run them
        again once the flow's lease was free. The holder runs what keeps arriving meanwhile (``INBOX_ROUNDS``)."""
        async def rounds() -> list[RunSummary]:
            done: list[RunSummary] = []
            for _ in range(INBOX_ROUNDS if state.db.shared else 1):
                self.runner = self._runner(project, state)
                ran = await run_triggered(self.runner, inbox)
                if ran is None:
                    break
                done.append(ran)
                if ran.status != "ok" or ran.elsewhere:  # ids left pending: the next tick, not at once again
                    break
            return done

        if not state.db.shared:
            return await rounds()
        locks = FlowLocks(state.db)

        async def leased() -> list[RunSummary]:
            return await run_leased(rounds(), locks, INBOX_LEASE, self.leases.holder, ttl=self.leases.ttl,
                                    every=self.leases.renew_every)

        try:
            ran = await under_lease(locks, INBOX_LEASE, self.leases.holder, leased, ttl=self.leases.ttl,
                                    wait=self.inbox_wait)
        except LeaseLost as exc:  # its ids were not marked done: the next tick (here or on a replica) runs them
            log.warning("%s", exc)
            return []
        return ran or []

    def _runner(self, project: Project, state: State) -> Runner:
        """The tick's runner; on a state other processes share (serve replicas), it runs a flow only while it holds
        the flow's lease, so a due or triggered flow runs on one replica at a time."""
        runner = self.make_runner(project, state)
        if state.db.shared:
            runner.leases = self.leases
        return runner

    async def _channels(self, project: Project, state: State, public_url: str) -> list[ActiveChannel] | None:
        """Register and renew the channels; on a shared state one replica at a time (the next finds them fresh).
        None: another replica held them past ``CHANNELS_SECONDS`` (the receiver keeps the channels it has)."""
        def maintain() -> Awaitable[list[ActiveChannel]]:
            return maintain_channels(project, state, public_url=public_url, now=self.now())

        if not state.db.shared:
            return await maintain()
        return await under_lease(FlowLocks(state.db), CHANNELS_LEASE, self.leases.holder, maintain,
                                 ttl=CHANNELS_SECONDS, wait=CHANNELS_SECONDS)

    async def _wait(self) -> None:
        """Until the next tick: the interval, or less when a callback stored ids."""
        if self._wake is None:
            await self.pause(self.interval)
            return
        await until_woken(self._wake, self.interval)
        self._wake.clear()
