"""The org's change event bus: every committed change of a CDC-enabled object, kept in commit order for replay.

Replay ids grow by a random step (never contiguous, facts §8.3), so a client that computes ids instead of storing
the ones it was given fails here as it would against the real bus. Events older than the retention (72 h by the
sandbox clock) are dropped; a replay id the bus no longer holds is refused by the Subscribe RPC.
"""

from __future__ import annotations

import asyncio
import bisect
import random
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from ml_connector.sandbox.salesforce.pubsub.avro import GAP_TYPES, EventSchema, build_schema

DEFAULT_CONFIG: dict[str, Any] = {
    # Setup -> Change Data Capture: without the add-on an org selects at most 5 entities (facts §7.1)
    "pubsub_cdc_entities": ["Account", "Contact", "Product2", "Order", "OrderItem"],
    "pubsub_retention_hours": 72.0,
    "pubsub_keepalive_seconds": 270.0,
    "pubsub_max_requested": 100,
}
OVERFLOW_RECORD_ID = "000000000000000AAA"
_FIRST_REPLAY_ID = 2_458_000
_FIRST_COMMIT_NUMBER = 1_100_670_838_951


class ChangeLike(Protocol):
    """The store's committed change (sandbox/salesforce/store.py ``Change``)."""

    @property
    def entity(self) -> str: ...
    @property
    def change_type(self) -> str: ...
    @property
    def record_ids(self) -> tuple[str, ...]: ...
    @property
    def changed_fields(self) -> tuple[str, ...]: ...
    @property
    def nulled_fields(self) -> tuple[str, ...]: ...
    @property
    def record(self) -> dict[str, Any]: ...
    @property
    def commit_ms(self) -> int: ...
    @property
    def transaction_key(self) -> str: ...
    @property
    def change_origin(self) -> str: ...
    @property
    def commit_user(self) -> str: ...


class StoreLike(Protocol):
    clock: Callable[[], float]

    def objects(self) -> list[str]: ...
    def describe(self, sobject: str) -> dict[str, Any]: ...


@dataclass(frozen=True)
class BusEvent:
    replay_id: int
    entity: str
    change_type: str
    record_ids: tuple[str, ...]
    changed_fields: tuple[str, ...]
    nulled_fields: tuple[str, ...]
    record: dict[str, Any]
    commit_ms: int
    commit_number: int
    transaction_key: str
    sequence_number: int
    change_origin: str
    commit_user: str

    def summary(self) -> dict[str, Any]:
        return {"replayId": self.replay_id, "entity": self.entity, "changeType": self.change_type,
                "recordIds": list(self.record_ids), "commitTimestamp": self.commit_ms,
                "transactionKey": self.transaction_key, "changeOrigin": self.change_origin}


