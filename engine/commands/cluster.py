"""`ml-connector worker` and `ml-connector scheduler`: flow runs as tasks on Dramatiq over Redis (docs/scale-out.md).

Both name the tenants they serve (`-w`, repeatable: one workspace per tenant) and the broker (`--broker`). A worker
runs only tasks of its own workspaces, so a task in the queue cannot make it open a file it was not given.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import uuid
from datetime import timedelta
from types import FrameType
from typing import Any

import click

from ml_connector.errors import SetupError
from ml_connector.extras import import_from_extra

broker_option = click.option(
    "--broker", envvar="ML_CONNECTOR_BROKER", required=True, metavar="URL",
    help="The Redis the tasks travel through, e.g. redis://redis:6379/0 (a password: redis://:PASS@host). "
         "Env: ML_CONNECTOR_BROKER.")
namespace_option = click.option(
    "--namespace", default="ml-connector", show_default=True, envvar="ML_CONNECTOR_BROKER_NAMESPACE",
    help="Prefix of the broker's keys: deployments sharing one Redis keep apart. Env: ML_CONNECTOR_BROKER_NAMESPACE.")
tenants_option = click.option(
    "-w", "--workspace", "workspaces", multiple=True, required=True, metavar="[NAME=]PATH",
    help="A tenant's workspace file (repeatable). NAME defaults to the workspace's folder. Every worker and the "
         "scheduler must see a workspace at the same path.")


def _stop_on_signals(stop: threading.Event) -> None:
    """SIGINT/SIGTERM end the loop gracefully; a second one stops the process at once (a flow left half-way is
    taken again by another worker once its lease runs out: nothing lost, nothing duplicated)."""

    def handler(signum: int, _frame: FrameType | None) -> None:
        if stop.is_set():
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)
        stop.set()

    for number in (signal.SIGINT, signal.SIGTERM):
        signal.signal(number, handler)


def _tenants(workspaces: tuple[str, ...]) -> list[Any]:
    jobs = import_from_extra("ml_connector.cluster.jobs", "cluster")
    tenants = [jobs.Tenant.parse(text) for text in workspaces]
    for tenant in tenants:
        if not tenant.workspace.is_file():
            raise SetupError(f"no workspace file at {tenant.workspace} (tenant {tenant.name})")
    names = [tenant.name for tenant in tenants]
    duplicated = sorted({name for name in names if names.count(name) > 1})
    if duplicated:
        raise SetupError(f"two workspaces are named {', '.join(duplicated)}: name them with NAME=PATH")
    return tenants


@click.command()
@tenants_option
@broker_option
@click.option("--threads", default=1, show_default=True, help="Flows this process runs at once.")
@click.option("--processes", default=1, show_default=True, help="Worker processes to start (this one included).")
@click.option("--lease", default=60.0, show_default=True,
              help="Seconds a flow's lease lasts unless renewed (renewed every third of it while the flow runs): a "
                   "killed worker's flow is taken again at most this long after it died.")
@click.option("--heartbeat-timeout", default=60.0, show_default=True,
              help="Seconds after which a silent worker's taken tasks go back to the queue.")
@click.option("--retry-delay", default=5.0, show_default=True,
              help="Seconds before the task of a flow another worker is running comes back.")
@click.option("--maintenance-chance", default=50_000, show_default=True,
              help="Broker commands in a million that look for dead workers' tasks.")
@namespace_option
def worker(workspaces: tuple[str, ...], broker: str, threads: int, processes: int, lease: float,
           heartbeat_timeout: float, retry_delay: float, maintenance_chance: int, namespace: str) -> None:
    """Take flow tasks from the broker and run them, until SIGINT or SIGTERM.

    \b
    Example:
      ml-connector worker -w acme=/srv/acme/workspace.yaml --broker redis://redis:6379/0 --threads 2
    """
    tenants = _tenants(workspaces)
    cluster = import_from_extra("ml_connector.cluster.broker", "cluster")
    tasks_module = import_from_extra("ml_connector.cluster.tasks", "cluster")
    service = import_from_extra("ml_connector.cluster.service", "cluster")
    children = _start_children(processes - 1)
    stop = threading.Event()
    _stop_on_signals(stop)
    try:
        queue = cluster.redis_broker(broker, namespace=namespace, heartbeat_timeout=heartbeat_timeout,
                                     maintenance_chance=maintenance_chance)
        holder = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        tasks_module.FlowTasks(queue, holder=holder, workspaces=[t.workspace for t in tenants],
                               settings=tasks_module.TaskSettings(lease_seconds=lease, retry_delay=retry_delay))
        click.echo(f"ml-connector worker {holder}: {threads} {'thread' if threads == 1 else 'threads'}, tenants "
                   f"{', '.join(t.name for t in tenants)}", err=True)
        service.run_worker(queue, threads=threads, stop=stop)
    finally:
        for child in children:
            child.send_signal(signal.SIGTERM)
        for child in children:
            child.wait()


def _start_children(count: int) -> list[subprocess.Popen[bytes]]:
    """More worker processes: this command again with --processes 1 (a worker runs flows in threads; processes
    use more than one core)."""
    if count <= 0:
        return []
    args = list(sys.argv[1:])
    if "--processes" in args:
        at = args.index("--processes")
        del args[at:at + 2]
    args = [arg for arg in args if not arg.startswith("--processes=")]
    return [subprocess.Popen([sys.executable, "-m", "ml_connector.cli", *args, "--processes", "1"])
            for _ in range(count)]


@click.command()
@tenants_option
@broker_option
@click.option("--interval", default=5.0, show_default=True, help="Seconds between schedule checks.")
@click.option("--once", is_flag=True, help="Check the schedules once, enqueue what is due, and exit.")
@click.option("--stale-after", default=3600.0, show_default=True,
              help="Seconds after which a task sent but never completed (dead-lettered) is sent again.")
@namespace_option
def scheduler(workspaces: tuple[str, ...], broker: str, interval: float, once: bool, stale_after: float,
              namespace: str) -> None:
    """Enqueue each tenant's due flows (dependencies first) for the workers, until SIGINT or SIGTERM.

    \b
    Example:
      ml-connector scheduler -w acme=/srv/acme/workspace.yaml --broker redis://redis:6379/0
    """
    tenants = _tenants(workspaces)
    cluster = import_from_extra("ml_connector.cluster.broker", "cluster")
    scheduling = import_from_extra("ml_connector.cluster.scheduler", "cluster")
    service = import_from_extra("ml_connector.cluster.service", "cluster")
    queue = cluster.redis_broker(broker, namespace=namespace)
    sched = scheduling.Scheduler(tenants, lambda job: cluster.send(queue, job),
                                 stale_after=timedelta(seconds=stale_after))
    stop = threading.Event()
    if once:
        stop.set()
    else:
        _stop_on_signals(stop)

    def report(sent: int) -> None:
        if once or sent:
            click.echo(f"enqueued {sent} {'flow' if sent == 1 else 'flows'}")
        for tenant, problem in sorted(sched.problems.items()):
            if once:
                click.echo(f"ml-connector: tenant {tenant} skipped: {problem}", err=True)

    try:
        service.run_scheduler(sched, interval=interval, stop=stop, on_tick=report)
    finally:
        queue.close()
