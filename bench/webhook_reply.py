"""How fast a signed callback is answered: a source that waits for our answer (a synchronous webhook) waits this long.

`python -m bench.webhook_reply [--calls 50]` — a static channel with an `rsa_sha256` signature item is built from
specs as serve builds it (maintain_channels), its receiver served as serve serves it (listening_socket, uvicorn) over
real HTTP; each call carries a new record id, so every answer includes storing it in the inbox. One line: the median
and p95 reply time over HTTP, and in process (ASGI, no TCP) for the receiver's own share.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import statistics
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import httpx
import uvicorn
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from ml_connector.events.active import ActiveChannel
from ml_connector.events.channels import maintain_channels
from ml_connector.events.inbox import Inbox
from ml_connector.events.receiver import Receiver
from ml_connector.events.service import listening_socket
from ml_connector.workspace import Workspace

HEADER = "x-store-webhook-signature"
CONNECTOR = """\
connector: store
base_url: http://127.0.0.1:9/v1
connection:
  secrets: {key: {description: API key}, webhook_key: {description: PEM public key for webhook signatures}}
auth:
  key: {type: api_key, header: x-key, value: "{{ secrets.key }}"}
channels:
  order_placed:
    callback:
      verify:
        - signature: {header: HEADER, algorithm: rsa_sha256, public_key: "{{ secrets.webhook_key }}"}
      ids: "[data.order.entity_id]"
      answer: {status: 200, body: {op: success}}
entities:
  order:
    key: entity_id
    read: {path: /orders, records: items}
    get: {path: "/orders/{{ id }}", record: "@"}
    events: {channel: order_placed, names: [order.placed]}
    write: {strategy: create_only, create: {method: POST, path: /orders, id: entity_id}}
""".replace("HEADER", HEADER)
FLOW = ("flow: orders\nfrom: {connection: store, entity: order}\nto: {connection: store, entity: order}\n"
        "key: entity_id\nfields: {name: name}\ntrigger: {channel: order_placed}\n")


def _workspace(root: Path) -> Path:
    (root / "connectors").mkdir()
    (root / "mappings" / "pair").mkdir(parents=True)
    (root / "connectors" / "store.yaml").write_text(CONNECTOR)
    (root / "mappings" / "pair" / "orders.yaml").write_text(FLOW)
    (root / "mappings" / "pair" / "integration.yaml").write_text(
        "integration: pair\nconnections: {store: {connector: store}}\nflows: [orders.yaml]\n")
    workspace = root / "workspace.yaml"
    workspace.write_text("state: state/state.duckdb\nintegrations: [mappings/pair]\n"
                         "connections:\n  store: {connector: store, secrets: {key: env:BENCH_KEY, "
                         "webhook_key: env:BENCH_WEBHOOK_KEY}}\n")
    return workspace


def _channels(workspace: Path) -> list[ActiveChannel]:
    opened = Workspace.open(workspace)
    state = opened.state()
    try:
        return asyncio.run(maintain_channels(opened.project, state, public_url="http://127.0.0.1",
                                             now=datetime.now(UTC)))
    finally:
        state.close()


Call = tuple[bytes, dict[str, str]]


def served(receiver: Receiver) -> tuple[uvicorn.Server, threading.Thread, int]:
    """The receiver on a local port as serve runs it (its listening socket, uvicorn), in a thread of its own."""
    sock = listening_socket("127.0.0.1", 0)
    server = uvicorn.Server(uvicorn.Config(receiver.app, log_level="warning", lifespan="off", access_log=False))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise SystemExit("the receiver did not start")
        time.sleep(0.01)
    return server, thread, sock.getsockname()[1]


def signed_calls(key: rsa.RSAPrivateKey, count: int, first: int) -> list[Call]:
    """`count` order callbacks with new ids from `first`, each signed as the source signs: base64(body), RSA-SHA256."""
    calls = []
    for number in range(first, first + count):
        body = json.dumps({"eventName": "order.placed", "data": {"order": {"entity_id": number}}}).encode()
        signature = key.sign(base64.b64encode(body), padding.PKCS1v15(), hashes.SHA256())
        calls.append((body, {HEADER: base64.b64encode(signature).decode(), "content-type": "application/json"}))
    return calls


def _checked(reply: httpx.Response) -> None:
    if reply.status_code != 200 or reply.json() != {"op": "success"}:
        raise SystemExit(f"unexpected answer {reply.status_code}: {reply.text[:200]}")


def over_http(url: str, calls: list[Call]) -> list[float]:
    """Milliseconds per call over real HTTP, one kept-alive connection (the first 5 calls warm up, unmeasured)."""
    samples = []
    with httpx.Client() as client:
        for index, (body, headers) in enumerate(calls):
            started = time.perf_counter()
            reply = client.post(url, content=body, headers=headers)
            elapsed = (time.perf_counter() - started) * 1000
            _checked(reply)
            if index >= 5:
                samples.append(elapsed)
    return samples


async def in_process(receiver: Receiver, path: str, calls: list[Call]) -> list[float]:
    """The same through ASGI, without TCP: the receiver's own share of the reply time."""
    samples = []
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=receiver.app), base_url="http://hook") as client:
        for index, (body, headers) in enumerate(calls):
            started = time.perf_counter()
            reply = await client.post(path, content=body, headers=headers)
            elapsed = (time.perf_counter() - started) * 1000
            _checked(reply)
            if index >= 5:
                samples.append(elapsed)
    return samples


def spread(samples: list[float]) -> str:
    p95 = statistics.quantiles(samples, n=20)[18] if len(samples) >= 2 else samples[0]
    return f"median {statistics.median(samples):.2f} ms, p95 {p95:.2f} ms"


def measure(count: int) -> str:
    """The line: reply times of `count` signed callbacks over HTTP (uvicorn), and in process."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    os.environ["BENCH_KEY"] = "unused"  # the connection's API key: no call is made
    os.environ["BENCH_WEBHOOK_KEY"] = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()
    with tempfile.TemporaryDirectory() as folder:
        channels = _channels(_workspace(Path(folder)))
        inbox = Inbox.open(Path(folder) / "state" / "state.duckdb.inbox")
        receiver = Receiver(inbox)
        receiver.update(channels)
        server, thread, port = served(receiver)
        try:
            url = f"http://127.0.0.1:{port}{channels[0].endpoint}"
            http = over_http(url, signed_calls(key, count + 5, 0))
            local = asyncio.run(in_process(receiver, channels[0].endpoint, signed_calls(key, count + 5, count + 5)))
            stored = len(inbox.pending("store", "order", limit=3 * count))
            if stored != 2 * (count + 5):
                raise SystemExit(f"{stored} ids stored, {2 * (count + 5)} expected")
        finally:
            server.should_exit = True
            thread.join(timeout=10)
            inbox.close()
    return (f"webhook reply, static channel with rsa_sha256 signature, {count} calls: over HTTP (uvicorn) "
            f"{spread(http)}; in process {spread(local)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=50)
    print(measure(max(1, parser.parse_args().calls)))


if __name__ == "__main__":
    main()
