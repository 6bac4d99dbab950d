"""Change streams: the engine subscribes (gRPC, flow control, Avro payloads) and turns changes into inbox ids.

The server is an in-test grpc.aio server over the generated stubs: it keeps a list of events, honours the first
FetchRequest's replay preset, delivers at most what was requested and logs every FetchRequest it receives.
"""

from __future__ import annotations

import asyncio
import io
import json
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import fastavro
import grpc
import pytest

from ml_connector.config.stream import StreamConfig
from ml_connector.events.inbox import Inbox
from ml_connector.events.stream import StreamFailed, StreamSubscriber, StreamTopic
from ml_connector.events.stream_decode import SchemaCache, changed_field_names, parse_schema
from ml_connector.events.stream_state import StatePositions
from ml_connector.store import State
from ml_connector.store.stream_positions import StreamPosition
from ml_connector_protos.eventbus.v1 import pubsub_api_pb2 as pb
from ml_connector_protos.eventbus.v1 import pubsub_api_pb2_grpc as pb_grpc
from tests.engine.configs import connector

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
TOPIC = "/data/AccountChangeEvent"
INVALID = "stream.replayid.corrupted"
AUTH_ERROR = "stream.auth.error"
HEADER = {"type": "record", "name": "ChangeEventHeader", "fields": [
    {"name": "entityName", "type": "string"},
    {"name": "recordIds", "type": {"type": "array", "items": "string"}},
    {"name": "changeType", "type": {"type": "enum", "name": "ChangeType", "symbols": [
        "CREATE", "UPDATE", "DELETE", "UNDELETE", "GAP_CREATE", "GAP_UPDATE", "GAP_DELETE", "GAP_UNDELETE",
        "GAP_OVERFLOW", "SNAPSHOT"]}},
    {"name": "changeOrigin", "type": "string"},
    {"name": "transactionKey", "type": "string"},
    {"name": "commitTimestamp", "type": "long"},
    {"name": "nulledFields", "type": {"type": "array", "items": "string"}},
    {"name": "changedFields", "type": {"type": "array", "items": "string"}}]}
ADDRESS = {"type": "record", "name": "Address", "fields": [
    {"name": "Street", "type": ["null", "string"], "default": None},
    {"name": "City", "type": ["null", "string"], "default": None},
    {"name": "PostalCode", "type": ["null", "string"], "default": None}]}
ACCOUNT = {"type": "record", "name": "AccountChangeEvent", "namespace": "test.events", "fields": [
    {"name": "ChangeEventHeader", "type": HEADER},
    {"name": "Name", "type": ["null", "string"], "default": None},
    {"name": "BillingAddress", "type": ["null", ADDRESS], "default": None},
    {"name": "Phone", "type": ["null", "string"], "default": None},
    {"name": "LastModifiedDate", "type": ["null", "long"], "default": None},
    {"name": "ERP_Id__c", "type": ["null", "string"], "default": None}]}
ACCOUNT_V2 = {**ACCOUNT, "fields": [*ACCOUNT["fields"], {"name": "Fax", "type": ["null", "string"], "default": None}]}
SCHEMAS = {"schema-1": ACCOUNT, "schema-2": ACCOUNT_V2}
pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


STREAM = {"protocol": "grpc_pubsub", "proto": "ml_connector_protos.eventbus.v1.pubsub_api",
          "target": "{{ connection.target }}", "tls": False,
          "metadata": {"accesstoken": "{{ stream.token }}", "instanceurl": "{{ connection.instance }}"},
          "topic": "/data/{{ stream.entity }}ChangeEvent", "batch": 2, "header": "ChangeEventHeader",
          "ids": "recordIds", "change_type": "changeType",
          "changed_fields": {"path": "changedFields", "encoding": "bitmap"},
          "gaps": ["GAP_CREATE", "GAP_UPDATE", "GAP_DELETE", "GAP_UNDELETE", "GAP_OVERFLOW"],
          "wildcard_ids": ["000000000000000AAA"],
          "origin": {"path": "changeOrigin", "own": ";client=ml-connector"},
          "invalid_replay": INVALID, "backoff": 1, "backoff_max": 4}


def stream_config(**changes: Any) -> StreamConfig:
    return connector({"streams": {"changes": {**STREAM, **changes}}}).streams["changes"]


def header(change: str, ids: list[str], changed: list[str] | None = None, origin: str = "") -> dict[str, Any]:
    return {"entityName": "Account", "recordIds": ids, "changeType": change, "changeOrigin": origin,
            "transactionKey": "tx-1", "commitTimestamp": 1772366400000, "nulledFields": [],
            "changedFields": changed or []}


def account(change: str, ids: list[str], changed: list[str] | None = None, origin: str = "",
            **values: Any) -> dict[str, Any]:
    return {"ChangeEventHeader": header(change, ids, changed, origin), **values}


