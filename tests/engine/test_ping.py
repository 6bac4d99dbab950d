"""`ml-connector ping CONNECTION`: authenticate, read one record of each object its flows use, and say plainly what
worked and what did not (DNS, TLS, connect, the URL, credentials, permissions, missing objects)."""

from __future__ import annotations

import datetime
import json
import socket
import ssl
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner, Result

import ml_connector.commands.ping
from ml_connector.cli import main
from tests.engine.fakeapi import FakeAPI

CONNECTOR = """\
connector: fake
base_url: "{base}"
connection:
  secrets:
    key: {{description: API key}}
auth:
  key: {{type: api_key, header: x-key, value: "{{{{ secrets.key }}}}"}}
paginators:
  cursor: {{type: cursor, param: cursor, next: next, limit: {{param: limit, max: 100}}}}
entities:
  thing:
    key: id
    read: {{path: /things, records: data, paginator: cursor}}
    write:
      strategy: create_only
      create: {{method: POST, path: /things}}
  invoice:
    key: id
    read: {{path: /invoices, records: data, paginator: cursor}}
    write:
      strategy: create_only
      create: {{method: POST, path: /invoices}}
"""

FLOW = """\
flow: things_to_invoices
from: {connection: api, entity: thing}
to: {connection: api, entity: invoice}
key: id
fields: {name: name}
"""


@pytest.fixture(autouse=True)
def key_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAKE_KEY", "k-123456")
    monkeypatch.delenv("ML_CONNECTOR_KEY", raising=False)


def workspace(root: Path, base: str = "http://api.test/v2") -> str:
    (root / "connectors").mkdir(parents=True, exist_ok=True)
    (root / "mappings" / "pair").mkdir(parents=True, exist_ok=True)
    (root / "connectors" / "fake.yaml").write_text(CONNECTOR.format(base=base))
    (root / "mappings" / "pair" / "integration.yaml").write_text(
        "integration: pair\nconnections: {api: {connector: fake}}\nflows: [things.yaml]\n")
    (root / "mappings" / "pair" / "things.yaml").write_text(FLOW)
    path = root / "workspace.yaml"
    path.write_text("state: state/state.duckdb\nintegrations: [mappings/pair]\nconnections:\n"
                    "  api: {connector: fake, secrets: {key: \"env:FAKE_KEY\"}}\n")
    return str(path)


def ping(monkeypatch: pytest.MonkeyPatch, path: str, api: FakeAPI | None = None) -> Result:
    if api is not None:
        monkeypatch.setattr(ml_connector.commands.ping, "base_transport", lambda: httpx.ASGITransport(app=api.app))
    return CliRunner().invoke(main, ["ping", "api", "-w", path])


