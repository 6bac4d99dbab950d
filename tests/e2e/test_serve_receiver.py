"""`ml-connector serve --listen`, as a user runs it: a callback is synced at once; a forged one writes nothing.

The source and the target are one strict scripted API (tests/engine/fakeapi.py) served over real HTTP; serve runs
in a child process with a long --interval, so a write within seconds shows the callback woke the loop.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from ml_connector.sandbox.serve import SandboxServer
from tests.e2e.conftest import REPO, Lines, wait_for
from tests.engine.fakeapi import FakeAPI
from tests.pg import fresh_schema, postgres_url  # noqa: F401  (the session fixture)

CONNECTOR = """\
connector: fake
base_url: {url}/v2
connection:
  secrets:
    key: {{description: API key}}
auth:
  key: {{type: api_key, header: x-key, value: "{{{{ secrets.key }}}}"}}
channels:
  changes:
    register:
      method: POST
      path: /watch
      body: {{channel_id: "{{{{ channel.id }}}}", notify_url: "{{{{ channel.url }}}}",
              token: "{{{{ channel.token }}}}", events: "{{{{ channel.events }}}}"}}
      ok_when: "status == 'success'"
    lifetime: 1d
    default_lifetime: 1d
    renew_before: 1h
    id: number
    callback:
      max_bytes: 4096
      verify:
        - {{path: token, equals: channel.token}}
        - {{path: channel_id, equals: channel.id}}
      ids: ids
      operation: operation
entities:
  thing:
    key: code
    read: {{path: /things, records: data}}
    get: {{path: "/things/{{{{ id }}}}", record: data}}
    events: {{channel: changes, names: [things.all]}}
  item:
    key: id
    write:
      strategy: create_only
      create: {{method: POST, path: /items, id: data.id}}