class FakePubSub(pb_grpc.PubSubServicer):
    """The Pub/Sub service over a list of events: replay presets, flow control, keepalives, scripted failures."""

    def __init__(self) -> None:
        self.events: list[tuple[bytes, pb.ProducerEvent]] = []
        self.requests: list[pb.FetchRequest] = []  # every FetchRequest of every Subscribe call, in order
        self.tokens_seen: list[str] = []
        self.schema_calls: list[str] = []
        self.valid_tokens = {"token-1"}
        self.failures: list[tuple[grpc.StatusCode, str]] = []  # the next Subscribe calls end with these
        self.keepalives: list[bytes] = []
        self.changed = asyncio.Event()
        self.next_id = 1000

    def publish(self, record: dict[str, Any], schema_id: str = "schema-1") -> bytes:
        out = io.BytesIO()
        fastavro.schemaless_writer(out, fastavro.parse_schema(SCHEMAS[schema_id]), record)
        self.next_id += 37  # increasing, not contiguous
        replay = self.next_id.to_bytes(8, "big")
        self.events.append((replay, pb.ProducerEvent(id=f"e{len(self.events)}", schema_id=schema_id,
                                                      payload=out.getvalue())))
        self.changed.set()
        return replay

    def publish_raw(self, payload: bytes, schema_id: str = "schema-1") -> bytes:
        self.next_id += 37
        replay = self.next_id.to_bytes(8, "big")
        self.events.append((replay, pb.ProducerEvent(id="raw", schema_id=schema_id, payload=payload)))
        self.changed.set()
        return replay

    def keepalive(self, replay: bytes) -> None:
        self.keepalives.append(replay)
        self.changed.set()

    async def _auth(self, context: grpc.aio.ServicerContext[Any, Any]) -> None:
        metadata = dict(context.invocation_metadata() or ())
        token = str(metadata.get("accesstoken"))
        self.tokens_seen.append(token)
        if token not in self.valid_tokens:
            context.set_trailing_metadata((("error-code", AUTH_ERROR),))
            await context.abort(grpc.StatusCode.UNAUTHENTICATED, "bad token")

    async def GetTopic(self, request: pb.TopicRequest, context: Any) -> pb.TopicInfo:
        await self._auth(context)
        return pb.TopicInfo(topic_name=request.topic_name, schema_id="schema-1", can_subscribe=True)

    async def GetSchema(self, request: pb.SchemaRequest, context: Any) -> pb.SchemaInfo:
        await self._auth(context)
        self.schema_calls.append(request.schema_id)
        return pb.SchemaInfo(schema_json=json.dumps(SCHEMAS[request.schema_id]), schema_id=request.schema_id)

    async def Subscribe(self, request_iterator: AsyncIterator[pb.FetchRequest],
                        context: Any) -> AsyncIterator[pb.FetchResponse]:
        await self._auth(context)
        if self.failures:
            code, error_code = self.failures.pop(0)
            context.set_trailing_metadata((("error-code", error_code),))
            await context.abort(code, f"scripted {code.name}")
        first = await anext(aiter(request_iterator))
        self.requests.append(first)
        ids = [replay for replay, _ in self.events]
        if first.replay_preset == pb.ReplayPreset.CUSTOM:
            if first.replay_id not in ids:
                context.set_trailing_metadata((("error-code", INVALID),))
                await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "replay id invalid")
            position = ids.index(first.replay_id) + 1
        else:
            position = 0 if first.replay_preset == pb.ReplayPreset.EARLIEST else len(ids)
        outstanding = [first.num_requested]

        async def read() -> None:
            async for more in request_iterator:
                self.requests.append(more)
                outstanding[0] += more.num_requested
                self.changed.set()

        reader = asyncio.create_task(read())
        try:
            while True:
                if self.keepalives:
                    yield pb.FetchResponse(latest_replay_id=self.keepalives.pop(0),
                                           pending_num_requested=outstanding[0])
                    continue
                if outstanding[0] > 0 and position < len(self.events):
                    count = min(outstanding[0], len(self.events) - position)
                    batch = self.events[position:position + count]
                    position += count
                    outstanding[0] -= count
                    yield pb.FetchResponse(events=[pb.ConsumerEvent(event=event, replay_id=replay)
                                                   for replay, event in batch],
                                           latest_replay_id=batch[-1][0], pending_num_requested=outstanding[0])
                    continue
                self.changed.clear()
                await self.changed.wait()
        finally:
            reader.cancel()


class Access:
    """The connection's template context; each renewal hands out the next token."""

    def __init__(self, tokens: list[str]) -> None:
        self.tokens = tokens
        self.renewals = 0

    async def context(self, renew: bool) -> dict[str, Any]:
        if renew:
            self.renewals += 1
        token = self.tokens[min(self.renewals, len(self.tokens) - 1)]
        return {"connection": {"target": self.target, "instance": "https://org.test"},
                "stream": {"token": token}}

    target = ""


