"""Static channels (configured in the source system, never registered) and signed callbacks.

A static channel is served for as long as `serve --listen` runs at `/hooks/<connection>/<channel>/<entity>`; a
`signature` verify item checks a header against the body with a public key from the connection's secrets.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import socket
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

import ml_connector.commands.channels as channels_command
from ml_connector.cli import main
from ml_connector.errors import SetupError
from ml_connector.events.active import ActiveChannel
from ml_connector.events.channels import maintain_channels
from ml_connector.events.inbox import Inbox, inbox_path
from ml_connector.events.receiver import Receiver
from ml_connector.events.service import Service, listening_socket
from ml_connector.spec import SpecError
from ml_connector.store import State
from ml_connector.sync.runner import Runner
from ml_connector.workspace import Workspace
from tests.engine.fakeapi import FakeAPI

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
PUBLIC = "https://sync.example/in"
ENDPOINT = "/hooks/shop/order_placed/order"
HEADER = "x-shop-webhook-signature"
KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
OTHER_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)


def pem(key: rsa.RSAPrivateKey = KEY) -> str:
    return key.public_key().public_bytes(serialization.Encoding.PEM,
                                         serialization.PublicFormat.SubjectPublicKeyInfo).decode()


def sign(body: bytes, key: rsa.RSAPrivateKey = KEY, over: str = "base64_body") -> str:
    signed = base64.b64encode(body) if over == "base64_body" else body
    return base64.b64encode(key.sign(signed, padding.PKCS1v15(), hashes.SHA256())).decode()


def connector(verify: str | None = None, ids: str = "'[data.order.entity_id]'", register: str = "") -> str:
    verify = verify if verify is not None else f"""\
        - signature:
            header: {HEADER}
            algorithm: rsa_sha256
            public_key: "{{{{ secrets.webhook_key }}}}"
"""
    return f"""\
connector: shop
base_url: http://api.test/v1
connection:
  secrets:
    key: {{description: API key}}
    webhook_key: {{description: PEM public key the store shows for webhook signatures}}
auth:
  key: {{type: api_key, header: x-key, value: "{{{{ secrets.key }}}}"}}
channels:
  order_placed:
{register}    callback:
      verify:
{verify}      ids: {ids}
      answer: {{status: 200, body: {{op: success}}}}
entities:
  order:
    key: entity_id
    read: {{path: /orders, records: items}}
    get: {{path: "/orders/{{{{ id }}}}", record: "@"}}
    events: {{channel: order_placed, names: [observer.sales_order_place_after]}}
  copy:
    key: id
    write: {{strategy: create_only, create: {{method: POST, path: /copies, id: id}}}}
