"""A one-connector, one-flow workspace on disk, for tests that run whole flows or the CLI against a FakeAPI."""

from __future__ import annotations

from pathlib import Path

BASE = "http://api.test"

CONNECTOR = """\
connector: fake
base_url: http://api.test/v2
connection:
  secrets:
    key: {description: API key}
auth:
  key: {type: api_key, header: x-key, value: "{{ secrets.key }}"}
entities:
  thing:
    key: id
    read: {path: /things, records: data, incremental: {param: since, field: updated}}
    write:
      strategy: create_only
      create: {method: POST, path: /things}
"""

INTEGRATION = """\
integration: pair
connections: {api: {connector: fake}}
flows: [things.yaml]
"""

# Every record is filtered out, so a run reads and never writes: the tests are about reading, waiting and failing.
FLOW = """\
flow: things
from: {connection: api, entity: thing}
to: {connection: api, entity: thing}
filter: "`false`"
key: id
fields: {name: name}
"""


def write_workspace(root: Path, *, connector: str = CONNECTOR, flow: str = FLOW, secret: str = "env:FAKE_KEY",
                    connection_extra: str = "") -> Path:
    """Write connectors/, mappings/pair/ and workspace.yaml under ``root``; returns the workspace file."""
    (root / "connectors").mkdir(parents=True, exist_ok=True)
    (root / "mappings" / "pair").mkdir(parents=True, exist_ok=True)
    (root / "connectors" / "fake.yaml").write_text(connector)
    (root / "mappings" / "pair" / "integration.yaml").write_text(INTEGRATION)
    (root / "mappings" / "pair" / "things.yaml").write_text(flow)
    workspace = root / "workspace.yaml"
    workspace.write_text("state: state/state.duckdb\nintegrations: [mappings/pair]\nconnections:\n"
                         f"  api: {{connector: fake, secrets: {{key: \"{secret}\"}}{connection_extra}}}\n")
    return workspace