@pytest.fixture
async def server() -> AsyncIterator[tuple[FakePubSub, str]]:
    fake = FakePubSub()
    srv = grpc.aio.server()
    pb_grpc.add_PubSubServicer_to_server(fake, srv)
    port = srv.add_insecure_port("127.0.0.1:0")
    await srv.start()
    try:
        yield fake, f"127.0.0.1:{port}"
    finally:
        await srv.stop(None)


class Rig:
    """A subscriber over a state, an inbox and the fake server; `start` runs it as a task."""

    def __init__(self, tmp_path: Path, target: str, config: StreamConfig | None = None,
                 tokens: tuple[str, ...] = ("token-1",)) -> None:
        self.tmp_path = tmp_path
        self.state = State(tmp_path / "state.duckdb")
        self.inbox = Inbox.open(tmp_path / "state.duckdb.inbox")
        self.config = config or stream_config()
        self.access = Access(list(tokens))
        self.access.target = target
        self.topic = StreamTopic(connection="crm", stream="changes", entity="Account", topic=TOPIC,
                                 flows=("accounts", "accounts_audit"))
        self.waits: list[float] = []
        self.clock = T0
        self.task: asyncio.Task[None] | None = None
        self.subscriber = self.make()

    def make(self) -> StreamSubscriber:
        async def sleep(seconds: float) -> None:
            self.waits.append(seconds)
            await asyncio.sleep(0)

        return StreamSubscriber(self.config, self.topic, inbox=self.inbox, positions=StatePositions(self.state),
                                access=self.access, now=lambda: self.clock, sleep=sleep)

    def start(self) -> None:
        self.task = asyncio.create_task(self.subscriber.run())

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await self.task
            self.task = None

    async def restart(self) -> None:
        """A new process: state and inbox closed and opened again, a new subscriber."""
        await self.stop()
        self.state.close()
        self.inbox.close()
        self.state = State(self.tmp_path / "state.duckdb")
        self.inbox = Inbox.open(self.tmp_path / "state.duckdb.inbox")
        self.subscriber = self.make()
        self.start()

    def pending(self) -> list[tuple[str, str | None]]:
        return [(item.record_id, item.operation) for item in self.inbox.pending("crm", "Account")]

    def stored(self) -> bytes | None:
        position = self.state.stream_positions.get("crm", "changes", TOPIC)
        return position.replay_id if position else None

    async def close(self) -> None:
        await self.stop()
        self.state.close()
        self.inbox.close()


async def until(condition: Callable[[], object], seconds: float = 5.0) -> None:
    """Wait for ``condition`` (a failed subscriber task fails the wait at once)."""
    for _ in range(int(seconds / 0.01)):
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("condition not met in time")


@pytest.fixture
async def rig(tmp_path: Path, server: tuple[FakePubSub, str]) -> AsyncIterator[Rig]:
    made = Rig(tmp_path, server[1])
    try:
        yield made
    finally:
        await made.close()


# --- decoding -------------------------------------------------------------------------------------------------------

def test_a_bitmap_names_top_level_fields_by_position_and_compound_sub_fields_by_parent() -> None:
    schema = parse_schema(json.dumps(ACCOUNT))
    # positions: 0 header, 1 Name, 2 BillingAddress, 3 Phone, 4 LastModifiedDate, 5 ERP_Id__c
    assert changed_field_names(schema, ["0x16", "2-0x06"]) == [
        "Name", "BillingAddress", "LastModifiedDate", "BillingAddress.City", "BillingAddress.PostalCode"]
    assert changed_field_names(schema, ["0x20"]) == ["ERP_Id__c"]
    assert changed_field_names(schema, []) == []


def test_a_bitmap_of_a_position_the_schema_does_not_have_is_refused() -> None:
    schema = parse_schema(json.dumps(ACCOUNT))
    with pytest.raises(ValueError, match="position 9"):
        changed_field_names(schema, ["0x200"])
    with pytest.raises(ValueError, match="not a compound"):
        changed_field_names(schema, ["0x02", "1-0x01"])


async def test_a_schema_is_fetched_once_per_schema_id() -> None:
    calls: list[str] = []

    async def fetch(schema_id: str) -> str:
        calls.append(schema_id)
        return json.dumps(SCHEMAS[schema_id])

    cache = SchemaCache(fetch)
    first = await cache.get("schema-1")
    assert await cache.get("schema-1") is first
    await cache.get("schema-2")
    assert calls == ["schema-1", "schema-2"]


# --- the subscription -----------------------------------------------------------------------------------------------

def fetch(num: int, preset: int | None = None, replay: bytes | None = None) -> pb.FetchRequest:
    request = pb.FetchRequest(topic_name=TOPIC, num_requested=num)
    if preset is not None:
        request.replay_preset = preset  # type: ignore[assignment]
    if replay is not None:
        request.replay_id = replay
    return request