class EventBus:
    """Thread-safe event log of one org; async subscribers are woken through their own loops."""

    def __init__(self, store: StoreLike, config: dict[str, Any], seed: int = 21) -> None:
        self.store = store
        self.config = config
        for key, value in DEFAULT_CONFIG.items():
            config.setdefault(key, list(value) if isinstance(value, list) else value)
        self._events: list[BusEvent] = []
        self._ids: list[int] = []
        self._latest = _FIRST_REPLAY_ID
        self._commit_number = _FIRST_COMMIT_NUMBER
        self._sequence: dict[str, int] = {}
        self._rng = random.Random(seed)
        self._lock = threading.Lock()
        self._waiters: set[tuple[asyncio.AbstractEventLoop, asyncio.Event]] = set()
        self._schemas: dict[str, EventSchema] = {}
        self.generation = 0  # bumped by ``disconnect``: streams opened before it end

    # -- topics and schemas ---------------------------------------------------------------------------------------

    def entities(self) -> list[str]:
        """The CDC-selected objects that exist in this org (Invoice only with Revenue Cloud)."""
        existing = set(self.store.objects())
        return [e for e in self.config["pubsub_cdc_entities"] if e in existing]

    def schema(self, entity: str) -> EventSchema:
        described = self.store.describe(entity)
        schema = build_schema(entity, described)
        self._schemas[schema.schema_id] = schema  # every schema ever served stays readable by its id
        return schema

    def schema_by_id(self, schema_id: str) -> EventSchema | None:
        for entity in self.entities():
            self.schema(entity)
        return self._schemas.get(schema_id)

    # -- publishing -----------------------------------------------------------------------------------------------

    def on_change(self, change: ChangeLike) -> None:
        """The store's listener: a change of a CDC-enabled object becomes an event."""
        if change.entity not in self.config["pubsub_cdc_entities"]:
            return
        self._append(change.entity, change.change_type, tuple(change.record_ids), tuple(change.changed_fields),
                     tuple(change.nulled_fields), dict(change.record), change.commit_ms, change.transaction_key,
                     change.change_origin, change.commit_user)

    def gap(self, entity: str, record_ids: tuple[str, ...], change_type: str) -> BusEvent:
        """A gap or overflow event (header only, facts §7.3); overflow names the placeholder record id."""
        if change_type not in GAP_TYPES:
            raise ValueError(f"not a gap type: {change_type}")
        if change_type == "GAP_OVERFLOW":
            record_ids = (OVERFLOW_RECORD_ID,)
        elif not record_ids:
            raise ValueError(f"{change_type} needs record ids")
        now_ms = int(self.store.clock() * 1000)
        return self._append(entity, change_type, record_ids, (), (), {}, now_ms,
                            f"gap-{self._rng.getrandbits(64):016x}", "", "")

    def _append(self, entity: str, change_type: str, record_ids: tuple[str, ...], changed: tuple[str, ...],
                nulled: tuple[str, ...], record: dict[str, Any], commit_ms: int, transaction_key: str,
                origin: str, user: str) -> BusEvent:
        with self._lock:
            self._latest += self._rng.randint(2, 9)
            self._commit_number += self._rng.randint(1, 1000)
            sequence = self._sequence.get(transaction_key, 0) + 1
            self._sequence[transaction_key] = sequence
            event = BusEvent(self._latest, entity, change_type, record_ids, changed, nulled, record, commit_ms,
                             self._commit_number, transaction_key, sequence, origin, user)
            self._events.append(event)
            self._ids.append(event.replay_id)
            waiters = list(self._waiters)
        for loop, wake in waiters:
            try:
                loop.call_soon_threadsafe(wake.set)
            except RuntimeError:  # that subscriber's loop is gone
                self._waiters.discard((loop, wake))
        return event

    # -- reading --------------------------------------------------------------------------------------------------

    def purge(self, older_than_seconds: float) -> int:
        """Drop events committed more than ``older_than_seconds`` ago by the sandbox clock; returns how many."""
        cutoff_ms = (self.store.clock() - older_than_seconds) * 1000
        with self._lock:
            keep = [e for e in self._events if e.commit_ms >= cutoff_ms]
            dropped = len(self._events) - len(keep)
            self._events = keep
            self._ids = [e.replay_id for e in keep]
        return dropped

    def expire(self) -> None:
        """Drop the events past the retention; they are in commit order, so only the head is looked at."""
        cutoff_ms = (self.store.clock() - float(self.config["pubsub_retention_hours"]) * 3600) * 1000
        with self._lock:
            old = 0
            while old < len(self._events) and self._events[old].commit_ms < cutoff_ms:
                old += 1
            if old:
                del self._events[:old]
                del self._ids[:old]

    def latest(self) -> int:
        """The newest replay id ever issued (the resume point of a caught-up subscriber)."""
        with self._lock:
            return self._latest

    def knows(self, replay_id: int) -> bool:
        """Whether a subscription may resume after ``replay_id``: a retained event's id, or the newest id."""
        self.expire()
        with self._lock:
            at = bisect.bisect_left(self._ids, replay_id)
            return replay_id == self._latest or (at < len(self._ids) and self._ids[at] == replay_id)

    def after(self, replay_id: int, entities: set[str] | None, limit: int) -> list[BusEvent]:
        """Up to ``limit`` retained events after ``replay_id`` (of ``entities`` only, when given), in order."""
        self.expire()
        out: list[BusEvent] = []
        with self._lock:
            for at in range(bisect.bisect_right(self._ids, replay_id), len(self._events)):
                if len(out) >= limit:
                    break
                if entities is None or self._events[at].entity in entities:
                    out.append(self._events[at])
        return out

    def events(self) -> list[BusEvent]:
        self.expire()
        with self._lock:
            return list(self._events)

    def disconnect(self) -> int:
        """End every open stream (a server restart, a network cut); returns how many there were."""
        with self._lock:
            self.generation += 1
            waiters = list(self._waiters)
        for loop, wake in waiters:
            loop.call_soon_threadsafe(wake.set)
        return len(waiters)

    # -- waking subscribers ---------------------------------------------------------------------------------------

    def add_waiter(self, loop: asyncio.AbstractEventLoop, wake: asyncio.Event) -> None:
        with self._lock:
            self._waiters.add((loop, wake))

    def remove_waiter(self, loop: asyncio.AbstractEventLoop, wake: asyncio.Event) -> None:
        with self._lock:
            self._waiters.discard((loop, wake))

    def subscribers(self) -> int:
        """Open subscriptions: a test waits for one instead of sleeping (a loaded machine subscribes late)."""
        with self._lock:
            return len(self._waiters)
