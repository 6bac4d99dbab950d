"""The long-running processes: a worker (dramatiq's Worker in this process) and the scheduler loop."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

import dramatiq

from ml_connector.cluster.jobs import QUEUE
from ml_connector.cluster.scheduler import Scheduler

log = logging.getLogger("ml_connector.cluster")


def run_worker(broker: dramatiq.Broker, *, threads: int, stop: threading.Event) -> None:
    """Take tasks with ``threads`` threads until ``stop`` is set; then finish the tasks in hand and give back the
    ones taken but not started (dramatiq requeues them)."""
    broker.emit_after("process_boot")  # starts the middleware's threads (TimeLimit), as dramatiq's own CLI does
    worker = dramatiq.Worker(broker, queues={QUEUE}, worker_threads=threads, worker_timeout=1000)
    # dramatiq prefetches twice its threads; a worker busy with a long flow would then sit on another tenant's task
    worker.queue_prefetch = threads
    worker.start()
    try:
        stop.wait()
    finally:
        worker.stop()  # emits worker_shutdown to the middleware
        broker.close()


def run_scheduler(scheduler: Scheduler, *, interval: float, stop: threading.Event,
                  on_tick: Callable[[int], None] | None = None) -> None:
    """Tick every ``interval`` seconds until ``stop`` is set (``once``: the caller sets it before the first wait)."""
    while True:
        sent = scheduler.tick()
        if on_tick is not None:
            on_tick(len(sent))
        if stop.wait(interval):
            return