async def test_flow_control_requests_a_batch_and_requests_again_only_when_it_is_drained(
        rig: Rig, server: tuple[FakePubSub, str]) -> None:
    fake = server[0]
    rig.start()
    await until(lambda: fake.requests)
    for number in range(5):
        fake.publish(account("UPDATE", [f"001A{number}"], ["0x12"], Name=f"N{number}"))
    await until(lambda: len(rig.pending()) == 5)
    await asyncio.sleep(0.05)
    # 2 + 2 delivered (drained twice: two more requests), 1 of the third batch: one outstanding, no request
    assert fake.requests == [fetch(2, pb.ReplayPreset.LATEST), fetch(2), fetch(2)]
    assert rig.pending() == [(f"001A{n}", "UPDATE") for n in range(5)]
    fake.keepalive(b"\x00" * 7 + b"\x63")
    await until(lambda: rig.stored() == b"\x00" * 7 + b"\x63")
    assert len(fake.requests) == 3  # a keepalive delivers nothing: nothing more is asked for


async def test_changed_records_go_to_the_inbox_of_the_topic_entity_with_their_change_type(
        rig: Rig, server: tuple[FakePubSub, str]) -> None:
    fake = server[0]
    rig.start()
    await until(lambda: fake.requests)
    fake.publish(account("CREATE", ["001C"], Name="Acme"))
    fake.publish(account("UPDATE", ["001U1", "001U2"], ["0x16", "2-0x02"], Name="B"))
    fake.publish(account("DELETE", ["001D"]))
    await until(lambda: len(rig.pending()) == 4)
    assert rig.pending() == [("001C", "CREATE"), ("001U1", "UPDATE"), ("001U2", "UPDATE"), ("001D", "DELETE")]
    assert rig.inbox.pending("crm", "Contact") == []
    assert rig.subscriber.seen[-2].changed_fields == ("Name", "BillingAddress", "LastModifiedDate",
                                                       "BillingAddress.City")


async def test_each_schema_is_asked_for_once_whatever_the_number_of_events(
        rig: Rig, server: tuple[FakePubSub, str]) -> None:
    fake = server[0]
    rig.start()
    await until(lambda: fake.requests)
    fake.publish(account("CREATE", ["001A"]))
    fake.publish(account("CREATE", ["001B"]))
    fake.publish(account("CREATE", ["001C"], Fax="1"), schema_id="schema-2")
    fake.publish(account("CREATE", ["001D"]))
    await until(lambda: len(rig.pending()) == 4)
    assert fake.schema_calls == ["schema-1", "schema-2"]


async def test_our_own_writes_are_not_queued_but_other_clients_writes_are(
        rig: Rig, server: tuple[FakePubSub, str]) -> None:
    fake = server[0]
    rig.start()
    await until(lambda: fake.requests)
    fake.publish(account("UPDATE", ["001OWN"], ["0x02"], origin="com/x/api/rest/66.0;client=ml-connector"))
    fake.publish(account("UPDATE", ["001UI"], ["0x02"], origin="com/x/api/rest/66.0;client=OtherApp"))
    await until(lambda: len(rig.subscriber.seen) == 2)
    assert rig.pending() == [("001UI", "UPDATE")]


async def test_the_replay_id_is_stored_after_each_batch_and_a_restart_resumes_after_it(
        rig: Rig, server: tuple[FakePubSub, str]) -> None:
    fake = server[0]
    rig.start()
    await until(lambda: fake.requests)
    fake.publish(account("CREATE", ["001A"]))
    second = fake.publish(account("CREATE", ["001B"]))
    await until(lambda: rig.stored() == second)
    await rig.stop()
    third = fake.publish(account("CREATE", ["001C"]))  # while we were away
    await rig.restart()
    await until(lambda: rig.stored() == third)
    # the first subscription drained one batch; the second resumes after 001B (001C leaves one outstanding)
    assert fake.requests == [fetch(2, pb.ReplayPreset.LATEST), fetch(2), fetch(2, pb.ReplayPreset.CUSTOM, second)]
    assert [record_id for record_id, _ in rig.pending()] == ["001A", "001B", "001C"]


async def test_an_invalid_stored_replay_id_marks_the_entity_flows_for_a_full_read_and_restarts_from_latest(
        rig: Rig, server: tuple[FakePubSub, str]) -> None:
    fake = server[0]
    rig.state.stream_positions.save("crm", "changes", TOPIC, b"\x00\x00\x00\x00\x00\x00\x00\x01", T0)
    rig.state.watermarks.set("accounts", "2026-02-28T00:00:00Z")
    rig.state.watermarks.set("accounts_audit", "2026-02-28T00:00:00Z")
    rig.state.watermarks.set("contacts", "2026-02-28T00:00:00Z")
    rig.start()
    await until(lambda: len(fake.requests) == 2)
    assert fake.requests == [fetch(2, pb.ReplayPreset.CUSTOM, b"\x00" * 7 + b"\x01"), fetch(2, pb.ReplayPreset.LATEST)]
    assert rig.state.watermarks.get("accounts") is None  # the next run reads everything
    assert rig.state.watermarks.get("accounts_audit") is None
    assert rig.state.watermarks.get("contacts") == "2026-02-28T00:00:00Z"
    assert rig.stored() is None
    assert rig.waits == []  # no backoff: the answer was definite
    latest = fake.publish(account("CREATE", ["001N"]))
    await until(lambda: rig.stored() == latest)