"""


FLOW = ("flow: orders\nfrom: {connection: shop, entity: order}\nto: {connection: shop, entity: copy}\n"
        "key: entity_id\nfields: {name: increment_id}\ntrigger: {channel: order_placed}\n")


def write_workspace(root: Path, connector_text: str | None = None, serve: str | None = None) -> Path:
    (root / "connectors").mkdir(parents=True, exist_ok=True)
    (root / "mappings" / "pair").mkdir(parents=True, exist_ok=True)
    (root / "connectors" / "shop.yaml").write_text(connector_text or connector())
    (root / "mappings" / "pair" / "orders.yaml").write_text(FLOW)
    (root / "mappings" / "pair" / "integration.yaml").write_text(
        "integration: pair\nconnections: {shop: {connector: shop}}\nflows: [orders.yaml]\n")
    workspace = root / "workspace.yaml"
    serve = serve if serve is not None else f"serve: {{listen: '127.0.0.1:8780', public_url: '{PUBLIC}'}}\n"
    workspace.write_text("state: state/state.duckdb\nintegrations: [mappings/pair]\n" + serve +
                         "connections:\n  shop: {connector: shop, secrets: {key: env:SHOP_KEY, "
                         "webhook_key: env:SHOP_WEBHOOK_KEY}}\n")
    return workspace


@pytest.fixture(autouse=True)
def _secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SHOP_KEY", "k-123456")
    monkeypatch.setenv("SHOP_WEBHOOK_KEY", pem())
    monkeypatch.delenv("ML_CONNECTOR_KEY", raising=False)


def maintain(workspace: Path, api: FakeAPI | None = None, now: datetime = T0) -> list[ActiveChannel]:
    opened = Workspace.open(workspace)
    state = opened.state()
    try:
        return asyncio.run(maintain_channels(opened.project, state, public_url=PUBLIC, now=now,
                                             transport=httpx.ASGITransport(app=(api or FakeAPI()).app)))
    finally:
        state.close()


def stored(workspace: Path) -> list[dict[str, Any]]:
    state = State(workspace.parent / "state" / "state.duckdb")
    try:
        return [row.__dict__ for row in state.channels.all()]
    finally:
        state.close()


@pytest.fixture
def inbox(tmp_path: Path) -> Iterator[Inbox]:
    box = Inbox.open(tmp_path / "hooks.inbox")
    yield box
    box.close()


def call(receiver: Receiver, body: bytes, headers: dict[str, str] | None = None,
         path: str = ENDPOINT) -> httpx.Response:
    async def send() -> httpx.Response:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=receiver.app), base_url="http://h") as c:
            return await c.post(path, content=body, headers={"content-type": "application/json", **(headers or {})})
    return asyncio.run(send())


def receiver_for(workspace: Path, inbox: Inbox, now: datetime = T0) -> Receiver:
    receiver = Receiver(inbox, now=lambda: now)
    receiver.update(maintain(workspace, now=now))
    return receiver


def pending(inbox: Inbox) -> list[str]:
    return [item.record_id for item in inbox.pending("shop", "order")]


ORDER = json.dumps({"eventName": "observer.sales_order_place_after",
                    "data": {"order": {"entity_id": 12, "increment_id": "000000012"}}}).encode()


def test_a_static_channel_is_live_without_any_request_and_never_expires(tmp_path: Path) -> None:
    workspace = write_workspace(tmp_path)
    api = FakeAPI()  # strict: any call would fail the test
    [channel] = maintain(workspace, api)
    assert api.requests == []
    assert channel.endpoint == ENDPOINT
    assert channel.expires_at > T0 + timedelta(days=365 * 1000)
    [row] = stored(workspace)
    assert (row["status"], row["channel_id"], row["expires_at"], row["reason"]) == ("static", "-", None, None)
    assert row["url"] == PUBLIC + ENDPOINT
    state = State(tmp_path / "state" / "state.duckdb")
    try:
        assert state.credentials.names() == []  # no token: nothing was made up for the source to echo
    finally:
        state.close()


def test_a_valid_signature_gets_the_answer_at_once_and_the_id_queued_once(tmp_path: Path, inbox: Inbox) -> None:
    receiver = receiver_for(write_workspace(tmp_path), inbox, now=T0 + timedelta(days=3650))
    reply = call(receiver, ORDER, {HEADER: sign(ORDER)})
    assert (reply.status_code, reply.content) == (200, b'{"op":"success"}')
    assert call(receiver, ORDER, {HEADER: sign(ORDER)}).status_code == 200  # the store retries: still one
    assert pending(inbox) == ["12"]


@pytest.mark.parametrize("headers", [
    {},
    {HEADER: ""},
    {HEADER: "not base64 at all!"},
    {HEADER: sign(ORDER, OTHER_KEY)},
    {HEADER: sign(ORDER, over="body")},  # signed over the raw body, where base64(body) is expected
    {HEADER: sign(ORDER.replace(b"12", b"13"))},  # a signature of another body
    {"x-other-signature": sign(ORDER)},
])
def test_a_missing_or_forged_signature_is_401_and_the_inbox_unchanged(tmp_path: Path, inbox: Inbox,
                                                                      headers: dict[str, str]) -> None:
    receiver = receiver_for(write_workspace(tmp_path), inbox)
    reply = call(receiver, ORDER, headers)
    assert (reply.status_code, reply.content) == (401, b"")
    assert pending(inbox) == []


def test_a_signature_over_the_raw_body(tmp_path: Path, inbox: Inbox) -> None:
    verify = f"""\
        - signature: {{header: {HEADER}, algorithm: rsa_sha256, public_key: "{{{{ secrets.webhook_key }}}}",
                       over: body}}
