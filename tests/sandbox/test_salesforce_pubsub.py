"""Tests of the Salesforce sandbox's Pub/Sub API (gRPC) over a real grpc client and the generated stubs.

The store here is a tiny fake with the contract's ``listen``/``Change`` shape (issue 21 contract), so these tests
pin the gRPC side alone; the REST sandbox's own store feeds the same listener.
"""

from __future__ import annotations

import asyncio
import datetime
import io
import json
import queue
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import fastavro
import grpc
import httpx
import pytest

from ml_connector.sandbox.core import ManualClock, Sandbox
from ml_connector.sandbox.salesforce.objects import catalog
from ml_connector.sandbox.salesforce.pubsub import PubSubServer, event_bus, start_pubsub
from ml_connector_protos.eventbus.v1 import pubsub_api_pb2 as pb
from ml_connector_protos.eventbus.v1 import pubsub_api_pb2_grpc as pb_grpc

ORG = "00D5g000004XyZaEAK"
TOKEN = "00D5g000004XyZa!AQ0AQH0dMHEXAMPLE"
INSTANCE = "https://acme.my.salesforce.com"
META = (("accesstoken", TOKEN), ("instanceurl", INSTANCE), ("tenantid", ORG))
ACCOUNT_ID = "0015g000000000001AAA"
ORIGIN = "com/salesforce/api/rest/66.0;client=ERPSync"


@dataclass(frozen=True)
class Change:
    """The contract's change shape (sandbox/salesforce/store.py)."""

    entity: str
    change_type: str
    record_ids: tuple[str, ...]
    changed_fields: tuple[str, ...]
    nulled_fields: tuple[str, ...]
    record: dict[str, Any]
    commit_ms: int
    transaction_key: str
    change_origin: str
    commit_user: str


@dataclass
class FakeStore:
    clock: ManualClock
    listeners: list[Callable[[Any], None]] = field(default_factory=list)

    def objects(self) -> list[str]:
        return [o.name for o in catalog() if not o.revenue_cloud]

    def describe(self, sobject: str) -> dict[str, Any]:
        obj = next(o for o in catalog() if o.name == sobject)
        return {"name": obj.name, "fields": [f.describe() for f in obj.fields]}

    def get(self, sobject: str, record_id: str) -> dict[str, Any] | None:
        return None

    def listen(self, listener: Callable[[Any], None]) -> None:
        self.listeners.append(listener)

    def commit(self, change: Change) -> None:
        for listener in self.listeners:
            listener(change)


class FakeTokens:
    def __init__(self) -> None:
        self.tokens = {TOKEN: ORG}

    def valid(self, access_token: str) -> str | None:
        return self.tokens.get(access_token)


class FakeSalesforceSandbox(Sandbox):
    def __init__(self, store: FakeStore) -> None:
        super().__init__(name="salesforce", routes=[], config={}, clock=store.clock)
        self.store = store
        self.tokens = FakeTokens()


def account_update(clock: ManualClock, n: int, **fields: Any) -> Change:
    stamp = "2026-01-01T00:00:00.000+0000"
    record = {"Id": ACCOUNT_ID, "Name": "Acme", "BillingCity": "Paris", "Phone": None, "LastModifiedDate": stamp,
              "SystemModstamp": stamp, **fields}
    changed = (*fields, "LastModifiedDate", "SystemModstamp")
    nulled = tuple(k for k, v in fields.items() if v is None)
    return Change("Account", "UPDATE", (ACCOUNT_ID,), changed, nulled, record, int(clock() * 1000), f"tx-{n}",
                  ORIGIN, "0055g00000AbCdEAAV")


def account_create(clock: ManualClock, n: int, name: str) -> Change:
    record = {"Id": ACCOUNT_ID, "Name": name, "BillingCity": "Paris", "BillingCountry": "France",
              "CreatedDate": "2026-01-01T00:00:00.000+0000", "IsDeleted": False}
    return Change("Account", "CREATE", (ACCOUNT_ID,), (), (), record, int(clock() * 1000), f"tx-{n}", "",
                  "0055g00000AbCdEAAV")