async def test_a_stored_replay_id_older_than_the_retention_is_not_trusted(
        rig: Rig, server: tuple[FakePubSub, str]) -> None:
    fake = server[0]
    kept = fake.publish(account("CREATE", ["001OLD"]))
    rig.state.stream_positions.save("crm", "changes", TOPIC, kept, T0 - timedelta(hours=73))
    rig.state.watermarks.set("accounts", "2026-02-25T00:00:00Z")
    rig.start()
    await until(lambda: fake.requests)
    assert fake.requests == [fetch(2, pb.ReplayPreset.LATEST)]
    assert rig.state.watermarks.get("accounts") is None


async def test_a_gap_event_queues_a_re_read_of_its_ids_and_an_overflow_a_full_read(
        rig: Rig, server: tuple[FakePubSub, str]) -> None:
    fake = server[0]
    rig.state.watermarks.set("accounts", "2026-02-28T00:00:00Z")
    rig.start()
    await until(lambda: fake.requests)
    fake.publish(account("GAP_UPDATE", ["001G1", "001G2"]))
    await until(lambda: len(rig.pending()) == 2)
    assert rig.pending() == [("001G1", "GAP_UPDATE"), ("001G2", "GAP_UPDATE")]
    assert rig.state.watermarks.get("accounts") == "2026-02-28T00:00:00Z"
    overflow = fake.publish(account("GAP_OVERFLOW", ["000000000000000AAA"]))
    await until(lambda: rig.stored() == overflow)
    assert rig.state.watermarks.get("accounts") is None
    assert len(rig.pending()) == 2  # the wildcard is no record id


async def test_an_event_that_cannot_be_read_marks_a_full_read_and_the_stream_goes_on(
        rig: Rig, server: tuple[FakePubSub, str]) -> None:
    fake = server[0]
    rig.state.watermarks.set("accounts", "2026-02-28T00:00:00Z")
    rig.start()
    await until(lambda: fake.requests)
    fake.publish_raw(b"\x02")  # cut off inside the header
    fake.publish(account("UPDATE", ["001B"], ["0x200"]))  # a bitmap bit the schema has no field for
    after = fake.publish(account("CREATE", ["001C"]))
    await until(lambda: rig.stored() == after)
    assert rig.state.watermarks.get("accounts") is None
    assert rig.pending() == [("001C", "CREATE")]


async def test_unavailable_reconnects_with_backoff_from_the_stored_id(
        rig: Rig, server: tuple[FakePubSub, str]) -> None:
    fake = server[0]
    first = fake.publish(account("CREATE", ["001A"]))
    rig.state.stream_positions.save("crm", "changes", TOPIC, first, T0)
    fake.failures = [(grpc.StatusCode.UNAVAILABLE, "unavailable")] * 4
    rig.start()
    await until(lambda: fake.requests)
    assert rig.waits == [1.0, 2.0, 4.0, 4.0]  # doubling, capped at backoff_max
    assert fake.requests == [fetch(2, pb.ReplayPreset.CUSTOM, first)]
    second = fake.publish(account("CREATE", ["001B"]))
    await until(lambda: rig.stored() == second)
    fake.failures = [(grpc.StatusCode.UNAVAILABLE, "unavailable")]
    # a stream that worked resets the backoff: the next failure waits the first step again
    await rig.subscriber.reconnect()
    await until(lambda: len(fake.requests) == 2)
    assert rig.waits[4:] == [1.0]
    assert fake.requests[-1] == fetch(2, pb.ReplayPreset.CUSTOM, second)


class UnsentFirstRequest:
    """Wraps the generated stub: the first Subscribe's first write fails as grpc reports a send on a call the
    server already ended (INTERNAL from the write, before any response), as it does under load."""

    def __init__(self, channel: Any) -> None:
        self.stub = pb_grpc.PubSubStub(channel)
        self.GetTopic, self.GetSchema = self.stub.GetTopic, self.stub.GetSchema

    def Subscribe(self, **kwargs: Any) -> Any:  # noqa: N802 (the generated stub's name)
        call = self.stub.Subscribe(**kwargs)
        if UnsentFirstRequest.failed:
            return call
        UnsentFirstRequest.failed = True

        async def write(_request: Any) -> None:
            call.cancel()
            raise grpc.aio.AioRpcError(grpc.StatusCode.INTERNAL, grpc.aio.Metadata(), grpc.aio.Metadata(),
                                       "Internal error from Core", 'Failed "execute_batch"')

        call.write = write
        return call

    failed = False


