"""A two-flow workspace on disk (organisations, then people that look their organisation up), for tests that plan,
preview or audit whole runs against one FakeAPI serving both the source and the target entities."""

from __future__ import annotations

from pathlib import Path

CONNECTOR = """\
connector: fake
base_url: http://api.test/v2
connection:
  secrets:
    key: {description: API key}
auth:
  key: {type: api_key, header: x-key, value: "{{ secrets.key }}"}
entities:
  src_org:
    key: code
    read: {path: /src/orgs, records: data}
  src_person:
    key: id
    read: {path: /src/people, records: data}
  org:
    key: id
    read: {path: /orgs, records: data}
    get: {path: "/orgs/{{ id }}", record: data}
    write:
      strategy: search_then_write
      search: {path: /orgs/search, params: {term: "{{ match.value }}"}, records: data}
      create: {method: POST, path: /orgs, id: data.id}
      update: {method: PATCH, path: "/orgs/{{ target_id }}", id: data.id}
  person:
    key: id
    read: {path: /persons, records: data}
    get: {path: "/persons/{{ id }}", record: data}
    write:
      strategy: create_only
      create: {method: POST, path: /persons, id: data.id}
"""

INTEGRATION = """\
integration: pair
connections: {api: {connector: fake}}
flows: [orgs.yaml, people.yaml]
"""

ORGS = """\
flow: orgs
from: {connection: api, entity: src_org}
to: {connection: api, entity: org}
key: code
match: {target: code}
fields: {code: code, name: name}
"""

PEOPLE = """\
flow: people
from: {connection: api, entity: src_person}
to: {connection: api, entity: person}
depends_on: [orgs]
key: id
fields:
  name: name
  org_id: "{{ lookup('orgs', org) }}"
"""


def write_pair(root: Path) -> Path:
    """Write connectors/, mappings/pair/ and workspace.yaml under ``root``; returns the workspace file."""
    (root / "connectors").mkdir(parents=True, exist_ok=True)
    (root / "mappings" / "pair").mkdir(parents=True, exist_ok=True)
    (root / "connectors" / "fake.yaml").write_text(CONNECTOR)
    (root / "mappings" / "pair" / "integration.yaml").write_text(INTEGRATION)
    (root / "mappings" / "pair" / "orgs.yaml").write_text(ORGS)
    (root / "mappings" / "pair" / "people.yaml").write_text(PEOPLE)
    workspace = root / "workspace.yaml"
    workspace.write_text("state: state/state.duckdb\nintegrations: [mappings/pair]\nconnections:\n"
                         "  api: {connector: fake, secrets: {key: \"env:FAKE_KEY\"}}\n")
    return workspace