@pytest.fixture()
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture()
def sandbox(clock: ManualClock) -> FakeSalesforceSandbox:
    box = FakeSalesforceSandbox(FakeStore(clock))
    event_bus(box)  # CDC is on from the start: every committed change is kept
    box.config["pubsub_keepalive_seconds"] = 0.5
    return box


@pytest.fixture()
def server(sandbox: FakeSalesforceSandbox) -> Iterator[PubSubServer]:
    served = start_pubsub(sandbox)
    yield served
    served.stop()


@pytest.fixture()
def stub(server: PubSubServer) -> Iterator[pb_grpc.PubSubStub]:
    with grpc.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        yield pb_grpc.PubSubStub(channel)


class Subscription:
    """A Subscribe call fed from a queue, so a test sends FetchRequests whenever it likes."""

    def __init__(self, stub: pb_grpc.PubSubStub, first: pb.FetchRequest, metadata: Any = META) -> None:
        self.requests: queue.Queue[pb.FetchRequest | None] = queue.Queue()
        self.requests.put(first)
        self.call = stub.Subscribe(iter(self.requests.get, None), metadata=metadata, timeout=10)

    def send(self, request: pb.FetchRequest) -> None:
        self.requests.put(request)

    def next(self) -> pb.FetchResponse:
        return next(self.call)

    def next_with_events(self) -> pb.FetchResponse:
        """The next response that carries events (keepalives in between are skipped)."""
        for _ in range(50):
            response = self.next()
            if response.events:
                return response
        raise AssertionError("no events")

    def close(self) -> None:
        self.call.cancel()
        self.requests.put(None)


def schema_of(stub: pb_grpc.PubSubStub, schema_id: str, metadata: Any = META) -> dict[str, Any]:
    info = stub.GetSchema(pb.SchemaRequest(schema_id=schema_id), metadata=metadata)
    assert info.schema_id == schema_id
    parsed: dict[str, Any] = json.loads(info.schema_json)
    return parsed


def decode(stub: pb_grpc.PubSubStub, event: pb.ConsumerEvent,
           metadata: Any = META) -> tuple[dict[str, Any], dict[str, Any]]:
    schema = schema_of(stub, event.event.schema_id, metadata)
    body = fastavro.schemaless_reader(io.BytesIO(event.event.payload), fastavro.parse_schema(schema))
    assert isinstance(body, dict)
    return schema, body


def bitmap_names(schema: dict[str, Any], bitmap: list[str]) -> list[str]:
    """Field names of a bitmap list (the reference decoder, pub-sub-api ChangeEventHeaderUtility.py)."""
    names: list[str] = []
    fields = schema["fields"]
    for element in bitmap:
        if element.startswith("0x"):
            bits = int(element, 16)
            names += [f["name"] for i, f in enumerate(fields) if bits >> i & 1]
        else:
            parent, hexa = element.split("-")
            compound = fields[int(parent)]
            subs = next(t for t in compound["type"] if isinstance(t, dict))["fields"]
            bits = int(hexa, 16)
            names += [f"{compound['name']}.{s['name']}" for i, s in enumerate(subs) if bits >> i & 1]
    return names


def admin(sandbox: Sandbox, method: str, path: str, body: Any = None) -> httpx.Response:
    """One admin call over an in-process ASGI transport."""
    async def go() -> httpx.Response:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=sandbox), base_url="http://sf.test") as client:
            return await client.request(method, path, json=body)
    return asyncio.run(go())


def replay(value: int) -> bytes:
    return value.to_bytes(8, "big")


def error_code(error: grpc.RpcError) -> str | None:
    trailers = dict(error.trailing_metadata() or ())
    return trailers.get("error-code")


# -- GetTopic / GetSchema -------------------------------------------------------------------------------------------

