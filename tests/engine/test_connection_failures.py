"""A host that cannot be reached fails at once, naming the connection and the host (issue 19, CLI consistency).

A name that does not resolve or a port where nothing listens is not a glitch worth minutes of backoff: the flow stops
with one line, "connection api: cannot reach HOST: ...".
"""

from __future__ import annotations

import asyncio
import socket
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from ml_connector.cli import main
from ml_connector.connection import Connection
from ml_connector.http.client import ConnectorClient
from ml_connector.http.errors import FatalError
from ml_connector.store import State
from tests.engine import configs
from tests.engine.tiny_workspace import write_workspace


def closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def client(base_url: str, **spec: object) -> tuple[ConnectorClient, list[float]]:
    waits: list[float] = []

    async def sleep(seconds: float) -> None:
        waits.append(seconds)

    config = configs.connector({"connector": "fake", "base_url": base_url, "retries": 5, **spec})
    return ConnectorClient(Connection("api", config), State(":memory:").credentials, sleep=sleep), waits


def failure(made: ConnectorClient) -> str:
    with pytest.raises(FatalError) as caught:
        asyncio.run(made.request("GET", "/things"))
    return str(caught.value)


def test_a_refused_connection_fails_at_once_naming_connection_and_host() -> None:
    port = closed_port()
    made, waits = client(f"http://127.0.0.1:{port}/v2")
    assert failure(made) == (f"connection api: cannot reach 127.0.0.1:{port}: connection refused (nothing "
                             f"listens there)")
    assert waits == [] and made.stats.retries == 0


def test_a_name_that_does_not_resolve_fails_at_once() -> None:
    made, waits = client("https://tenant.invalid/v2")
    message = failure(made)
    assert message.startswith("connection api: cannot reach tenant.invalid: the name does not resolve (DNS: "), message
    assert waits == []


def test_an_unreachable_token_endpoint_names_its_host() -> None:
    port = closed_port()
    made, waits = client("http://api.test/v2", auth={"oauth": {
        "type": "oauth2", "grant": "client_credentials", "token_url": f"http://127.0.0.1:{port}/token",
        "client_id": "app", "client_secret": "s-123456"}})
    assert failure(made) == (f"connection api: cannot reach 127.0.0.1:{port}: connection refused (nothing "
                             f"listens there)")
    assert waits == []


def test_run_against_an_unreachable_host_is_one_line_and_quick(tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAKE_KEY", "k-123456")
    port = closed_port()
    workspace = write_workspace(tmp_path)
    connector = tmp_path / "connectors" / "fake.yaml"
    connector.write_text(connector.read_text().replace("http://api.test/v2", f"http://127.0.0.1:{port}/v2"))
    started = time.monotonic()
    result = CliRunner().invoke(main, ["run", "-w", str(workspace)])
    elapsed = time.monotonic() - started
    assert result.exit_code == 3, result.output
    assert (f"things: connection api: cannot reach 127.0.0.1:{port}: connection refused (nothing listens there)"
            in result.stdout)
    assert elapsed < 5