async def test_a_first_request_the_transport_could_not_send_is_retried_like_a_closed_stream(
        rig: Rig, server: tuple[FakePubSub, str], monkeypatch: pytest.MonkeyPatch) -> None:
    fake = server[0]
    first = fake.publish(account("CREATE", ["001A"]))
    rig.state.stream_positions.save("crm", "changes", TOPIC, first, T0)
    monkeypatch.setattr(UnsentFirstRequest, "failed", False)
    monkeypatch.setattr(rig.subscriber, "pb_grpc", type("Stubs", (), {"PubSubStub": UnsentFirstRequest}))
    rig.start()
    await until(lambda: fake.requests)
    assert rig.waits == [1.0]
    assert fake.requests == [fetch(2, pb.ReplayPreset.CUSTOM, first)]
    second = fake.publish(account("CREATE", ["001B"]))
    await until(lambda: rig.stored() == second)
    assert rig.task is not None and not rig.task.done()


async def test_unauthenticated_asks_for_a_new_token_once_per_failure(
        tmp_path: Path, server: tuple[FakePubSub, str]) -> None:
    fake, target = server
    fake.valid_tokens = {"token-2"}
    rig = Rig(tmp_path, target, tokens=("token-1", "token-2"))
    try:
        rig.start()
        await until(lambda: fake.requests)
        assert rig.access.renewals == 1
        assert fake.tokens_seen[0] == "token-1" and set(fake.tokens_seen[1:]) == {"token-2"}
    finally:
        await rig.close()


async def test_a_token_refused_again_after_renewal_stops_the_subscriber(
        tmp_path: Path, server: tuple[FakePubSub, str]) -> None:
    fake, target = server
    fake.valid_tokens = set()
    rig = Rig(tmp_path, target, tokens=("token-1", "token-2"))
    try:
        with pytest.raises(StreamFailed, match="refused after renewal"):
            await asyncio.wait_for(rig.subscriber.run(), 5)
        assert rig.access.renewals == 1
    finally:
        await rig.close()


async def test_another_refusal_stops_the_subscriber_with_the_error_code(
        rig: Rig, server: tuple[FakePubSub, str]) -> None:
    fake = server[0]
    fake.failures = [(grpc.StatusCode.INVALID_ARGUMENT, "stream.requested.events.invalid")]
    with pytest.raises(StreamFailed, match=r"INVALID_ARGUMENT.*stream\.requested\.events\.invalid"):
        await asyncio.wait_for(rig.subscriber.run(), 5)


# --- config ---------------------------------------------------------------------------------------------------------

def test_a_stream_spec_is_typed_with_its_defaults() -> None:
    config = connector({"streams": {"changes": {
        "protocol": "grpc_pubsub", "proto": "ml_connector_protos.eventbus.v1.pubsub_api",
        "target": "{{ connection.target }}", "topic": "/data/{{ stream.entity }}ChangeEvent",
        "invalid_replay": INVALID}}}).streams["changes"]
    assert (config.batch, config.tls.evaluate({}), config.header, config.ids, config.change_type) == (
        100, True, "ChangeEventHeader", "recordIds", "changeType")
    assert config.ca_file is None
    assert (config.changed_fields.path, config.changed_fields.encoding) == ("changedFields", "bitmap")
    assert config.retention == 72 * 3600.0
    assert (config.backoff, config.backoff_max) == (1.0, 60.0)
    assert config.origin is None and config.wildcard_ids == ()
    assert config.topic.evaluate({"stream": {"entity": "Account"}}) == "/data/AccountChangeEvent"


# --- serve ----------------------------------------------------------------------------------------------------------

SERVE_CONNECTOR = """\
connector: fake
base_url: http://api.test/v2
connection:
  settings:
    stream_target: {description: host:port of the change stream}
  secrets:
    key: {description: API key}
auth:
  key: {type: api_key, header: x-key, value: "{{ secrets.key }}"}
streams:
  changes:
    protocol: grpc_pubsub
    proto: ml_connector_protos.eventbus.v1.pubsub_api
    target: "{{ connection.stream_target }}"
    tls: false
    metadata: {accesstoken: "{{ secrets.key }}"}
    topic: "/data/{{ stream.entity }}ChangeEvent"
    batch: 10
    invalid_replay: stream.replayid.corrupted
entities:
  Account:
    key: id
    read: {path: /accounts, records: data, incremental: {param: since, field: updated}}
    get: {path: "/accounts/{{ id }}", record: data}
  item:
    key: id
    write:
      strategy: create_only
      create: {method: POST, path: /items, id: data.id}
"""
SERVE_FLOW = """\
flow: {name}
from: {{connection: api, entity: Account}}
to: {{connection: api, entity: item}}
key: id
fields: {{name: Name}}
{trigger}"""


