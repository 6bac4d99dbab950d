"""Serving sandboxes over real HTTP (uvicorn), each in its own thread."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

import uvicorn

from ml_connector.sandbox.core import Sandbox


@dataclass
class ServedSandbox:
    name: str
    sandbox: Sandbox
    server: uvicorn.Server
    thread: threading.Thread
    host: str
    port: int = 0

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"


@dataclass
class SandboxServer:
    """Starts sandboxes on local ports and stops them again."""

    host: str = "127.0.0.1"
    served: dict[str, ServedSandbox] = field(default_factory=dict)

    def start(self, name: str, sandbox: Sandbox, port: int = 0) -> ServedSandbox:
        config = uvicorn.Config(sandbox, host=self.host, port=port, log_level="warning", lifespan="off",
                                access_log=False)
        server = uvicorn.Server(config)
        thread = threading.Thread(target=server.run, name=f"sandbox-{name}", daemon=True)
        thread.start()
        deadline = time.monotonic() + 10
        while not server.started:
            if time.monotonic() > deadline or not thread.is_alive():
                raise RuntimeError(f"sandbox {name} did not start on {self.host}:{port}")
            time.sleep(0.01)
        bound = server.servers[0].sockets[0].getsockname()[1]
        served = ServedSandbox(name, sandbox, server, thread, self.host, bound)
        self.served[name] = served
        return served

    def stop(self) -> None:
        for served in self.served.values():
            served.server.should_exit = True
        for served in self.served.values():
            served.thread.join(timeout=5)
        self.served.clear()