def test_ping_reads_one_record_of_each_object_and_says_all_is_well(tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    api = FakeAPI().on("GET", "/v2/things", 200, {"data": [{"id": 1}]}).on("GET", "/v2/invoices", 200, {"data": []})
    result = ping(monkeypatch, workspace(tmp_path), api)
    assert result.exit_code == 0, result.output
    assert result.output.splitlines() == [
        "ping api",
        "  ok    auth: http://api.test/v2 answered; credentials accepted",
        "  ok    thing: read 1 record (GET /things)",
        "  ok    invoice: read 0 records (GET /invoices)",
        "3 ok, 0 failed"]
    assert [call["params"] for call in api.requests] == [{"limit": "1"}, {"limit": "1"}]  # the cheapest page
    assert api.requests[0]["headers"]["x-key"] == "k-123456"


def test_ping_names_a_missing_object(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    api = FakeAPI().on("GET", "/v2/things", 200, {"data": []}).on("GET", "/v2/invoices", 404, {"error": "no"})
    result = ping(monkeypatch, workspace(tmp_path), api)
    assert result.exit_code == 3
    assert "  FAIL  invoice: the object invoice is missing (GET /v2/invoices -> HTTP 404)" in result.output
    assert "1 failed" in result.output.splitlines()[-1]


def test_ping_says_when_every_read_answers_404_that_the_base_url_is_wrong(tmp_path: Path,
                                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    api = FakeAPI().on("GET", "/v2/things", 404, {}).on("GET", "/v2/invoices", 404, {})
    result = ping(monkeypatch, workspace(tmp_path), api)
    assert result.exit_code == 3
    assert result.output.splitlines()[1] == "  FAIL  URL: every read answered 404: is the base URL " \
                                            "http://api.test/v2 right?"


def test_ping_says_refused_credentials_and_stops(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    api = FakeAPI().on("GET", "/v2/things", 401, {"error": "unauthorized"})
    result = ping(monkeypatch, workspace(tmp_path), api)
    assert result.exit_code == 3
    assert result.output.splitlines()[1] == ("  FAIL  auth: the credentials were refused (GET /v2/things -> HTTP "
                                             "401): check the secrets of connection api")
    assert "k-123456" not in result.output


def test_ping_says_a_permission_is_missing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    api = FakeAPI().on("GET", "/v2/things", 200, {"data": []}).on("GET", "/v2/invoices", 403, {"error": "scope"})
    result = ping(monkeypatch, workspace(tmp_path), api)
    assert result.exit_code == 3
    assert ("  FAIL  invoice: no permission to read invoice (GET /v2/invoices -> HTTP 403): check the token's "
            "scopes or the user's rights") in result.output


def test_ping_an_unknown_host_is_a_dns_failure(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    result = ping(monkeypatch, workspace(tmp_path, "http://no-such-host.invalid/v2"))
    assert result.exit_code == 3
    line = result.output.splitlines()[1]
    assert line.startswith("  FAIL  DNS: cannot reach no-such-host.invalid: the name does not resolve"), line


def test_ping_a_closed_port_says_nothing_listens(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    result = ping(monkeypatch, workspace(tmp_path, f"http://127.0.0.1:{port}/v2"))
    assert result.exit_code == 3
    assert result.output.splitlines()[1] == (f"  FAIL  connect: cannot reach 127.0.0.1:{port}: connection refused "
                                             "(nothing listens there)")


@pytest.fixture
def untrusted_tls_port(tmp_path: Path) -> Iterator[int]:
    """A TLS server whose certificate is self-signed (nobody trusts it)."""
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
    (tmp_path / "cert.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (tmp_path / "key.pem").write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                                         serialization.PrivateFormat.PKCS8,
                                                         serialization.NoEncryption()))
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(tmp_path / "cert.pem", tmp_path / "key.pem")
    server = socket.create_server(("127.0.0.1", 0))
    server.settimeout(10)

    def serve() -> None:
        try:
            connection, _ = server.accept()
            with context.wrap_socket(connection, server_side=True):
                pass
        except (OSError, ssl.SSLError):
            pass  # the client refuses the certificate: the handshake fails on this side too

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield server.getsockname()[1]
    server.close()
    thread.join(5)


def test_ping_an_untrusted_certificate_is_a_tls_failure(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                        untrusted_tls_port: int) -> None:
    result = ping(monkeypatch, workspace(tmp_path, f"https://localhost:{untrusted_tls_port}/v2"))
    assert result.exit_code == 3
    line = result.output.splitlines()[1]
    assert line.startswith(f"  FAIL  TLS: the certificate of https://localhost:{untrusted_tls_port}/v2 is not "
                           "trusted: self-signed certificate"), line


def test_ping_an_unknown_connection_is_one_line(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["ping", "nope", "-w", workspace(tmp_path)])
    assert result.exit_code == 2
    assert result.stderr.strip() == "ml-connector: the workspace has no connection named 'nope' (connections: api)"


def test_ping_json_lists_the_checks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    api = FakeAPI().on("GET", "/v2/things", 200, {"data": []}).on("GET", "/v2/invoices", 404, {})
    monkeypatch.setattr(ml_connector.commands.ping, "base_transport", lambda: httpx.ASGITransport(app=api.app))
    result = CliRunner().invoke(main, ["ping", "api", "-w", workspace(tmp_path), "--json"])
    assert result.exit_code == 3
    assert [(c["subject"], c["ok"]) for c in json.loads(result.stdout)] == [
        ("auth", True), ("thing", True), ("invoice", False)]


CHECKED = CONNECTOR.replace("entities:\n", """ping:
  - name: invoice writes
    path: /settings/sync
    params: {{object: invoice}}
    fails_when: "data.crm_sync_enabled"
    message: "invoices are read-only here: another sync owns them ({{{{ body.data.owner }}}})"
entities:
""")


def test_ping_runs_the_connectors_declared_checks_and_names_an_object_made_read_only(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = workspace(tmp_path)
    (tmp_path / "connectors" / "fake.yaml").write_text(CHECKED.format(base="http://api.test/v2"))
    api = FakeAPI().on("GET", "/v2/things", 200, {"data": []}).on("GET", "/v2/invoices", 200, {"data": []}) \
                   .on("GET", "/v2/settings/sync", 200, {"data": {"crm_sync_enabled": True, "owner": "CRM sync"}})
    result = ping(monkeypatch, path, api)
    assert result.exit_code == 3, result.output
    assert result.output.splitlines() == [
        "ping api",
        "  ok    auth: http://api.test/v2 answered; credentials accepted",
        "  ok    thing: read 0 records (GET /things)",
        "  ok    invoice: read 0 records (GET /invoices)",
        "  FAIL  invoice writes: invoices are read-only here: another sync owns them (CRM sync)",
        "3 ok, 1 failed"]
    assert api.requests[-1]["params"] == {"object": "invoice"}

    api = FakeAPI().on("GET", "/v2/things", 200, {"data": []}).on("GET", "/v2/invoices", 200, {"data": []}) \
                   .on("GET", "/v2/settings/sync", 200, {"data": {"crm_sync_enabled": False}})
    result = ping(monkeypatch, path, api)
    assert result.exit_code == 0, result.output
    assert "  ok    invoice writes: GET /settings/sync" in result.output.splitlines()