def test_get_topic_knows_the_cdc_channels_and_nothing_else(stub: pb_grpc.PubSubStub) -> None:
    account = stub.GetTopic(pb.TopicRequest(topic_name="/data/AccountChangeEvent"), metadata=META)
    assert (account.topic_name, account.tenant_guid, account.can_subscribe, account.can_publish) == \
        ("/data/AccountChangeEvent", ORG, True, False)
    assert len(account.schema_id) == 22 and account.rpc_id
    every = stub.GetTopic(pb.TopicRequest(topic_name="/data/ChangeEvents"), metadata=META)
    assert every.topic_name == "/data/ChangeEvents" and every.can_subscribe
    for name in ("/data/ContactChangeEvent", "/data/OrderItemChangeEvent", "/data/Product2ChangeEvent"):
        assert stub.GetTopic(pb.TopicRequest(topic_name=name), metadata=META).topic_name == name
    for missing in ("/data/PricebookEntryChangeEvent", "/data/accountchangeevent", "/event/Foo__e"):
        with pytest.raises(grpc.RpcError) as raised:
            stub.GetTopic(pb.TopicRequest(topic_name=missing), metadata=META)
        assert raised.value.code() == grpc.StatusCode.NOT_FOUND


def test_get_schema_is_the_change_event_record_with_header_first(stub: pb_grpc.PubSubStub) -> None:
    topic = stub.GetTopic(pb.TopicRequest(topic_name="/data/AccountChangeEvent"), metadata=META)
    schema = schema_of(stub, topic.schema_id)
    assert (schema["name"], schema["namespace"], schema["type"]) == ("AccountChangeEvent", "com.sforce.eventbus",
                                                                    "record")
    names = [f["name"] for f in schema["fields"]]
    assert names[0] == "ChangeEventHeader"
    header = schema["fields"][0]["type"]
    assert [f["name"] for f in header["fields"]] == [
        "entityName", "recordIds", "changeType", "changeOrigin", "transactionKey", "sequenceNumber",
        "commitTimestamp", "commitNumber", "commitUser", "nulledFields", "diffFields", "changedFields"]
    assert "BillingAddress" in names and "BillingCity" not in names and "Id" not in names
    billing = schema["fields"][names.index("BillingAddress")]
    assert billing["type"][0] == "null" and billing["default"] is None
    assert [f["name"] for f in billing["type"][1]["fields"]] == [
        "Street", "City", "State", "PostalCode", "Country", "Latitude", "Longitude", "GeocodeAccuracy"]
    name = schema["fields"][names.index("Name")]
    assert (name["type"], name["default"]) == (["null", "string"], None)
    assert schema["fields"][names.index("CreatedDate")]["type"] == ["null", "long"]
    fastavro.parse_schema(schema)  # a valid Avro schema
    again = stub.GetTopic(pb.TopicRequest(topic_name="/data/AccountChangeEvent"), metadata=META)
    contact = stub.GetTopic(pb.TopicRequest(topic_name="/data/ContactChangeEvent"), metadata=META)
    assert again.schema_id == topic.schema_id != contact.schema_id
    contact_fields = [f["name"] for f in schema_of(stub, contact.schema_id)["fields"]]
    assert "Name" in contact_fields and "LastName" not in contact_fields and "MailingAddress" in contact_fields
    with pytest.raises(grpc.RpcError) as raised:
        stub.GetSchema(pb.SchemaRequest(schema_id="AAAAAAAAAAAAAAAAAAAAAA"), metadata=META)
    assert raised.value.code() == grpc.StatusCode.NOT_FOUND


# -- Subscribe ------------------------------------------------------------------------------------------------------

