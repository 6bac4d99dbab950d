"""The broker: Dramatiq over Redis, and how the scheduler and workers speak to it.

Delivery is at-least-once: a worker acks a task after the actor returned, and the tasks a dead worker had taken
(unacked, in its ``__acks__`` set) go back to the queue once its heartbeat is older than ``heartbeat_timeout``
(dramatiq/brokers/redis/dispatch.lua, "maintenance", run on a random ``maintenance_chance`` of broker commands).
"""

from __future__ import annotations

from typing import Any

import dramatiq
import redis
from dramatiq.brokers.redis import RedisBroker

from ml_connector.cluster.jobs import ACTOR, QUEUE, FlowJob
from ml_connector.errors import SetupError

#: dramatiq's scale for ``maintenance_chance`` (per million commands).
MAINTENANCE_SCALE = 1_000_000


class BrokerUnreachable(SetupError):
    """The broker URL names no Redis that answers."""


#: Broker commands in a million that look for dead workers. dramatiq's default (1000) finds a dead worker's tasks
#: after some thousand polls, a quarter of an hour on an idle worker; 5% costs a small scan of the heartbeats.
MAINTENANCE_CHANCE = 50_000
NAMESPACE = "ml-connector"


def redis_broker(url: str, *, namespace: str = NAMESPACE, heartbeat_timeout: float = 60.0,
                 maintenance_chance: int = MAINTENANCE_CHANCE) -> RedisBroker:
    """A Redis broker that answers a PING (else one line saying which URL failed, without its password).

    ``heartbeat_timeout`` (seconds): how long a silent worker is taken for alive; its tasks are redelivered after.
    ``maintenance_chance``: how many broker commands in a million look for dead workers. ``namespace`` prefixes
    every key: deployments sharing one Redis keep apart.
    """
    broker = RedisBroker(url=url, namespace=namespace, heartbeat_timeout=round(heartbeat_timeout * 1000),
                         maintenance_chance=maintenance_chance)
    try:
        broker.client.ping()
    except redis.RedisError as exc:
        raise BrokerUnreachable(f"cannot reach the broker at {_without_password(url)}: {exc}") from None
    broker.declare_queue(QUEUE)
    return broker


def send(broker: dramatiq.Broker, job: FlowJob, *, delay_ms: int | None = None) -> None:
    """Enqueue ``job`` for the `run_flow` actor (the scheduler has no actor of its own: it only sends)."""
    broker.declare_queue(QUEUE)
    message: dramatiq.Message[Any] = dramatiq.Message(queue_name=QUEUE, actor_name=ACTOR, args=job.args(), kwargs={},
                                                     options={})
    broker.enqueue(message, delay=delay_ms)


def _without_password(url: str) -> str:
    scheme, sep, rest = url.partition("://")
    if "@" not in rest:
        return url
    credentials, _, host = rest.rpartition("@")
    user = credentials.split(":", 1)[0]
    return f"{scheme}{sep}{user + ':***' if ':' in credentials else user}@{host}"
