"""The PubSub gRPC service (facts §8) over the sandbox's event bus: GetTopic, GetSchema and Subscribe.

Every RPC checks the ``accesstoken``/``instanceurl``/``tenantid`` metadata. Errors end the call with the vendor's
``error-code`` trailer and a message ending ``rpcId: <id>`` (facts §8.4). Publish and the managed subscription are
not served (UNIMPLEMENTED): change events are not publishable by clients.
"""

from __future__ import annotations

import asyncio
import io
import json
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any, NoReturn

import fastavro
import grpc

from ml_connector.sandbox.salesforce.pubsub.avro import EventSchema, bitmap, body_values, event_name
from ml_connector.sandbox.salesforce.pubsub.bus import BusEvent, EventBus
from ml_connector_protos.eventbus.v1 import pubsub_api_pb2 as pb
from ml_connector_protos.eventbus.v1 import pubsub_api_pb2_grpc as pb_grpc

ALL_CHANGES = "/data/ChangeEvents"
_PREFIX = "sfdc.platform.eventbus.grpc."
AUTH_ERROR = _PREFIX + "service.auth.error"
REPLAY_CORRUPTED = _PREFIX + "subscription.fetch.replayid.corrupted"
REPLAY_VALIDATION = _PREFIX + "subscription.fetch.replayid.validation.failed"
REQUESTED_INVALID = _PREFIX + "subscription.fetch.requested.events.invalid"
UNAVAILABLE = _PREFIX + "service.unavailable"  # full prefix UNCONFIRMED (facts §8.4)