def serve_workspace(root: Path, target: str) -> Path:
    (root / "connectors").mkdir()
    (root / "mappings" / "pair").mkdir(parents=True)
    (root / "connectors" / "fake.yaml").write_text(SERVE_CONNECTOR)
    flows = {"accounts": "trigger: {stream: changes}\n", "accounts_copy": "trigger: {stream: changes}\n",
             "plain": ""}
    for name, trigger in flows.items():
        (root / "mappings" / "pair" / f"{name}.yaml").write_text(SERVE_FLOW.format(name=name, trigger=trigger))
    (root / "mappings" / "pair" / "integration.yaml").write_text(
        "integration: pair\nconnections: {api: {connector: fake}}\n"
        "flows: [accounts.yaml, accounts_copy.yaml, plain.yaml]\n")
    path = root / "workspace.yaml"
    path.write_text("state: state/state.duckdb\nintegrations: [mappings/pair]\nconnections:\n"
                    f"  api: {{connector: fake, secrets: {{key: \"env:FAKE_KEY\"}}, "
                    f"settings: {{stream_target: \"{target}\"}}}}\n")
    return path


@pytest.fixture
def fake_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAKE_KEY", "token-1")
    monkeypatch.delenv("ML_CONNECTOR_KEY", raising=False)


def test_a_trigger_names_a_stream_or_a_channel() -> None:
    from tests.engine.configs import flow

    by_stream, by_channel = flow(trigger={"stream": "changes"}).trigger, flow(trigger={"channel": "hooks"}).trigger
    assert by_stream is not None and (by_stream.stream, by_stream.channel) == ("changes", None)
    assert by_channel is not None and (by_channel.stream, by_channel.channel) == (None, "hooks")


async def test_serve_needs_one_subscription_per_entity_for_the_flows_its_stream_triggers(
        tmp_path: Path, server: tuple[FakePubSub, str], fake_key: None) -> None:
    from ml_connector.events.stream_serve import stream_flows
    from ml_connector.workspace import Workspace

    workspace = Workspace.open(serve_workspace(tmp_path, server[1]))
    assert stream_flows(workspace.project) == {("api", "changes", "Account"): ["accounts", "accounts_copy"]}


async def test_serve_subscribes_and_syncs_the_records_an_event_names_then_keeps_the_position(
        tmp_path: Path, server: tuple[FakePubSub, str], fake_key: None) -> None:
    import httpx

    from ml_connector.events.service import Service
    from ml_connector.sync.runner import Runner
    from ml_connector.workspace import Workspace
    from tests.engine.fakeapi import FakeAPI

    fake = server[0]
    workspace = Workspace.open(serve_workspace(tmp_path, server[1]))
    api = (FakeAPI().on("GET", "/v2/accounts/001A", 200, {"data": {"id": "001A", "Name": "Acme"}})
           .on("POST", "/v2/items", 201, {"data": {"id": 7}}).on("POST", "/v2/items", 201, {"data": {"id": 8}}))

    def make_runner(project: Any, state: State) -> Runner:
        return Runner(project, state, transport=httpx.ASGITransport(app=api.app))

    service = Service(workspace, interval=600, make_runner=make_runner)
    task = asyncio.create_task(service.loop(once=False))
    try:
        await until(lambda: fake.requests or task.done())
        assert fake.requests == [pb.FetchRequest(topic_name=TOPIC, num_requested=10)]
        replay = fake.publish(account("UPDATE", ["001A"], ["0x02"], Name="Acme"))
        await until(lambda: len(api.requests) == 4 or task.done())
        assert [(r["method"], r["path"]) for r in api.requests] == [  # each triggered flow re-reads the record
            ("GET", "/v2/accounts/001A"), ("POST", "/v2/items"), ("GET", "/v2/accounts/001A"), ("POST", "/v2/items")]
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    state = workspace.state()
    try:
        kept = state.stream_positions.get("api", "changes", TOPIC)
        assert kept is not None and kept.replay_id == replay
        assert state.id_maps.get_many("accounts", ["001A"])["001A"].target_id == "7"
        assert state.id_maps.get_many("accounts_copy", ["001A"])["001A"].target_id == "8"
    finally:
        state.close()


def test_validate_names_a_stream_the_source_connector_does_not_declare(tmp_path: Path, fake_key: None) -> None:
    from ml_connector.spec.problems import SpecError
    from ml_connector.workspace import Workspace

    path = serve_workspace(tmp_path, "127.0.0.1:1")
    flow_file = tmp_path / "mappings" / "pair" / "accounts.yaml"
    flow_file.write_text(flow_file.read_text().replace("{stream: changes}", "{stream: chnages}"))
    with pytest.raises(SpecError, match=r"trigger\.stream: connector 'fake' .* has no stream 'chnages'.*changes"):
        Workspace.open(path)