def test_latest_subscription_gets_a_new_update_decoded_with_its_bitmaps(
        sandbox: FakeSalesforceSandbox, clock: ManualClock, stub: pb_grpc.PubSubStub) -> None:
    sandbox.store.commit(account_create(clock, 1, "Before"))  # before the subscription: not delivered on LATEST
    sub = Subscription(stub, pb.FetchRequest(topic_name="/data/AccountChangeEvent", num_requested=5))
    first = sub.next()  # nothing new yet: a keepalive naming the newest stored id
    assert not first.events and first.pending_num_requested == 5
    latest = int.from_bytes(first.latest_replay_id, "big")
    sandbox.store.commit(account_update(clock, 2, BillingCity="Lyon", Phone=None))
    response = sub.next_with_events()
    sub.close()
    assert len(response.events) == 1 and response.pending_num_requested == 4
    event = response.events[0]
    assert len(event.replay_id) == 8 and int.from_bytes(event.replay_id, "big") > latest
    assert response.latest_replay_id == event.replay_id
    schema, body = decode(stub, event)
    header = body["ChangeEventHeader"]
    assert (header["entityName"], header["recordIds"], header["changeType"], header["changeOrigin"],
            header["transactionKey"], header["sequenceNumber"], header["commitUser"]) == \
        ("Account", [ACCOUNT_ID], "UPDATE", ORIGIN, "tx-2", 1, "0055g00000AbCdEAAV")
    assert header["commitTimestamp"] == 1_767_225_600_000
    assert sorted(bitmap_names(schema, header["changedFields"])) == [
        "BillingAddress.City", "LastModifiedDate", "Phone"]
    assert bitmap_names(schema, header["nulledFields"]) == ["Phone"]
    assert header["changedFields"][0].startswith("0x") and header["changedFields"][1].endswith("-0x02")
    assert body["BillingAddress"]["City"] == "Lyon" and body["BillingAddress"]["Street"] is None
    assert body["Name"] is None and body["Phone"] is None  # unchanged fields are null on UPDATE
    assert body["LastModifiedDate"] == 1_767_225_600_000


def test_create_carries_all_fields_and_empty_bitmaps(
        sandbox: FakeSalesforceSandbox, clock: ManualClock, stub: pb_grpc.PubSubStub) -> None:
    sub = Subscription(stub, pb.FetchRequest(topic_name="/data/ChangeEvents", num_requested=1))
    sub.next()
    sandbox.store.commit(account_create(clock, 1, "Acme"))
    event = sub.next_with_events().events[0]
    sub.close()
    _, body = decode(stub, event)
    assert body["ChangeEventHeader"]["changeType"] == "CREATE"
    assert body["ChangeEventHeader"]["changedFields"] == [] and body["ChangeEventHeader"]["changeOrigin"] == ""
    assert body["Name"] == "Acme" and body["BillingAddress"]["Country"] == "France"
    assert body["CreatedDate"] == 1_767_225_600_000


def test_delete_has_a_null_body_and_undelete_all_fields(
        sandbox: FakeSalesforceSandbox, clock: ManualClock, stub: pb_grpc.PubSubStub) -> None:
    record = {"Id": ACCOUNT_ID, "Name": "Acme", "BillingCity": "Paris"}
    for n, kind in enumerate(("DELETE", "UNDELETE")):
        sandbox.store.commit(Change("Account", kind, (ACCOUNT_ID,), (), (), record, int(clock() * 1000), f"tx-{n}",
                                    "", "005"))
    sub = Subscription(stub, pb.FetchRequest(topic_name="/data/AccountChangeEvent",
                                             replay_preset=pb.ReplayPreset.EARLIEST, num_requested=2))
    deleted, undeleted = (decode(stub, e)[1] for e in sub.next_with_events().events)
    sub.close()
    assert deleted["ChangeEventHeader"]["changeType"] == "DELETE"
    assert deleted["Name"] is None and deleted["BillingAddress"] is None
    assert undeleted["ChangeEventHeader"]["changeType"] == "UNDELETE"
    assert undeleted["Name"] == "Acme" and undeleted["BillingAddress"]["City"] == "Paris"


def test_custom_replay_resumes_after_the_given_id_and_earliest_from_the_start(
        sandbox: FakeSalesforceSandbox, clock: ManualClock, stub: pb_grpc.PubSubStub) -> None:
    for n in range(1, 5):
        sandbox.store.commit(account_create(clock, n, f"A{n}"))
    every = Subscription(stub, pb.FetchRequest(topic_name="/data/AccountChangeEvent",
                                               replay_preset=pb.ReplayPreset.EARLIEST, num_requested=10))
    events = list(every.next_with_events().events)
    every.close()
    ids = [int.from_bytes(e.replay_id, "big") for e in events]
    assert len(ids) == 4 and ids == sorted(ids) and ids[-1] - ids[0] > 3  # increasing, not contiguous
    resumed = Subscription(stub, pb.FetchRequest(topic_name="/data/AccountChangeEvent",
                                                 replay_preset=pb.ReplayPreset.CUSTOM,
                                                 replay_id=events[1].replay_id, num_requested=10))
    after = resumed.next_with_events()
    resumed.close()
    assert [e.replay_id for e in after.events] == [e.replay_id for e in events[2:]]
    assert [decode(stub, e)[1]["Name"] for e in after.events] == ["A3", "A4"]


