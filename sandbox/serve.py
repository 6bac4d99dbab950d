"""Serving sandboxes over real HTTP (uvicorn), each in its own thread."""

from __future__ import annotations

import socket
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
    scheme: str = "http"

    @property
    def url(self) -> str:
        return f"{self.scheme}://{self.host}:{self.port}"


@dataclass
class SandboxServer:
    """Starts sandboxes on local ports and stops them again."""

    host: str = "127.0.0.1"
    served: dict[str, ServedSandbox] = field(default_factory=dict)

    def start(self, name: str, sandbox: Sandbox, port: int = 0, **tls: str) -> ServedSandbox:
        """Serve ``sandbox`` on ``self.host`` and on every host in its ``hosts`` attribute, all on one port
        (a sandbox that tells data centers apart by Host answers on each); ``tls``: uvicorn's ssl_* options."""
        config = uvicorn.Config(sandbox, host=self.host, port=port, log_level="warning", lifespan="off",
                                access_log=False, **tls)  # type: ignore[arg-type]
        server = uvicorn.Server(config)
        extra = () if self.host in {"0.0.0.0", "::", ""} else getattr(sandbox, "hosts", ())  # a wildcard has them
        sockets = _bind([self.host, *extra], port)
        thread = threading.Thread(target=server.run, kwargs={"sockets": sockets}, name=f"sandbox-{name}", daemon=True)
        thread.start()
        deadline = time.monotonic() + 10
        while not server.started:
            if time.monotonic() > deadline or not thread.is_alive():
                raise RuntimeError(f"sandbox {name} did not start on {self.host}:{port}")
            time.sleep(0.01)
        bound = sockets[0].getsockname()[1]
        served = ServedSandbox(name, sandbox, server, thread, self.host, bound, "https" if tls else "http")
        self.served[name] = served
        return served

    def stop(self) -> None:
        for served in self.served.values():
            served.server.should_exit = True
        for served in self.served.values():
            served.thread.join(timeout=5)
        self.served.clear()


def _bind(hosts: list[str], port: int) -> list[socket.socket]:
    """Listening sockets on each host (duplicates dropped), the first picking the port when ``port`` is 0."""
    sockets: list[socket.socket] = []
    for host in dict.fromkeys(hosts):
        sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        # accepted connections inherit it: an answer written in two parts (headers, then body) would otherwise wait
        # ~40 ms for the client's delayed ACK, far slower than a real API (every sandbox call cost 43 ms)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            sock.bind((host, port or (sockets[0].getsockname()[1] if sockets else 0)))
        except OSError:
            sock.close()
            for opened in sockets:
                opened.close()
            raise
        sock.listen(128)
        sockets.append(sock)
    return sockets
