"""Channels: registered when a triggered flow needs one, renewed before they expire, stored (token encrypted)."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner

import ml_connector.commands.channels as channels_command
from ml_connector.cli import main
from ml_connector.events.active import ActiveChannel
from ml_connector.events.channels import delete_channel, maintain_channels
from ml_connector.store import State
from ml_connector.workspace import Workspace
from tests.engine.fakeapi import FakeAPI

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
PUBLIC = "https://sync.example/in"
WATCH = "/v2/actions/watch"
REPO = Path(__file__).resolve().parents[2]

CHANNEL = """\
channels:
  changes:
    register:
      method: POST
      path: /actions/watch
      body: {watch: [{channel_id: "{{ channel.id }}", events: "{{ channel.events }}", notify_url: "{{ channel.url }}",
                      token: "{{ channel.token }}", channel_expiry: "{{ channel.expires_at }}"}]}
      ok_when: "watch[0].status == 'success'"
      expiry: "watch[0].details.events[0].channel_expiry"
    unregister: {method: DELETE, path: /actions/watch, query: {channel_ids: "{{ channel.id }}"}}
    lifetime: 7d
    default_lifetime: 1h
    renew_before: 1d
    callback:
      verify: [{path: token, equals: channel.token}, {path: channel_id, equals: channel.id}]
"""
RENEW = """\
    renew:
      method: PATCH
      path: /actions/watch
      body: {watch: [{channel_id: "{{ channel.id }}", channel_expiry: "{{ channel.expires_at }}"}]}
      ok_when: "watch[0].status == 'success'"
      expiry: "watch[0].details.events[0].channel_expiry"
"""


def connector(base_url: str = "http://api.test/v2", renew: bool = False) -> str:
    channel = CHANNEL.replace("    unregister:", RENEW + "    unregister:") if renew else CHANNEL
    return f"""\
connector: watched
base_url: {base_url}
connection:
  secrets:
    key: {{description: API key}}
auth:
  key: {{type: api_key, header: x-key, value: "{{{{ secrets.key }}}}"}}
{channel}entities:
  account:
    key: id
    read: {{path: /accounts, records: data}}
    get: {{path: "/accounts/{{{{ id }}}}", record: "data[0]"}}
    events: {{channel: changes, names: [Accounts.all]}}
  contact:
    key: id
    read: {{path: /contacts, records: data}}
    get: {{path: "/contacts/{{{{ id }}}}", record: "data[0]"}}
    events: {{channel: changes, names: [Contacts.create, Contacts.edit]}}
    write: {{strategy: create_only, create: {{method: POST, path: /contacts}}}}