def test_flow_control_delivers_only_what_was_requested(
        sandbox: FakeSalesforceSandbox, clock: ManualClock, stub: pb_grpc.PubSubStub) -> None:
    for n in range(1, 6):
        sandbox.store.commit(account_create(clock, n, f"A{n}"))
    sub = Subscription(stub, pb.FetchRequest(topic_name="/data/AccountChangeEvent",
                                             replay_preset=pb.ReplayPreset.EARLIEST, num_requested=2))
    got = sub.next_with_events()
    assert len(got.events) == 2 and got.pending_num_requested == 0
    idle = sub.next()  # nothing more without a new request: only a keepalive
    assert not idle.events and idle.pending_num_requested == 0
    sub.send(pb.FetchRequest(num_requested=2))
    more = sub.next_with_events()
    sub.close()
    assert len(more.events) == 2 and more.pending_num_requested == 0
    assert [decode(stub, e)[1]["Name"] for e in [*got.events, *more.events]] == ["A1", "A2", "A3", "A4"]


def test_outstanding_requests_are_capped_at_100_and_the_topic_cannot_change(stub: pb_grpc.PubSubStub) -> None:
    sub = Subscription(stub, pb.FetchRequest(topic_name="/data/AccountChangeEvent", num_requested=250))
    assert sub.next().pending_num_requested == 100
    sub.send(pb.FetchRequest(num_requested=5))
    assert sub.next().pending_num_requested == 100
    sub.send(pb.FetchRequest(topic_name="/data/ContactChangeEvent", num_requested=1))
    with pytest.raises(grpc.RpcError) as raised:
        for _ in range(5):
            sub.next()
    sub.close()
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_keepalive_is_an_empty_response_with_the_latest_replay_id(
        sandbox: FakeSalesforceSandbox, clock: ManualClock, stub: pb_grpc.PubSubStub) -> None:
    sandbox.store.commit(account_create(clock, 1, "A1"))
    sub = Subscription(stub, pb.FetchRequest(topic_name="/data/AccountChangeEvent",
                                             replay_preset=pb.ReplayPreset.EARLIEST, num_requested=3))
    delivered = sub.next_with_events()
    sandbox.store.commit(Change("Contact", "CREATE", ("0035g000000000001AAA",), (), (),
                                {"LastName": "Doe"}, int(clock() * 1000), "tx-2", "", "005"))
    events = admin(sandbox, "GET", "/_admin/pubsub/events").json()
    newest = events["events"][-1]["replayId"]
    assert events["latestReplayId"] == newest and [e["entity"] for e in events["events"]] == ["Account", "Contact"]
    keepalives = [sub.next(), sub.next()]
    sub.close()
    assert int.from_bytes(delivered.latest_replay_id, "big") < newest
    # nothing of this topic after the Account event: the resume point moves to the newest id of the bus
    assert [(len(k.events), int.from_bytes(k.latest_replay_id, "big"), k.pending_num_requested)
            for k in keepalives] == [(0, newest, 2), (0, newest, 2)]


