"""A throwaway Redis server for the tests: a free port on loopback, a temporary folder, no persistence; stopped (and
the folder removed) at the end of the session.

Import the fixture into a test module (``from tests.redis_server import redis_url``) and give each test its own key
space with :func:`fresh_prefix` (or its own database number). Without ``redis-server`` (Debian: ``apt-get install
redis-server``) or the ``redis`` Python package the tests that use it are skipped with a reason that says what is
missing.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class RedisServer:
    """One redis-server on a free port, persisting nothing; ``url`` names database 0."""

    def __init__(self, binary: str) -> None:
        self.binary = binary
        self.folder = Path(tempfile.mkdtemp(prefix="ml-connector-redis-"))
        self.port = _free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        log = self.folder / "redis.log"
        self.process = subprocess.Popen(
            ["nice", "-n", "19", self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", str(self.folder), "--logfile", str(log)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"redis-server exited: {log.read_text()[-2000:] if log.exists() else ''}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as conn:
                    conn.sendall(b"PING\r\n")
                    if conn.recv(16).startswith(b"+PONG"):
                        return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("redis-server did not answer PING within 20 s")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        shutil.rmtree(self.folder, ignore_errors=True)


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """The URL of a running throwaway Redis (database 0); skips with the reason when it cannot be had."""
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.skip("redis-server is not installed (Debian: apt-get install redis-server); .ci/run installs it")
    try:
        import redis  # noqa: F401
    except ModuleNotFoundError:
        pytest.skip("the redis Python package is not installed (pip install 'ml-connector[cluster]')")
    server = RedisServer(binary)
    try:
        server.start()  # a server that is there but does not start is a failure, not a skip
    except RuntimeError:
        server.stop()
        raise
    try:
        yield server.url
    finally:
        server.stop()


def fresh_prefix() -> str:
    """A key prefix no other test uses (tests share one server)."""
    return f"test-{uuid.uuid4().hex[:12]}"