def test_tls_is_on_unless_the_stream_says_false() -> None:
    from ml_connector.errors import SetupError
    from ml_connector.events.stream import transport_security

    templated = stream_config(tls="{{ connection.tls }}")
    assert transport_security(templated, {"connection": {"tls": False}}, "s") is None
    assert transport_security(templated, {"connection": {"tls": "false"}}, "s") is None
    assert transport_security(templated, {"connection": {"tls": True}}, "s") is not None
    assert transport_security(templated, {"connection": {"tls": ""}}, "s") is not None  # unsaid: the stricter
    with pytest.raises(SetupError, match="not true or false"):
        transport_security(templated, {"connection": {"tls": "maybe"}}, "s")
    with pytest.raises(SetupError, match="cannot read ca_file /nonexistent.pem"):
        transport_security(stream_config(tls=True, ca_file="/nonexistent.pem"), {}, "s")


async def test_a_tls_stream_does_not_fall_back_to_plain_text(tmp_path: Path, server: tuple[FakePubSub, str]) -> None:
    fake, target = server
    rig = Rig(tmp_path, target, config=stream_config(tls=True))
    try:
        rig.start()
        await until(lambda: len(rig.waits) >= 2)
        assert fake.tokens_seen == [] and fake.requests == []  # the handshake failed: nothing reached the server
        assert rig.waits[:2] == [1.0, 2.0]
    finally:
        await rig.close()


def test_buffered_positions_reach_the_state_only_when_a_tick_saves_them(tmp_path: Path) -> None:
    from ml_connector.events.stream_state import BufferedPositions

    topic = StreamTopic(connection="crm", stream="changes", entity="Account", topic=TOPIC, flows=("accounts",))
    other = StreamTopic(connection="crm", stream="changes", entity="Contact", topic="/data/ContactChangeEvent",
                        flows=("contacts",))
    state = State(tmp_path / "state.duckdb")
    try:
        state.stream_positions.save("crm", "changes", TOPIC, b"\x01", T0)
        state.stream_positions.save("crm", "changes", "/data/ContactChangeEvent", b"\x07", T0)
        state.watermarks.set("accounts", "2026-02-28T00:00:00Z")
        state.watermarks.set("contacts", "2026-02-28T00:00:00Z")
        woken: list[int] = []
        buffered = BufferedPositions(state, [topic, other], on_change=lambda: woken.append(1))
        assert buffered.get(topic) is not None and buffered.get(topic).replay_id == b"\x01"  # type: ignore[union-attr]
        buffered.save(topic, b"\x02", T0 + timedelta(minutes=1))
        buffered.full_read(other)
        buffered.forget(other)
        assert woken == [1]  # a full-read mark wakes serve to save it
        assert buffered.get(other) is None and buffered.get(topic).replay_id == b"\x02"  # type: ignore[union-attr]
        assert state.stream_positions.get("crm", "changes", TOPIC).replay_id == b"\x01"  # type: ignore[union-attr]
        assert state.watermarks.get("contacts") == "2026-02-28T00:00:00Z"
        buffered.save_to(state)
        assert state.watermarks.get("contacts") is None
        assert state.stream_positions.get("crm", "changes", TOPIC) == StreamPosition(
            b"\x02", T0 + timedelta(minutes=1))
        assert state.stream_positions.get("crm", "changes", "/data/ContactChangeEvent") is None
        assert state.watermarks.get("accounts") == "2026-02-28T00:00:00Z"  # only the marked entity's flows
        buffered.save_to(state)  # nothing new: nothing written
        assert state.stream_positions.get("crm", "changes", TOPIC) == StreamPosition(
            b"\x02", T0 + timedelta(minutes=1))
    finally:
        state.close()


async def test_serve_reports_a_subscriber_that_stopped_once_and_goes_on(
        tmp_path: Path, server: tuple[FakePubSub, str], fake_key: None, capsys: pytest.CaptureFixture[str]) -> None:
    from ml_connector.events.service import Service
    from ml_connector.workspace import Workspace

    fake = server[0]
    fake.valid_tokens = set()
    service = Service(Workspace.open(serve_workspace(tmp_path, server[1])), interval=600)
    task = asyncio.create_task(service.loop(once=False))
    said: list[str] = []
    try:
        await until(lambda: said.append(capsys.readouterr().err) or "stopped" in "".join(said) or task.done())
        await asyncio.sleep(0.1)
        said.append(capsys.readouterr().err)
        assert not task.done()  # serve goes on: the flows still run on their schedules
        stopped = [line for line in "".join(said).splitlines() if "stopped" in line]
        assert stopped == ["ml-connector: stream api/changes/Account: credentials refused after renewal "
                           "(stream.auth.error); the subscription stopped, its flows run on their schedule only"]
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