"""
FLOW = """\
flow: things
from: {connection: api, entity: thing}
to: {connection: api, entity: item}
key: code
fields: {name: name}
trigger: {channel: changes}
"""


def write_workspace(root: Path, url: str) -> Path:
    (root / "connectors").mkdir()
    (root / "mappings" / "pair").mkdir(parents=True)
    (root / "connectors" / "fake.yaml").write_text(CONNECTOR.format(url=url))
    (root / "mappings" / "pair" / "integration.yaml").write_text(
        "integration: pair\nconnections: {api: {connector: fake}}\nflows: [things.yaml]\n")
    (root / "mappings" / "pair" / "things.yaml").write_text(FLOW)
    workspace = root / "workspace.yaml"
    workspace.write_text("state: state/state.duckdb\nintegrations: [mappings/pair]\nconnections:\n"
                         "  api: {connector: fake, secrets: {key: \"env:FAKE_KEY\"}}\n"
                         "serve: {public_url: \"https://hooks.example.test\"}\n")
    return workspace




@pytest.fixture
def api() -> Iterator[tuple[FakeAPI, str]]:
    fake = FakeAPI()
    server = SandboxServer()
    try:
        yield fake, server.start("api", fake.app).url  # type: ignore[arg-type]
    finally:
        server.stop()


@pytest.mark.parametrize(("signum", "code"), [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_serve_listens_syncs_a_verified_callback_at_once_and_refuses_a_forged_one(
        tmp_path: Path, api: tuple[FakeAPI, str], signum: int, code: int) -> None:
    fake, url = api
    fake.on("POST", "/v2/watch", 200, {"status": "success"})
    fake.on("GET", "/v2/things/C1", 200, {"data": {"code": "C1", "name": "Ann"}})
    fake.on("POST", "/v2/items", 201, {"data": {"id": 7}})
    workspace = write_workspace(tmp_path, url)
    process = subprocess.Popen(
        [sys.executable, "-m", "ml_connector.cli", "serve", "--interval", "3600", "--listen", "127.0.0.1:0",
         "-w", str(workspace)], cwd=REPO, env={**os.environ, "FAKE_KEY": "k-123456"}, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True)
    assert process.stdout is not None and process.stderr is not None
    out, err = Lines(process.stdout), Lines(process.stderr)
    try:
        listening = wait_for(lambda: next((m for line in err.lines
                                           if (m := re.search(r"listening for callbacks on (http://\S+)", line))),
                                          None), 30, "serve never said where it listens")
        hooks = listening.group(1) + "/hooks/api/changes/thing"
        registered = wait_for(lambda: fake.calls("POST", "/v2/watch"), 30, "the channel was never registered")
        sent = json.loads(registered[0]["body"])
        assert sent["notify_url"] == "https://hooks.example.test/hooks/api/changes/thing"
        token, channel_id = sent["token"], sent["channel_id"]
        assert len(token) >= 32 and re.fullmatch(r"\d{13}", str(channel_id))

        # the receiver answers once serve handed it the registered channel (right after the registration)
        callback = {"token": token, "channel_id": channel_id, "ids": ["C1"], "operation": "update"}
        reply = wait_for(lambda: (r := httpx.post(hooks, json=callback)).status_code != 404 and r, 10,
                         "the endpoint never came up")
        assert reply.status_code == 200
        wait_for(lambda: fake.calls("POST", "/v2/items"), 15, "the callback did not wake serve (interval 3600 s)")
        assert json.loads(fake.calls("POST", "/v2/items")[0]["body"]) == {"name": "Ann"}
        assert [c["path"] for c in fake.requests] == ["/v2/watch", "/v2/things/C1", "/v2/items"]

        forged = {**callback, "token": "x" * len(token), "ids": ["C2"]}
        assert httpx.post(hooks, json=forged).status_code == 401
        assert httpx.post(hooks, json={**callback, "channel_id": 1}).status_code == 401
        assert httpx.post(hooks, content=b"{not json").status_code == 400
        assert httpx.post(listening.group(1) + "/hooks/api/changes/other", json=callback).status_code == 404
        time.sleep(1.0)  # had anything been stored, serve would have woken and read C2 by now
        assert [c["path"] for c in fake.requests] == ["/v2/watch", "/v2/things/C1", "/v2/items"]
    finally:
        process.send_signal(signum)
        try:
            process.wait(timeout=30)
        finally:
            process.kill()
    stderr = err.text()
    assert process.returncode == code, stderr
    assert f"interrupted by {signal.Signals(signum).name}" in stderr
    assert "Traceback" not in stderr
    assert token not in stderr and token not in out.text()
    assert stderr.count("callback refused (401)") == 2 and "callback refused (400)" in stderr
    assert re.search(r"^things\s+ok\s+1\s+1\s", out.text(), re.M), out.text()  # the triggered run: read 1, created 1
    fake.verify()


def serve_once(workspace: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "ml_connector.cli", "serve", "--once", *args, "-w", str(workspace)],
                          cwd=REPO, env={**os.environ, "FAKE_KEY": "k-123456"}, capture_output=True, text=True,
                          timeout=60)


def test_serve_once_with_a_receiver_registers_the_channel_and_exits(tmp_path: Path,
                                                                    api: tuple[FakeAPI, str]) -> None:
    fake, url = api
    fake.on("POST", "/v2/watch", 200, {"status": "success"})
    result = serve_once(write_workspace(tmp_path, url), "--listen", "127.0.0.1:0")
    assert result.returncode == 0, result.stderr
    assert re.search(r"listening for callbacks on http://127\.0\.0\.1:\d+ \(public URL https://hooks", result.stderr)
    assert [c["path"] for c in fake.requests] == ["/v2/watch"]
    assert (tmp_path / "state" / "state.duckdb.inbox").is_file()
    fake.verify()


def test_a_listen_address_that_is_not_host_port_is_a_usage_error(tmp_path: Path) -> None:
    result = serve_once(write_workspace(tmp_path, "http://127.0.0.1:9"), "--listen", "localhost")
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip() == "ml-connector: --listen 'localhost' is not HOST:PORT (e.g. 127.0.0.1:8780)"
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    port = taken.getsockname()[1]
    try:
        (tmp_path / "busy").mkdir()
        busy = serve_once(write_workspace(tmp_path / "busy", "http://127.0.0.1:9"), "--listen", f"127.0.0.1:{port}")
    finally:
        taken.close()
    assert busy.returncode == 2, busy.stderr
    assert busy.stderr.strip().endswith(f"ml-connector: cannot listen for callbacks on 127.0.0.1:{port}: "
                                        "Address already in use")
    assert "Traceback" not in busy.stderr
    assert not (tmp_path / "state" / "state.duckdb.inbox").exists()


def test_without_listen_serve_runs_no_receiver(tmp_path: Path) -> None:
    result = serve_once(write_workspace(tmp_path, "http://127.0.0.1:9"))
    assert result.returncode == 0, result.stderr
    assert "listening" not in result.stderr
    assert not (tmp_path / "state" / "state.duckdb.inbox").exists()


def test_two_receiver_replicas_on_a_shared_state_sync_a_callback_once_and_leave_the_schedules(
        tmp_path: Path, api: tuple[FakeAPI, str], postgres_url: str) -> None:  # noqa: F811
    """compose.yaml's `receiver`: `serve --listen --triggered-only` replicas over one PostgreSQL state. The channel is
    registered once; a callback to either replica syncs its record once; the flow's schedule (due: never run) is
    never run by a receiver (its full read would be an unexpected GET /v2/things)."""
    fake, url = api
    fake.on("POST", "/v2/watch", 200, {"status": "success"})
    fake.on("GET", "/v2/things/C1", 200, {"data": {"code": "C1", "name": "Ann"}})
    fake.on("POST", "/v2/items", 201, {"data": {"id": 7}})
    fake.on("GET", "/v2/things/C1", 200, {"data": {"code": "C1", "name": "Ann"}})  # the second delivery: unchanged
    workspace = write_workspace(tmp_path, url)
    shared = f"state: {{postgresql: \"{postgres_url}\", schema: {fresh_schema(postgres_url)}}}"
    workspace.write_text(workspace.read_text().replace("state: state/state.duckdb", shared))
    flow = tmp_path / "mappings" / "pair" / "things.yaml"
    flow.write_text(flow.read_text() + "schedule: every 1m\n")
    started: list[tuple[subprocess.Popen[str], Lines, Lines]] = []

    def replica() -> str:
        process = subprocess.Popen(
            [sys.executable, "-m", "ml_connector.cli", "serve", "--interval", "3600", "--listen", "127.0.0.1:0",
             "--triggered-only", "-w", str(workspace)], cwd=REPO, env={**os.environ, "FAKE_KEY": "k-123456"},
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        assert process.stdout is not None and process.stderr is not None
        out, err = Lines(process.stdout), Lines(process.stderr)
        started.append((process, out, err))
        found = wait_for(lambda: next((m for line in err.lines
                                       if (m := re.search(r"listening for callbacks on (http://\S+)", line))), None),
                         30, "a replica never said where it listens")
        return found.group(1) + "/hooks/api/changes/thing"

    try:
        first = replica()
        registered = wait_for(lambda: fake.calls("POST", "/v2/watch"), 30, "the channel was never registered")
        sent = json.loads(registered[0]["body"])
        callback = {"token": sent["token"], "channel_id": sent["channel_id"], "ids": ["C1"], "operation": "update"}
        second = replica()
        reply = wait_for(lambda: (r := httpx.post(first, json=callback)).status_code != 404 and r, 10,
                         "the first replica's endpoint never came up")
        assert reply.status_code == 200
        wait_for(lambda: fake.calls("POST", "/v2/items"), 15, "the callback did not wake the replica")
        # the second replica knows the channel the first registered (read from the shared state), registers nothing
        reply = wait_for(lambda: (r := httpx.post(second, json=callback)).status_code != 404 and r, 10,
                         "the second replica's endpoint never came up")
        assert reply.status_code == 200
        wait_for(lambda: len(fake.calls("GET", "/v2/things/C1")) == 2, 15, "the second delivery was not read")
        time.sleep(1.0)  # a scheduled run, or a second write, would show by now
        assert [(c["method"], c["path"]) for c in fake.requests] == [
            ("POST", "/v2/watch"), ("GET", "/v2/things/C1"), ("POST", "/v2/items"), ("GET", "/v2/things/C1")]
    finally:
        for process, _, _ in started:
            process.send_signal(signal.SIGTERM)
        for process, _, _ in started:
            try:
                process.wait(timeout=30)
            finally:
                process.kill()
    for process, _, err in started:
        assert process.returncode == 143, err.text()
        assert "Traceback" not in err.text()
    fake.verify()