"""
    receiver = receiver_for(write_workspace(tmp_path, connector(verify)), inbox)
    assert call(receiver, ORDER, {HEADER: sign(ORDER)}).status_code == 401
    assert call(receiver, ORDER, {HEADER: sign(ORDER, over="body")}).status_code == 200
    assert pending(inbox) == ["12"]


@pytest.mark.parametrize(("ids", "order", "status", "queued"), [
    ("data.order.entity_id", {"entity_id": 12}, 200, ["12"]),  # a bare scalar: wrapped
    ("data.order.entity_id", {"entity_id": "A-7"}, 200, ["A-7"]),
    ("'[data.order.entity_id]'", {"entity_id": "A-7"}, 200, ["A-7"]),
    ("'[data.order.entity_id]'", {}, 400, []),  # missing
    ("data.order.entity_id", {}, 400, []),
    ("data.order.entity_id", {"entity_id": ""}, 400, []),  # empty
    ("'[data.order.entity_id]'", {"entity_id": ""}, 400, []),
    ("data.order.entity_id", {"entity_id": True}, 400, []),
    ("data.order.entity_id", {"entity_id": {"id": 1}}, 400, []),
])
def test_ids_may_be_one_scalar_and_an_empty_or_missing_id_is_400(tmp_path: Path, inbox: Inbox, ids: str,
                                                                 order: dict[str, Any], status: int,
                                                                 queued: list[str]) -> None:
    receiver = receiver_for(write_workspace(tmp_path, connector(ids=ids)), inbox)
    body = json.dumps({"data": {"order": order}}).encode()
    assert call(receiver, body, {HEADER: sign(body)}).status_code == status
    assert pending(inbox) == queued


def test_a_static_channel_survives_channels_renew_untouched(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    workspace = write_workspace(tmp_path)
    api = FakeAPI()
    maintain(workspace, api)
    before = stored(workspace)
    monkeypatch.setattr(channels_command, "base_transport", lambda: httpx.ASGITransport(app=api.app))
    monkeypatch.setattr(channels_command, "utcnow", lambda: T0 + timedelta(days=400))
    renewed = CliRunner().invoke(main, ["channels", "renew", "-w", str(workspace)])
    assert renewed.exit_code == 0, renewed.output
    assert renewed.output.split() == ["shop/order_placed/order", "-", "static"]
    assert api.requests == []
    assert stored(workspace) == before  # not even its updated_at moved
    listed = CliRunner().invoke(main, ["channels", "list", "-w", str(workspace)])
    assert listed.exit_code == 0, listed.output
    assert listed.output.splitlines()[2].split() == ["shop", "order_placed", "order", "-", "-", "static"]


def test_a_key_that_is_not_a_pem_public_key_stops_at_start_up(tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    workspace = write_workspace(tmp_path)
    monkeypatch.setenv("SHOP_WEBHOOK_KEY", "-----BEGIN PUBLIC KEY-----\nbm90IGEga2V5\n-----END PUBLIC KEY-----")
    with pytest.raises(SetupError) as raised:
        maintain(workspace)
    message = str(raised.value)
    assert "\n" not in message
    assert message.startswith("channel shop/order_placed/order: callback.verify[0].signature.public_key is not a "
                              "PEM public key")
    assert "bm90IGEga2V5" not in message
    ec_key = ec.generate_private_key(ec.SECP256R1()).public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()
    monkeypatch.setenv("SHOP_WEBHOOK_KEY", ec_key)
    with pytest.raises(SetupError, match=r"public_key is an EC key, not an RSA key \(algorithm rsa_sha256\)"):
        maintain(workspace)
    served = CliRunner().invoke(main, ["channels", "renew", "-w", str(workspace)])  # the command: one line, exit 2
    assert served.exit_code == 2
    assert len(served.output.strip().splitlines()) == 1 and "is an EC key" in served.output


def test_a_key_with_escaped_newlines_is_read(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                             inbox: Inbox) -> None:
    monkeypatch.setenv("SHOP_WEBHOOK_KEY", pem().strip().replace("\n", "\\n"))  # as a one-line environment value
    receiver = receiver_for(write_workspace(tmp_path), inbox)
    assert call(receiver, ORDER, {HEADER: sign(ORDER)}).status_code == 200


def test_an_empty_key_refuses_to_start_unless_the_item_is_optional(tmp_path: Path, inbox: Inbox) -> None:
    # the secret is not in the workspace: the template renders empty
    workspace = write_workspace(tmp_path)
    workspace.write_text(workspace.read_text().replace(", webhook_key: env:SHOP_WEBHOOK_KEY", ""))
    with pytest.raises(SetupError, match=r"^channel shop/order_placed/order: callback.verify\[0\].signature."
                                         r"public_key is empty \(give the key, or mark the item optional: true\)$"):
        maintain(workspace)
    optional = f"""\
        - signature:
            header: {HEADER}
            algorithm: rsa_sha256
            public_key: "{{{{ secrets.webhook_key }}}}"
            optional: true