def test_gap_and_overflow_events_from_the_admin_route_carry_the_header_only(
        sandbox: FakeSalesforceSandbox, stub: pb_grpc.PubSubStub) -> None:
    sub = Subscription(stub, pb.FetchRequest(topic_name="/data/AccountChangeEvent", num_requested=5))
    sub.next()
    gap = {"entity": "Account", "ids": [ACCOUNT_ID], "type": "GAP_UPDATE"}
    answer = admin(sandbox, "POST", "/_admin/pubsub/gap", gap)
    assert answer.status_code == 200, answer.text
    overflow = admin(sandbox, "POST", "/_admin/pubsub/gap", {"entity": "Account", "type": "GAP_OVERFLOW"})
    assert overflow.status_code == 200
    assert admin(sandbox, "POST", "/_admin/pubsub/gap", {"entity": "Account", "type": "UPDATE"}).status_code == 400
    received: list[pb.ConsumerEvent] = []
    while len(received) < 2:
        received += sub.next_with_events().events
    sub.close()
    bodies = [decode(stub, e)[1] for e in received]
    assert [(b["ChangeEventHeader"]["changeType"], b["ChangeEventHeader"]["recordIds"]) for b in bodies] == \
        [("GAP_UPDATE", [ACCOUNT_ID]), ("GAP_OVERFLOW", ["000000000000000AAA"])]
    assert all(b["Name"] is None and b["BillingAddress"] is None for b in bodies)


def test_disconnect_admin_route_ends_open_streams_and_a_client_resumes_from_its_last_id(
        sandbox: FakeSalesforceSandbox, clock: ManualClock, stub: pb_grpc.PubSubStub) -> None:
    sandbox.store.commit(account_create(clock, 1, "A1"))
    sub = Subscription(stub, pb.FetchRequest(topic_name="/data/AccountChangeEvent",
                                             replay_preset=pb.ReplayPreset.EARLIEST, num_requested=5))
    last = sub.next_with_events().events[-1].replay_id
    assert admin(sandbox, "POST", "/_admin/pubsub/disconnect").json() == {"disconnected": 1}
    with pytest.raises(grpc.RpcError) as raised:
        for _ in range(5):
            sub.next()
    sub.close()
    assert raised.value.code() == grpc.StatusCode.UNAVAILABLE
    sandbox.store.commit(account_create(clock, 2, "A2"))
    resumed = Subscription(stub, pb.FetchRequest(topic_name="/data/AccountChangeEvent",
                                                 replay_preset=pb.ReplayPreset.CUSTOM, replay_id=last,
                                                 num_requested=5))
    names = [decode(stub, e)[1]["Name"] for e in resumed.next_with_events().events]
    resumed.close()
    assert names == ["A2"]


def test_non_cdc_objects_publish_nothing(sandbox: FakeSalesforceSandbox, clock: ManualClock) -> None:
    sandbox.store.commit(Change("PricebookEntry", "CREATE", ("01u5g000000000001AAA",), (), (), {},
                                int(clock() * 1000), "tx-1", "", "005"))
    assert admin(sandbox, "GET", "/_admin/pubsub/events").json()["events"] == []


# -- errors ---------------------------------------------------------------------------------------------------------

def subscribe_error(stub: pb_grpc.PubSubStub, first: pb.FetchRequest, metadata: Any = META) -> grpc.RpcError:
    sub = Subscription(stub, first, metadata)
    with pytest.raises(grpc.RpcError) as raised:
        sub.next()
    sub.close()
    return raised.value


def test_expired_replay_id_is_invalid_argument_with_the_corrupted_error_code(
        sandbox: FakeSalesforceSandbox, clock: ManualClock, stub: pb_grpc.PubSubStub) -> None:
    sandbox.store.commit(account_create(clock, 1, "Old"))
    old = admin(sandbox, "GET", "/_admin/pubsub/events").json()["events"][0]["replayId"]
    clock.advance(73 * 3600)
    sandbox.store.commit(account_create(clock, 2, "New"))
    custom = pb.FetchRequest(topic_name="/data/AccountChangeEvent", replay_preset=pb.ReplayPreset.CUSTOM,
                             replay_id=replay(old), num_requested=1)
    error = subscribe_error(stub, custom)
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error_code(error) == "sfdc.platform.eventbus.grpc.subscription.fetch.replayid.corrupted"
    assert "rpcId: " in error.details()
    unknown = pb.FetchRequest(topic_name="/data/AccountChangeEvent", replay_preset=pb.ReplayPreset.CUSTOM,
                              replay_id=replay(old + 1), num_requested=1)
    assert error_code(subscribe_error(stub, unknown)) == \
        "sfdc.platform.eventbus.grpc.subscription.fetch.replayid.corrupted"
    earliest = Subscription(stub, pb.FetchRequest(topic_name="/data/AccountChangeEvent",
                                                  replay_preset=pb.ReplayPreset.EARLIEST, num_requested=5))
    names = [decode(stub, e)[1]["Name"] for e in earliest.next_with_events().events]
    earliest.close()
    assert names == ["New"]  # the expired event is no longer replayed