class _Abort(Exception):
    def __init__(self, status: grpc.StatusCode, message: str, error_code: str | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.error_code = status, message, error_code


async def _fail(context: grpc.aio.ServicerContext[Any, Any], error: _Abort, rpc_id: str) -> NoReturn:
    trailers: tuple[tuple[str, str], ...] = (("rpc-id", rpc_id),)
    if error.error_code:
        trailers = (("error-code", error.error_code), *trailers)
    await context.abort(error.status, f"{error.message} rpcId: {rpc_id}", trailing_metadata=trailers)
    raise AssertionError("abort returned")  # pragma: no cover - abort always raises


@dataclass
class PubSubService(pb_grpc.PubSubServicer):
    """Servicer; ``tokens_valid`` is the sandbox's ``tokens.valid`` (access token -> org id or None)."""

    bus: EventBus
    tokens_valid: Callable[[str], str | None]
    instance_url: str | None = None  # when known, the ``instanceurl`` metadata must name it

    # -- checks ---------------------------------------------------------------------------------------------------

    def _authenticate(self, context: grpc.aio.ServicerContext[Any, Any]) -> str:
        metadata = {key: value for key, value in context.invocation_metadata() or () if isinstance(value, str)}
        token, instance, tenant = (metadata.get(k, "") for k in ("accesstoken", "instanceurl", "tenantid"))
        org = self.tokens_valid(token) if token else None
        same_instance = instance.rstrip("/") == self.instance_url.rstrip("/") if self.instance_url else \
            instance.startswith(("https://", "http://"))
        if not org or not tenant or org[:15] != tenant[:15] or not same_instance:
            raise _Abort(grpc.StatusCode.UNAUTHENTICATED, "Authentication failed: invalid session, instance url or "
                         "tenant id.", AUTH_ERROR)
        return org

    def _topic(self, name: str) -> set[str] | None:
        """The entities a topic carries (None: all of them); an unknown topic is NOT_FOUND (code UNCONFIRMED)."""
        if name == ALL_CHANGES:
            return None
        for entity in self.bus.entities():
            if name == f"/data/{event_name(entity)}":
                return {entity}
        raise _Abort(grpc.StatusCode.NOT_FOUND, f"Topic not found or no access: {name}.")

    # -- unary RPCs -----------------------------------------------------------------------------------------------

    async def GetTopic(self, request: pb.TopicRequest, context: grpc.aio.ServicerContext[Any, Any]) -> pb.TopicInfo:
        rpc_id = str(uuid.uuid4())
        try:
            org = self._authenticate(context)
            entities = self._topic(request.topic_name)
        except _Abort as error:
            await _fail(context, error, rpc_id)
        schema_id = self.bus.schema(next(iter(entities))).schema_id if entities else ""
        return pb.TopicInfo(topic_name=request.topic_name, tenant_guid=org, can_publish=False, can_subscribe=True,
                            schema_id=schema_id, rpc_id=rpc_id)

    async def GetSchema(self, request: pb.SchemaRequest,
                        context: grpc.aio.ServicerContext[Any, Any]) -> pb.SchemaInfo:
        rpc_id = str(uuid.uuid4())
        try:
            self._authenticate(context)
            schema = self.bus.schema_by_id(request.schema_id)
            if schema is None:
                raise _Abort(grpc.StatusCode.NOT_FOUND, f"Schema not found: {request.schema_id}.")
        except _Abort as error:
            await _fail(context, error, rpc_id)
        return pb.SchemaInfo(schema_json=schema.json, schema_id=schema.schema_id, rpc_id=rpc_id)

    # -- Subscribe ------------------------------------------------------------------------------------------------

    async def Subscribe(self, request_iterator: AsyncIterator[pb.FetchRequest],
                        context: grpc.aio.ServicerContext[Any, Any]) -> AsyncIterator[pb.FetchResponse]:
        rpc_id = str(uuid.uuid4())
        try:
            self._authenticate(context)
            first = await anext(aiter(request_iterator), None)
            if first is None:
                return
            entities = self._topic(first.topic_name)
            cursor = self._start(first)
            stream = _Stream(self.bus, first.topic_name, self._cap(first.num_requested))
        except _Abort as error:
            await _fail(context, error, rpc_id)
        loop = asyncio.get_running_loop()
        self.bus.add_waiter(loop, stream.wake)
        reader = asyncio.create_task(stream.read(request_iterator, self._cap))
        try:
            while True:
                if stream.generation != self.bus.generation:
                    stream.error = _Abort(grpc.StatusCode.UNAVAILABLE, "The service is unavailable.", UNAVAILABLE)
                if stream.error:
                    await _fail(context, stream.error, rpc_id)
                batch = self.bus.after(cursor, entities, stream.pending) if stream.pending > 0 else []
                if batch:
                    cursor = batch[-1].replay_id
                    stream.pending -= len(batch)
                    schemas: dict[str, EventSchema] = {}  # one schema build per entity and batch
                    yield pb.FetchResponse(events=[self._consumer_event(e, schemas) for e in batch],
                                           latest_replay_id=_replay_bytes(cursor), rpc_id=rpc_id,
                                           pending_num_requested=stream.pending)
                    continue
                stream.wake.clear()
                if stream.pending > 0 and self.bus.after(cursor, entities, 1) or stream.error or \
                        stream.generation != self.bus.generation:
                    continue  # arrived between the read and the clear
                try:
                    await asyncio.wait_for(stream.wake.wait(), float(self.bus.config["pubsub_keepalive_seconds"]))
                except TimeoutError:
                    head = self.bus.latest()  # read first: an event committed after it has a larger id
                    if not self.bus.after(cursor, entities, 1):
                        cursor = max(cursor, head)  # nothing of this topic skipped: resume at the head
                    yield pb.FetchResponse(latest_replay_id=_replay_bytes(cursor), rpc_id=rpc_id,
                                           pending_num_requested=stream.pending)
        finally:
            reader.cancel()
            self.bus.remove_waiter(loop, stream.wake)

    def _cap(self, requested: int) -> int:
        if requested <= 0:
            raise _Abort(grpc.StatusCode.INVALID_ARGUMENT, "The number of requested events must be greater than 0.",
                         REQUESTED_INVALID)
        return int(min(requested, int(self.bus.config["pubsub_max_requested"])))

    def _start(self, first: pb.FetchRequest) -> int:
        """The replay id the subscription delivers after (facts §8.3)."""
        if first.replay_preset == pb.ReplayPreset.LATEST:
            return self.bus.latest()
        if first.replay_preset == pb.ReplayPreset.EARLIEST:
            return 0
        if not first.replay_id:
            raise _Abort(grpc.StatusCode.INVALID_ARGUMENT, "A replay ID is required with the CUSTOM replay preset.",
                         REPLAY_VALIDATION)
        replay_id = int.from_bytes(first.replay_id, "big") if len(first.replay_id) == 8 else -1
        if replay_id < 0 or not self.bus.knows(replay_id):
            raise _Abort(grpc.StatusCode.INVALID_ARGUMENT, "The Replay ID validation failed: the replay ID is invalid "
                         "or older than the retention window.", REPLAY_CORRUPTED)
        return replay_id

    def _consumer_event(self, event: BusEvent, schemas: dict[str, EventSchema]) -> pb.ConsumerEvent:
        schema = schemas.get(event.entity) or schemas.setdefault(event.entity, self.bus.schema(event.entity))
        payload = encode(schema, event)
        return pb.ConsumerEvent(event=pb.ProducerEvent(id=str(uuid.uuid5(uuid.NAMESPACE_OID, str(event.replay_id))),
                                                       schema_id=schema.schema_id, payload=payload),
                                replay_id=_replay_bytes(event.replay_id))


class _Stream:
    """Per-call state the request reader shares with the sender: outstanding count, wake-up, a late error."""

    def __init__(self, bus: EventBus, topic: str, pending: int) -> None:
        self.bus, self.topic, self.pending = bus, topic, pending
        self.wake = asyncio.Event()
        self.error: _Abort | None = None
        self.generation = bus.generation

    async def read(self, requests: AsyncIterator[pb.FetchRequest], cap: Callable[[int], int]) -> None:
        """Later FetchRequests add to the outstanding count (capped); their replay options are ignored."""
        async for request in requests:
            try:
                if request.topic_name and request.topic_name != self.topic:
                    raise _Abort(grpc.StatusCode.INVALID_ARGUMENT, "A subscription cannot change its topic.")
                self.pending = min(self.pending + cap(request.num_requested),
                                   int(self.bus.config["pubsub_max_requested"]))
            except _Abort as error:
                self.error = error
            self.wake.set()
            if self.error:
                return


def _replay_bytes(replay_id: int) -> bytes:
    return replay_id.to_bytes(8, "big")


def encode(schema: EventSchema, event: BusEvent) -> bytes:
    """The event's Avro binary body (facts §7.3): which fields carry values depends on the change type."""
    gap = event.change_type.startswith("GAP_")
    if gap or event.change_type == "DELETE":
        values = body_values(schema, {}, set())
    elif event.change_type == "UPDATE":
        values = body_values(schema, event.record, set(event.changed_fields))
    else:
        values = body_values(schema, event.record, None)
    update = event.change_type == "UPDATE"
    header = {"entityName": event.entity, "recordIds": list(event.record_ids), "changeType": event.change_type,
              "changeOrigin": event.change_origin, "transactionKey": event.transaction_key,
              "sequenceNumber": event.sequence_number, "commitTimestamp": event.commit_ms,
              "commitNumber": event.commit_number, "commitUser": event.commit_user,
              "nulledFields": bitmap(schema, event.nulled_fields) if update else [],
              "diffFields": [], "changedFields": bitmap(schema, event.changed_fields) if update else []}
    out = io.BytesIO()
    fastavro.schemaless_writer(out, _parsed(schema), {"ChangeEventHeader": header, **values})
    return out.getvalue()


_PARSED: dict[str, Any] = {}


def _parsed(schema: EventSchema) -> Any:
    parsed = _PARSED.get(schema.schema_id)
    if parsed is None:
        parsed = _PARSED[schema.schema_id] = fastavro.parse_schema(json.loads(schema.json))
    return parsed