"""
    (tmp_path / "connectors" / "shop.yaml").write_text(connector(optional))
    receiver = receiver_for(workspace, inbox)
    assert call(receiver, ORDER).status_code == 200  # signing is off at the source: taken unsigned
    assert pending(inbox) == ["12"]


def test_an_optional_item_with_a_key_still_checks(tmp_path: Path, inbox: Inbox) -> None:
    optional = f"""\
        - signature: {{header: {HEADER}, algorithm: rsa_sha256, public_key: "{{{{ secrets.webhook_key }}}}",
                       optional: true}}
"""
    receiver = receiver_for(write_workspace(tmp_path, connector(optional)), inbox)
    assert call(receiver, ORDER).status_code == 401
    assert call(receiver, ORDER, {HEADER: sign(ORDER, OTHER_KEY)}).status_code == 401
    assert pending(inbox) == []


def test_a_static_channel_cannot_compare_with_a_token_it_never_handed_out(tmp_path: Path) -> None:
    verify = "        - {path: token, equals: channel.token}\n"
    # validate refuses it first, with file:line (serve's own refusal stays behind it)
    with pytest.raises(SpecError, match=r"shop.yaml:13: channels.order_placed.callback.verify\[0\].equals: "
                                        r"channel 'order_placed' has no register request"):
        maintain(write_workspace(tmp_path, connector(verify)))


def test_a_registered_channel_keeps_being_registered(tmp_path: Path) -> None:
    register = ("    register: {method: POST, path: /hooks, body: {url: \"{{ channel.url }}\"}}\n"
                "    lifetime: 1d\n    default_lifetime: 1d\n    renew_before: 1h\n")
    api = FakeAPI().on("POST", "/v1/hooks", 201, {})
    [channel] = maintain(write_workspace(tmp_path, connector(register=register)), api)
    assert [(r["method"], r["path"], json.loads(r["body"])) for r in api.requests] == [
        ("POST", "/v1/hooks", {"url": PUBLIC + ENDPOINT})]
    assert channel.expires_at == T0 + timedelta(days=1) and len(channel.signatures) == 1
    assert stored(tmp_path / "workspace.yaml")[0]["status"] == "active"


def problems(tmp_path: Path, verify: str) -> list[str]:
    write_workspace(tmp_path, connector(verify))
    result = CliRunner().invoke(main, ["validate", str(tmp_path / "connectors")])
    assert result.exit_code == 1, result.output
    return [line.replace(f"{tmp_path}/", "") for line in result.output.splitlines() if "shop.yaml:" in line]


def test_validate_names_a_signature_without_header_with_file_and_line(tmp_path: Path) -> None:
    verify = "        - signature:\n            algorithm: rsa_sha256\n            public_key: x\n"
    assert problems(tmp_path, verify) == [
        "connectors/shop.yaml:13: channels.order_placed.callback.verify[0].signature: missing required key 'header'"]


def test_validate_names_an_unknown_algorithm_with_file_and_line(tmp_path: Path) -> None:
    verify = f"        - signature:\n            header: {HEADER}\n            algorithm: rsa_sha512\n" \
             "            public_key: x\n"
    assert problems(tmp_path, verify) == [
        "connectors/shop.yaml:15: channels.order_placed.callback.verify[0].signature.algorithm: 'rsa_sha512' is not "
        "one of: rsa_sha256 (did you mean 'rsa_sha256'?)"]


def test_validate_names_an_unknown_key_in_a_signature_item(tmp_path: Path) -> None:
    verify = f"        - signature: {{header: {HEADER}, algorithm: rsa_sha256, public_key: x}}\n" \
             "          path: token\n"
    assert problems(tmp_path, verify) == [
        "connectors/shop.yaml:14: channels.order_placed.callback.verify[0].path: unknown key 'path' (allowed: "
        "signature)"]


def test_the_reply_does_not_wait_for_the_inbox_consumer(tmp_path: Path) -> None:
    """serve in-process: the triggered flow's read of the order hangs until the test lets it go, yet the store's
    callback is answered; the flow runs after (woken by the callback, not by the hour-long interval)."""
    workspace = write_workspace(tmp_path, serve="")
    reads: list[str] = []

    async def scenario() -> None:
        gate = asyncio.Event()

        async def source(request: Request) -> Response:
            reads.append(request.url.path)
            if request.url.path == "/v1/orders/12":
                await gate.wait()  # the consumer's flow work: held
                return JSONResponse({"entity_id": 12, "increment_id": "000000012"})
            if request.url.path == "/v1/copies":
                return JSONResponse({"id": 99}, status_code=201)
            return JSONResponse({"items": []})

        app = Starlette(routes=[Route("/{path:path}", source, methods=["GET", "POST"])])
        opened = Workspace.open(workspace)
        service = Service(opened, interval=3600, listen="127.0.0.1:0",
                          make_runner=lambda p, s: Runner(p, s, transport=httpx.ASGITransport(app=app)))
        task = asyncio.create_task(service.loop(once=False))
        try:
            for _ in range(500):
                if service.receiver is not None and service.receiver.endpoints:
                    break
                await asyncio.sleep(0.01)
            assert service.receiver is not None and service.receiver.endpoints == [ENDPOINT]
            assert service.public_url is not None
            async with httpx.AsyncClient(base_url=service.public_url) as client:
                reply = await asyncio.wait_for(client.post(ENDPOINT, content=ORDER, headers={HEADER: sign(ORDER)}),
                                               10)
                assert (reply.status_code, reply.json()) == (200, {"op": "success"})
                for _ in range(500):  # the consumer was woken by the callback and is now inside the flow
                    if "/v1/orders/12" in reads:
                        break
                    await asyncio.sleep(0.01)
                assert "/v1/orders/12" in reads and not gate.is_set()
                again = await asyncio.wait_for(client.post(ENDPOINT, content=ORDER, headers={HEADER: sign(ORDER)}),
                                               10)  # answered while the flow is still held
                assert again.status_code == 200
            gate.set()
            for _ in range(500):
                if "/v1/copies" in reads:
                    break
                await asyncio.sleep(0.01)
            assert "/v1/copies" in reads
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    asyncio.run(scenario())
    box = Inbox.open(inbox_path(tmp_path / "state" / "state.duckdb"))
    try:
        assert box.pending("shop", "order") == []  # synced: no longer pending
    finally:
        box.close()


def test_the_receivers_connections_send_without_waiting_for_acks() -> None:
    """An answer is written in two parts (headers, body): without TCP_NODELAY on the accepted connection the body
    waits ~40 ms for the caller's delayed ACK, on every call of a source that waits for our answer."""
    listener = listening_socket("127.0.0.1", 0)
    caller = socket.create_connection(listener.getsockname())
    accepted, _ = listener.accept()
    try:
        assert accepted.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0
    finally:
        for sock in (accepted, caller, listener):
            sock.close()