def test_purge_admin_switch_drops_older_events(
        sandbox: FakeSalesforceSandbox, clock: ManualClock, stub: pb_grpc.PubSubStub) -> None:
    sandbox.store.commit(account_create(clock, 1, "Old"))
    clock.advance(3600)
    sandbox.store.commit(account_create(clock, 2, "New"))
    old, new = (e["replayId"] for e in admin(sandbox, "GET", "/_admin/pubsub/events").json()["events"])
    assert admin(sandbox, "POST", "/_admin/pubsub/purge", {"older_than_seconds": 1800}).json() == {"purged": 1}
    assert [e["replayId"] for e in admin(sandbox, "GET", "/_admin/pubsub/events").json()["events"]] == [new]
    custom = pb.FetchRequest(topic_name="/data/AccountChangeEvent", replay_preset=pb.ReplayPreset.CUSTOM,
                             replay_id=replay(old), num_requested=1)
    assert error_code(subscribe_error(stub, custom)) == \
        "sfdc.platform.eventbus.grpc.subscription.fetch.replayid.corrupted"


def test_bad_fetch_requests_are_refused_with_their_error_codes(stub: pb_grpc.PubSubStub) -> None:
    no_id = subscribe_error(stub, pb.FetchRequest(topic_name="/data/AccountChangeEvent",
                                                  replay_preset=pb.ReplayPreset.CUSTOM, num_requested=1))
    assert no_id.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error_code(no_id) == "sfdc.platform.eventbus.grpc.subscription.fetch.replayid.validation.failed"
    zero = subscribe_error(stub, pb.FetchRequest(topic_name="/data/AccountChangeEvent", num_requested=0))
    assert zero.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error_code(zero) == "sfdc.platform.eventbus.grpc.subscription.fetch.requested.events.invalid"
    missing = subscribe_error(stub, pb.FetchRequest(topic_name="/data/NopeChangeEvent", num_requested=1))
    assert missing.code() == grpc.StatusCode.NOT_FOUND


@pytest.mark.parametrize("metadata", [
    (("accesstoken", "00D5g000004XyZa!expired"), ("instanceurl", INSTANCE), ("tenantid", ORG)),
    (("accesstoken", TOKEN), ("instanceurl", INSTANCE), ("tenantid", "00D5g000009ZZZZEAK")),
    (("accesstoken", TOKEN), ("tenantid", ORG)),
])
def test_bad_credentials_are_unauthenticated_with_the_auth_error_code(
        stub: pb_grpc.PubSubStub, metadata: Any) -> None:
    with pytest.raises(grpc.RpcError) as raised:
        stub.GetTopic(pb.TopicRequest(topic_name="/data/AccountChangeEvent"), metadata=metadata)
    assert raised.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert error_code(raised.value) == "sfdc.platform.eventbus.grpc.service.auth.error"
    error = subscribe_error(stub, pb.FetchRequest(topic_name="/data/AccountChangeEvent", num_requested=1), metadata)
    assert error.code() == grpc.StatusCode.UNAUTHENTICATED
    assert error_code(error) == "sfdc.platform.eventbus.grpc.service.auth.error"


