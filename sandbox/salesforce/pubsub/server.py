"""Serving the Pub/Sub API on a local port, in its own thread and event loop, beside the REST sandbox."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import grpc

from ml_connector.sandbox.core import Sandbox
from ml_connector.sandbox.salesforce.pubsub.admin import event_bus
from ml_connector.sandbox.salesforce.pubsub.service import PubSubService
from ml_connector_protos.eventbus.v1 import pubsub_api_pb2_grpc as pb_grpc


class PubSubServer:
    """A running gRPC server; ``port`` is the bound port, ``stop()`` ends it."""

    def __init__(self, service: PubSubService, host: str, port: int, tls: Mapping[str, str] | None) -> None:
        self.host = host
        self.port = 0
        self._service = service
        self._wanted = port
        self._tls = tls
        self._loop = asyncio.new_event_loop()
        self._stopping: asyncio.Event | None = None
        self._ready = threading.Event()
        self._failure: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="sandbox-salesforce-pubsub", daemon=True)

    def start(self) -> PubSubServer:
        self._thread.start()
        if not self._ready.wait(10) or self._failure is not None:
            raise RuntimeError(f"Pub/Sub sandbox did not start on {self.host}:{self._wanted}") from self._failure
        return self

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        try:
            self._loop.run_until_complete(self._serve())
        except BaseException as error:  # reported to start()
            self._failure = error
            self._ready.set()
        finally:
            self._loop.close()

    async def _serve(self) -> None:
        self._stopping = asyncio.Event()
        server = grpc.aio.server()
        pb_grpc.add_PubSubServicer_to_server(self._service, server)
        address = f"{self.host}:{self._wanted}"
        if self._tls:
            key = Path(self._tls["ssl_keyfile"]).read_bytes()
            cert = Path(self._tls["ssl_certfile"]).read_bytes()
            self.port = server.add_secure_port(address, grpc.ssl_server_credentials([(key, cert)]))
        else:
            self.port = server.add_insecure_port(address)
        await server.start()
        self._ready.set()
        await self._stopping.wait()
        await server.stop(grace=0.5)

    def stop(self) -> None:
        if self._stopping is not None and self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._stopping.set)
        self._thread.join(timeout=5)


def start_pubsub(sandbox: Sandbox, host: str = "127.0.0.1", port: int = 0,
                 tls: Mapping[str, str] | None = None) -> PubSubServer:
    """Serve the sandbox's change events over gRPC; ``tls``: the ``ssl_certfile``/``ssl_keyfile`` paths the REST
    server uses (uvicorn's options), None for plaintext."""
    tokens: Any = getattr(sandbox, "tokens")  # noqa: B009 - the Salesforce sandbox's token book (contract)
    instance = getattr(sandbox, "instance_url", None)
    service = PubSubService(event_bus(sandbox), tokens.valid, instance if isinstance(instance, str) else None)
    return PubSubServer(service, host, port, tls).start()
