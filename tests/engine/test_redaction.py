"""Secrets are masked in their encoded forms too: base64 credential pairs, URL-encoded, JSON-escaped (case 9)."""

from __future__ import annotations

import base64
import functools
import json
from pathlib import Path
from urllib.parse import quote, quote_plus, urlencode

import duckdb
import httpx
import pytest
from click.testing import CliRunner

import ml_connector.cli
from ml_connector.cli import main
from ml_connector.http.redact import Redactor
from ml_connector.sync.runner import Runner
from tests.engine.fakeapi import FakeAPI
from tests.engine.tiny_workspace import CONNECTOR, write_workspace

CLIENT_ID = "my-app-id"
CLIENT_SECRET = 's3cr3t/+="&x'
REFRESH = 'r-1:"rot"/\u00e9 x'
PAIR = base64.b64encode(f"{CLIENT_ID}:{CLIENT_SECRET}".encode()).decode()


def encoded_forms(value: str) -> list[str]:
    """The ways a value shows up in an echoed request or in a JSON document."""
    return [value, quote(value, safe=""), quote(value), quote_plus(value), json.dumps(value)[1:-1],
            json.dumps(value, ensure_ascii=False)[1:-1], json.dumps(quote_plus(value))[1:-1]]


def test_the_redactor_masks_encoded_forms_of_a_secret() -> None:
    redactor = Redactor()
    redactor.add(REFRESH)
    for form in encoded_forms(REFRESH):
        assert redactor(f"before {form} after") == "before *** after", form
    assert redactor("r-1:xrot") == "r-1:xrot"  # a near miss stays


def test_the_redactor_masks_the_base64_of_a_credential_pair() -> None:
    redactor = Redactor()
    redactor.add_pair(CLIENT_ID, CLIENT_SECRET)
    unpadded = PAIR.rstrip("=")
    urlsafe = base64.urlsafe_b64encode(f"{CLIENT_ID}:{CLIENT_SECRET}".encode()).decode()
    for form in (PAIR, unpadded, quote(PAIR, safe=""), urlsafe):
        assert "***" in redactor(f"Basic {form}") and form not in redactor(f"Basic {form}"), form
    assert redactor(f"Authorization: Basic {PAIR}") == "Authorization: Basic ***"


OAUTH_CONNECTOR = CONNECTOR.replace("""\
connection:
  secrets:
    key: {description: API key}
auth:
  key: {type: api_key, header: x-key, value: "{{ secrets.key }}"}
""", """\
connection:
  secrets:
    client_id: {description: id}
    client_secret: {description: secret}
    refresh_token: {description: refresh token}
auth:
  oauth:
    type: oauth2
    grant: refresh_token
    token_url: http://api.test/oauth/token
    client_id: "{{ secrets.client_id }}"
    client_secret: "{{ secrets.client_secret }}"
    refresh_token: "{{ secrets.refresh_token }}"
""")


@pytest.mark.duckdb_only  # opens the .duckdb file itself
def test_a_token_endpoint_echoing_the_request_leaks_nothing_into_run_json_or_the_runs_table(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in {"PD_ID": CLIENT_ID, "PD_SECRET": CLIENT_SECRET, "PD_REFRESH": REFRESH}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("ML_CONNECTOR_KEY", raising=False)
    workspace = write_workspace(tmp_path, connector=OAUTH_CONNECTOR)
    workspace.write_text(
        "state: state/state.duckdb\nintegrations: [mappings/pair]\nconnections:\n  api:\n    connector: fake\n"
        "    secrets: {client_id: env:PD_ID, client_secret: env:PD_SECRET, refresh_token: env:PD_REFRESH}\n")
    form = urlencode({"grant_type": "refresh_token", "refresh_token": REFRESH})
    echo = {"error": "invalid_request", "request": {"authorization": f"Basic {PAIR}", "body": form,
                                                    "refresh_token": REFRESH, "client_secret": CLIENT_SECRET}}
    api = FakeAPI().on("POST", "/oauth/token", 400, echo)
    monkeypatch.setattr(ml_connector.cli, "Runner",
                        functools.partial(Runner, transport=httpx.ASGITransport(app=api.app)))

    result = CliRunner().invoke(main, ["run", "--json", "-w", str(workspace)])

    sent = api.calls("POST", "/oauth/token")[0]
    assert (sent["headers"]["authorization"], sent["body"]) == (f"Basic {PAIR}", form)  # the echo is faithful
    assert result.exit_code == 3, result.output
    error = json.loads(result.stdout)["flows"][0]["error"]
    assert error.startswith("connection api: token request failed with HTTP 400: ")
    assert '"authorization": "Basic ***"' in error
    with duckdb.connect(str(tmp_path / "state" / "state.duckdb"), read_only=True) as db:
        stored = str(db.execute("SELECT * FROM runs").fetchall() + db.execute("SELECT * FROM flow_runs").fetchall())
    assert "Basic ***" in stored
    leaks = {form for value in (CLIENT_SECRET, REFRESH, PAIR, PAIR.rstrip("=")) for form in encoded_forms(value)
             if form in result.output or form in stored}
    assert leaks == set()