def test_tls_serves_the_same_api_to_a_client_that_trusts_the_certificate(
        sandbox: FakeSalesforceSandbox, tmp_path: Path) -> None:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
            .sign(key, hashes.SHA256()))
    cert_pem = cert.public_bytes(serialization.Encoding.PEM)
    (tmp_path / "cert.pem").write_bytes(cert_pem)
    (tmp_path / "key.pem").write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                         serialization.NoEncryption()))
    served = start_pubsub(sandbox, tls={"ssl_certfile": str(tmp_path / "cert.pem"),
                                        "ssl_keyfile": str(tmp_path / "key.pem")})
    try:
        trusted = grpc.ssl_channel_credentials(root_certificates=cert_pem)
        with grpc.secure_channel(f"localhost:{served.port}", trusted) as channel:
            topic = pb_grpc.PubSubStub(channel).GetTopic(pb.TopicRequest(topic_name="/data/AccountChangeEvent"),
                                                         metadata=META, timeout=10)
        with grpc.insecure_channel(f"127.0.0.1:{served.port}") as plain, pytest.raises(grpc.RpcError) as raised:
            pb_grpc.PubSubStub(plain).GetTopic(pb.TopicRequest(topic_name="/data/AccountChangeEvent"),
                                               metadata=META, timeout=5)
    finally:
        served.stop()
    assert topic.topic_name == "/data/AccountChangeEvent"
    assert raised.value.code() == grpc.StatusCode.UNAVAILABLE


# -- over the REST sandbox's own store ------------------------------------------------------------------------------

def test_rest_and_admin_changes_arrive_in_commit_order_with_their_origin(clock: ManualClock) -> None:
    from ml_connector.sandbox.salesforce import create_salesforce_sandbox

    box = create_salesforce_sandbox(clock=clock)
    event_bus(box)
    box.config["pubsub_keepalive_seconds"] = 0.5
    token = box.tokens.issue()
    metadata = (("accesstoken", token), ("instanceurl", INSTANCE), ("tenantid", str(box.config["org_id"])))
    served = start_pubsub(box)
    try:
        with grpc.insecure_channel(f"127.0.0.1:{served.port}") as channel:
            stub = pb_grpc.PubSubStub(channel)
            sub = Subscription(stub, pb.FetchRequest(topic_name="/data/ChangeEvents", num_requested=10), metadata)
            sub.next()
            created = admin(box, "POST", "/_admin/records/Account", {"Name": "Acme", "BillingCity": "Paris"})
            assert created.status_code == 201, created.text
            record_id = created.json()["Id"]
            clock.advance(60)

            async def patch() -> httpx.Response:
                async with httpx.AsyncClient(transport=httpx.ASGITransport(app=box), base_url=INSTANCE) as client:
                    return await client.patch(f"/services/data/v66.0/sobjects/Account/{record_id}",
                                              json={"BillingCity": "Lyon"},
                                              headers={"Authorization": f"Bearer {token}",
                                                       "Sforce-Call-Options": "client=ERPSync"})
            assert asyncio.run(patch()).status_code == 204
            received: list[pb.ConsumerEvent] = []
            while len(received) < 2:
                received += sub.next_with_events().events
            sub.close()
            decoded = [decode(stub, e, metadata) for e in received]
            admin(box, "POST", "/_admin/tokens/expire")
            with pytest.raises(grpc.RpcError) as raised:
                stub.GetTopic(pb.TopicRequest(topic_name="/data/ChangeEvents"), metadata=metadata)
            assert error_code(raised.value) == "sfdc.platform.eventbus.grpc.service.auth.error"
    finally:
        served.stop()
    (_, create), (schema, update) = decoded
    assert [(b["ChangeEventHeader"]["changeType"], b["ChangeEventHeader"]["recordIds"],
             b["ChangeEventHeader"]["changeOrigin"]) for b in (create, update)] == [
        ("CREATE", [record_id], ""), ("UPDATE", [record_id], "com/salesforce/api/rest/66.0;client=ERPSync")]
    assert create["Name"] == "Acme" and create["BillingAddress"]["City"] == "Paris"
    assert update["ChangeEventHeader"]["commitTimestamp"] == create["ChangeEventHeader"]["commitTimestamp"] + 60_000
    assert sorted(bitmap_names(schema, update["ChangeEventHeader"]["changedFields"])) == [
        "BillingAddress.City", "LastModifiedDate"]
    assert update["BillingAddress"]["City"] == "Lyon" and update["Name"] is None
    stored = admin(box, "GET", "/_admin/pubsub/events").json()["events"]
    assert [(e["changeType"], e["changeOrigin"]) for e in stored] == [
        ("CREATE", ""), ("UPDATE", "com/salesforce/api/rest/66.0;client=ERPSync")]