"""


def flow(name: str, entity: str, trigger: bool = True) -> str:
    return (f"flow: {name}\nfrom: {{connection: api, entity: {entity}}}\nto: {{connection: api, entity: contact}}\n"
            "key: id\nfields: {name: name}\n" + ("trigger: {channel: changes}\n" if trigger else ""))


def write_workspace(root: Path, *, entities: tuple[str, ...] = ("account",), renew: bool = False,
                    base_url: str = "http://api.test/v2") -> Path:
    (root / "connectors").mkdir(parents=True, exist_ok=True)
    (root / "mappings" / "pair").mkdir(parents=True, exist_ok=True)
    (root / "connectors" / "watched.yaml").write_text(connector(base_url, renew))
    names = []
    for entity in entities:
        (root / "mappings" / "pair" / f"{entity}s.yaml").write_text(flow(f"{entity}s", entity))
        names.append(f"{entity}s.yaml")
    (root / "mappings" / "pair" / "plain.yaml").write_text(flow("plain", "contact", trigger=False))
    listed = ", ".join([*names, "plain.yaml"])
    (root / "mappings" / "pair" / "integration.yaml").write_text(
        f"integration: pair\nconnections: {{api: {{connector: watched}}}}\nflows: [{listed}]\n")
    workspace = root / "workspace.yaml"
    workspace.write_text("state: state/state.duckdb\nintegrations: [mappings/pair]\n"
                         f"serve: {{listen: '127.0.0.1:8780', public_url: '{PUBLIC}'}}\n"
                         "connections:\n  api: {connector: watched, secrets: {key: env:FAKE_KEY}}\n")
    return workspace


@pytest.fixture(autouse=True)
def _key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAKE_KEY", "k-123456")
    monkeypatch.delenv("ML_CONNECTOR_KEY", raising=False)


def granted(expiry: datetime | None, status: str = "success") -> dict[str, Any]:
    details = {"events": [{"channel_expiry": expiry.isoformat()}]} if expiry else {}
    return {"watch": [{"code": "SUCCESS" if status == "success" else "ERROR", "status": status, "details": details}]}


def maintain(workspace: Path, api: FakeAPI, now: datetime) -> list[ActiveChannel]:
    opened = Workspace.open(workspace)
    state = opened.state()
    try:
        return asyncio.run(maintain_channels(opened.project, state, public_url=PUBLIC, now=now,
                                             transport=httpx.ASGITransport(app=api.app)))
    finally:
        state.close()


def stored(workspace: Path) -> list[dict[str, Any]]:
    state = State(workspace.parent / "state" / "state.duckdb")
    try:
        return [row.__dict__ for row in state.channels.all()]
    finally:
        state.close()


def sent(api: FakeAPI, index: int = -1) -> dict[str, Any]:
    body: dict[str, Any] = json.loads(api.requests[index]["body"])
    return body


def log_of(api: FakeAPI) -> list[str]:
    return [f"{r['method']} {r['path']}" + (f"?{r['params']}" if r["params"] else "") for r in api.requests]


def test_a_missing_channel_is_registered_and_stored(tmp_path: Path) -> None:
    workspace = write_workspace(tmp_path)
    api = FakeAPI().on("POST", WATCH, 201, granted(T0 + timedelta(days=7)))
    live = maintain(workspace, api, T0)
    assert log_of(api) == [f"POST {WATCH}"]
    assert api.requests[0]["headers"]["x-key"] == "k-123456"  # the connection's auth applies
    watch = sent(api)["watch"][0]
    assert set(watch) == {"channel_id", "events", "notify_url", "token", "channel_expiry"}
    assert isinstance(watch["channel_id"], int) and len(str(watch["channel_id"])) == 13
    assert watch["events"] == ["Accounts.all"]
    assert watch["notify_url"] == f"{PUBLIC}/hooks/api/changes/account"
    assert watch["channel_expiry"] == "2026-03-08T12:00:00+00:00"
    assert 32 <= len(watch["token"]) <= 50
    assert len(live) == 1
    channel = live[0]
    assert (channel.connection, channel.channel, channel.entity) == ("api", "changes", "account")
    assert channel.channel_id == str(watch["channel_id"]) and channel.token == watch["token"]
    assert channel.expires_at == T0 + timedelta(days=7)
    assert channel.endpoint == "/hooks/api/changes/account"
    assert channel.callback.verify[1].equals == "channel.id" and channel.callback.answer_status == 200
    [row] = stored(workspace)
    assert row["channel_id"] == channel.channel_id and row["status"] == "active" and row["reason"] is None
    assert row["expires_at"] == T0 + timedelta(days=7) and row["url"] == f"{PUBLIC}/hooks/api/changes/account"


def test_an_answer_naming_no_expiry_is_believed_to_last_the_default_lifetime(tmp_path: Path) -> None:
    workspace = write_workspace(tmp_path)
    api = FakeAPI().on("POST", WATCH, 201, granted(None))
    [channel] = maintain(workspace, api, T0)
    assert sent(api)["watch"][0]["channel_expiry"] == "2026-03-08T12:00:00+00:00"  # asked for 7 days
    assert channel.expires_at == T0 + timedelta(hours=1)  # believed: 1 hour


def test_the_expiry_granted_is_the_one_kept(tmp_path: Path) -> None:
    workspace = write_workspace(tmp_path)
    api = FakeAPI().on("POST", WATCH, 201, granted(datetime(2026, 3, 3, 17, 30, tzinfo=UTC).astimezone(
        __import__("datetime").timezone(timedelta(hours=5, minutes=30)))))
    [channel] = maintain(workspace, api, T0)
    assert channel.expires_at == datetime(2026, 3, 3, 17, 30, tzinfo=UTC)


def test_a_channel_is_renewed_once_within_renew_before_and_not_earlier(tmp_path: Path) -> None:
    workspace = write_workspace(tmp_path)
    due = T0 + timedelta(days=6, seconds=1)  # less than a day left: registered again, same id and token
    api = FakeAPI().on("POST", WATCH, 201, granted(T0 + timedelta(days=7)))
    api.on("POST", WATCH, 201, granted(due + timedelta(days=7)))  # answers are served in order
    [first] = maintain(workspace, api, T0)
    early = T0 + timedelta(days=6) - timedelta(seconds=1)  # a day and a second left: nothing to do
    [same] = maintain(workspace, api, early)
    assert len(api.requests) == 1 and same == first
    [renewed] = maintain(workspace, api, due)
    assert log_of(api) == [f"POST {WATCH}", f"POST {WATCH}"]
    again = sent(api)["watch"][0]
    assert str(again["channel_id"]) == first.channel_id and again["token"] == first.token
    assert again["channel_expiry"] == (due + timedelta(days=7)).isoformat()
    assert renewed.channel_id == first.channel_id and renewed.expires_at == due + timedelta(days=7)
    [still] = maintain(workspace, api, due + timedelta(hours=1))  # renewed: nothing more
    assert len(api.requests) == 2 and still.expires_at == renewed.expires_at


def test_a_declared_renew_request_is_used_for_renewal(tmp_path: Path) -> None:
    workspace = write_workspace(tmp_path, renew=True)
    api = FakeAPI().on("POST", WATCH, 201, granted(T0 + timedelta(days=7)))
    [first] = maintain(workspace, api, T0)
    due = T0 + timedelta(days=6, hours=1)
    api.on("PATCH", WATCH, 200, granted(due + timedelta(days=7)))
    [renewed] = maintain(workspace, api, due)
    assert log_of(api) == [f"POST {WATCH}", f"PATCH {WATCH}"]
    assert sent(api) == {"watch": [{"channel_id": int(first.channel_id),
                                    "channel_expiry": (due + timedelta(days=7)).isoformat()}]}
    assert renewed.expires_at == due + timedelta(days=7) and renewed.token == first.token


def test_an_expired_channel_is_registered_anew(tmp_path: Path) -> None:
    workspace = write_workspace(tmp_path)
    later = T0 + timedelta(hours=2)
    api = FakeAPI().on("POST", WATCH, 201, granted(T0 + timedelta(hours=1)))
    api.on("POST", WATCH, 201, granted(later + timedelta(days=7)))
    [first] = maintain(workspace, api, T0)
    [fresh] = maintain(workspace, api, later)
    assert log_of(api) == [f"POST {WATCH}", f"POST {WATCH}"]
    assert fresh.channel_id != first.channel_id and fresh.token != first.token
    assert sent(api)["watch"][0]["token"] == fresh.token
    assert [row["channel_id"] for row in stored(workspace)] == [fresh.channel_id]


def test_a_failed_registration_is_recorded_retried_and_does_not_stop_the_others(tmp_path: Path) -> None:
    workspace = write_workspace(tmp_path, entities=("account", "contact"))
    later = T0 + timedelta(minutes=5)
    api = FakeAPI().on("POST", WATCH, 202, granted(None, status="error"))  # ok_when false
    api.on("POST", WATCH, 201, granted(T0 + timedelta(days=7)))
    api.on("POST", WATCH, 400, {"code": "INVALID_DATA", "message": "bad events"})  # the retry: an error answer
    api.on("POST", WATCH, 201, granted(later + timedelta(days=7)))  # the retry after that: registered
    live = maintain(workspace, api, T0)
    assert [c.entity for c in live] == ["contact"]
    assert [sent(api, i)["watch"][0]["events"] for i in range(2)] == [["Accounts.all"],
                                                                   ["Contacts.create", "Contacts.edit"]]
    rows = {row["entity"]: row for row in stored(workspace)}
    assert rows["account"]["status"] == "failed" and rows["contact"]["status"] == "active"
    assert "watch[0].status == 'success'" in rows["account"]["reason"]
    live = maintain(workspace, api, later)
    assert [c.entity for c in live] == ["contact"] and len(api.requests) == 3
    rows = {row["entity"]: row for row in stored(workspace)}
    assert rows["account"]["status"] == "failed" and "HTTP 400" in rows["account"]["reason"]
    live = maintain(workspace, api, later + timedelta(minutes=5))
    assert sorted(c.entity for c in live) == ["account", "contact"] and len(api.requests) == 4


def test_the_token_is_encrypted_at_rest_and_never_shown(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    workspace = write_workspace(tmp_path)
    api = FakeAPI().on("POST", WATCH, 201, granted(T0 + timedelta(days=7)))
    with caplog.at_level(logging.DEBUG):
        [channel] = maintain(workspace, api, T0)
    assert channel.token not in caplog.text and "registered" in caplog.text
    assert channel.token not in repr(channel)
    state_dir = tmp_path / "state"
    for path in state_dir.iterdir():
        assert channel.token.encode() not in path.read_bytes(), path.name
    state = State(state_dir / "state.duckdb")
    try:
        names = state.credentials.names()
        assert names == ["api.changes.account.channel_token"]
        assert state.credentials.get(names[0]) == channel.token
        assert state.credentials.secret_names() == []  # not a user's secret: `secret list` leaves it out
    finally:
        state.close()
    listed = CliRunner().invoke(main, ["channels", "list", "-w", str(workspace)])
    assert listed.exit_code == 0, listed.output
    assert channel.token not in listed.output
    assert listed.output.splitlines()[0].split() == ["CONNECTION", "CHANNEL", "ENTITY", "CHANNEL", "ID", "EXPIRES",
                                                     "AT", "STATUS"]
    assert listed.output.splitlines()[2].split() == ["api", "changes", "account", channel.channel_id,
                                                     "2026-03-08", "12:00:00", "active"]


def test_delete_sends_the_unregister_request_and_forgets_the_channel(tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    workspace = write_workspace(tmp_path)
    api = FakeAPI().on("POST", WATCH, 201, granted(T0 + timedelta(days=7)))
    [channel] = maintain(workspace, api, T0)
    api.on("DELETE", WATCH, 200, {"watch": [{"status": "success"}]})
    monkeypatch.setattr(channels_command, "base_transport", lambda: httpx.ASGITransport(app=api.app))
    result = CliRunner().invoke(main, ["channels", "delete", "api", "changes", "account", "-w", str(workspace)])
    assert result.exit_code == 0, result.output
    assert log_of(api) == [f"POST {WATCH}", f"DELETE {WATCH}?{{'channel_ids': '{channel.channel_id}'}}"]
    assert result.output == f"deleted channel api/changes/account (id {channel.channel_id})\n"
    assert stored(workspace) == []
    state = State(tmp_path / "state" / "state.duckdb")
    try:
        assert state.credentials.names() == []
    finally:
        state.close()


def test_delete_of_an_unknown_channel_sends_nothing(tmp_path: Path) -> None:
    workspace = write_workspace(tmp_path)
    opened = Workspace.open(workspace)
    state = opened.state()
    try:
        with pytest.raises(Exception, match="no channel api/changes/account is registered"):
            asyncio.run(delete_channel(opened.project, state, "api", "changes", "account"))
    finally:
        state.close()


def test_renewal_survives_a_restart_in_a_new_process(tmp_path: Path) -> None:
    """Registered by this process (its clock), renewed by `ml-connector channels renew` in a child process."""
    from ml_connector.sandbox.serve import SandboxServer

    api = FakeAPI()
    server = SandboxServer()
    served = server.start("api", api.app)  # type: ignore[arg-type]  # any ASGI app serves
    try:
        workspace = write_workspace(tmp_path, base_url=f"{served.url}/v2")
        now = datetime.now(UTC).replace(microsecond=0)
        api.on("POST", WATCH, 201, granted(now + timedelta(hours=12)))  # less than renew_before: due at once
        api.on("POST", WATCH, 201, granted(now + timedelta(days=7)))
        opened = Workspace.open(workspace)
        state = opened.state()
        try:
            [first] = asyncio.run(maintain_channels(opened.project, state, public_url=PUBLIC, now=now))
        finally:
            state.close()
        child = subprocess.run([sys.executable, "-m", "ml_connector.cli", "channels", "renew", "-w", str(workspace)],
                               capture_output=True, text=True, timeout=120, cwd=REPO,
                               env={**os.environ, "FAKE_KEY": "k-123456"})
        assert child.returncode == 0, child.stderr
        assert log_of(api) == [f"POST {WATCH}", f"POST {WATCH}"]
        again = sent(api)["watch"][0]
        assert str(again["channel_id"]) == first.channel_id and again["token"] == first.token  # not anew
        assert first.token not in child.stdout + child.stderr
        assert child.stdout.split() == ["api/changes/account", first.channel_id, "active", "until",
                                        *(now + timedelta(days=7)).strftime("%Y-%m-%d %H:%M:%S").split(), "UTC"]
        [row] = stored(workspace)
        assert row["expires_at"] == now + timedelta(days=7)
    finally:
        server.stop()


def test_a_failed_renewal_keeps_the_channel_live_until_it_expires_and_is_tried_again(tmp_path: Path) -> None:
    workspace = write_workspace(tmp_path, renew=True)
    due = T0 + timedelta(days=6, hours=1)
    api = FakeAPI().on("POST", WATCH, 201, granted(T0 + timedelta(days=7)))
    api.on("PATCH", WATCH, 400, {"code": "NOT_SUBSCRIBED", "message": "no such channel"})
    api.on("PATCH", WATCH, 200, granted(due + timedelta(days=7)))
    [first] = maintain(workspace, api, T0)
    [kept] = maintain(workspace, api, due)
    assert log_of(api) == [f"POST {WATCH}", f"PATCH {WATCH}"]
    assert kept.expires_at == first.expires_at and kept.token == first.token
    [row] = stored(workspace)
    assert row["status"] == "renew_failed" and "HTTP 400" in row["reason"] and "no such channel" in row["reason"]
    [renewed] = maintain(workspace, api, due + timedelta(minutes=5))
    assert renewed.expires_at == due + timedelta(days=7) and renewed.channel_id == first.channel_id
    assert stored(workspace)[0]["status"] == "active" and stored(workspace)[0]["reason"] is None


def test_a_new_public_url_registers_the_channel_again_with_its_id(tmp_path: Path) -> None:
    workspace = write_workspace(tmp_path, renew=True)  # a renew request carries no URL: register is used
    api = FakeAPI().on("POST", WATCH, 201, granted(T0 + timedelta(days=7)))
    api.on("POST", WATCH, 201, granted(T0 + timedelta(days=7, hours=1)))
    [first] = maintain(workspace, api, T0)
    opened = Workspace.open(workspace)
    state = opened.state()
    try:
        [moved] = asyncio.run(maintain_channels(opened.project, state, public_url="https://new.example",
                                                now=T0 + timedelta(hours=1),
                                                transport=httpx.ASGITransport(app=api.app)))
    finally:
        state.close()
    assert log_of(api) == [f"POST {WATCH}", f"POST {WATCH}"]
    again = sent(api)["watch"][0]
    assert again["notify_url"] == "https://new.example/hooks/api/changes/account"
    assert str(again["channel_id"]) == first.channel_id and again["token"] == first.token
    assert moved.channel_id == first.channel_id
