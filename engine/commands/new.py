"""`ml-connector new connector NAME` and `ml-connector new mapping SOURCE TARGET`: commented starting specs.

Each written spec validates as it is, so an analyst starts from something that works and edits it one field at a
time with `ml-connector validate` after each step. An existing file is never overwritten.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click
import yaml

from ml_connector.errors import SetupError
from ml_connector.spec import load_specs
from ml_connector.spec.flow_checks import MATCHED_STRATEGIES
from ml_connector.spec.schemas import SCHEMA_DIR

NAME = re.compile(r"^[a-z][a-z0-9_]*$")

CONNECTOR_TEMPLATE = """\
# yaml-language-server: $schema={schema}
# The connector for {name}: how to reach its API and what each of its objects (entities) looks like.
# Edit one part at a time and check with `ml-connector validate {path}`; `ml-connector ping CONNECTION` then tries it
# against the real system. docs/spec-language.md describes every key.
connector: {name}
title: {name} (edit me)

connection:
  settings:                  # per-workspace values, used in templates as {{{{ connection.NAME }}}}
    api_url:
      description: The API's base address
      default: https://api.example.com/v1
  secrets:                   # never written here: the workspace names where each comes from (env:VAR, store:NAME)
    api_key: {{description: API key sent with every request}}

base_url: "{{{{ connection.api_url }}}}"

auth:                        # the first strategy is used unless the workspace picks another
  api_key:
    type: api_key
    header: x-api-key
    value: "{{{{ secrets.api_key }}}}"

responses:                   # what each kind of answer means (first match wins)
  - when: {{status: 401}}
    do: reauth
  - when: {{status: 429}}
    do: rate_limited
    wait: {{header: retry-after, unit: seconds}}
  - when: {{status: [500, 502, 503, 504]}}
    do: retry
  - when: {{status: [400, 404, 409, 422]}}
    do: record_error

paginators:                  # how lists are paged; readers always ask for the largest page
  pages:
    type: page
    param: page
    first: 1
    limit: {{param: per_page, max: 100}}

entities:
  record:                    # rename: one entry per object of the API (customer, item, invoice, ...)
    key: id                  # the field that identifies a record
    updated: updated_at      # when a record last changed: incremental reads start from the last one seen
    fields:                  # every field a mapping may read or write (validate checks mappings against these)
      id: {{type: string, required: true, writable: false, description: The record's id}}
      name: {{type: string, required: true, description: Display name}}
      updated_at: {{type: datetime, required: true, writable: false, description: Last change}}
    read:
      path: /records
      records: data          # where the list is in the answer (JMESPath)
      paginator: pages
      incremental: {{param: updated_since, field: updated_at}}
    get: {{path: "/records/{{{{ id }}}}", record: data}}
    write:
      strategy: create_only  # or upsert, search_then_write, update_only
      create: {{method: POST, path: /records, id: data.id}}
"""

MAPPING_HEAD = """\
# yaml-language-server: $schema={schema}
# {source} records become {target} records. Edit, then check with `ml-connector validate`;
# try it with `ml-connector preview {flow}`; pin its behaviour with `examples` (`ml-connector test`).
flow: {flow}
title: {source_entity} -> {target_entity} (edit me)
from: {{connection: {source_connection}, entity: {source_entity}}}
to: {{connection: {target_connection}, entity: {target_entity}}}
# depends_on: [other_flow]   # flows this one looks up with lookup('other_flow', key): they run first
# schedule: every 15m        # for `ml-connector serve`
# filter: "isActive"         # JMESPath on the source record: records it rejects are not sent
key: {key}{key_note}
{match}
fields:                      # target field: source expression (JMESPath, or Jinja inside "{{{{ }}}}")
"""

MAPPING_TAIL = """\
# examples:                  # run by `ml-connector test`: a source record and the payload it must become
#   - in: {{{key}: K-1}}
#     out: {{...}}
"""

INTEGRATION_TEMPLATE = """\
# yaml-language-server: $schema={schema}
# An integration: the connections its flows use and the flow files it runs, in this folder.
integration: {name}
connections:
{connections}
flows:
  - {flow_file}
"""


def _write(path: Path, text: str) -> None:
    """Write a new file; an existing one is never overwritten."""
    if path.exists():
        raise SetupError(f"{path} exists already; nothing was written (move it away or pick another name)")
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("x", encoding="utf-8") as out:
        out.write(text)


def _schema(path: Path, name: str) -> str:
    """The schema line's path from the file's folder to the shipped schema (for editors)."""
    schema = SCHEMA_DIR / f"{name}.schema.json"
    try:
        return os.path.relpath(schema, path.parent.resolve())
    except ValueError:
        return str(schema)


def connector_spec(name: str, path: Path) -> str:
    """The commented starting spec of a connector named ``name`` (written at ``path``)."""
    if not NAME.match(name):
        raise click.BadParameter(f"{name!r}: use lowercase letters, digits and _ (e.g. my_crm)", param_hint="NAME")
    return CONNECTOR_TEMPLATE.format(name=name, path=path, schema=_schema(path, "connector"))


@dataclass(frozen=True)
class End:
    """One end of a new flow: the connection named in the mapping, its connector, the entity and its spec."""

    connection: str
    connector: str
    entity: str
    spec: Mapping[str, Any]


def _resolve(text: str, connections: Mapping[str, str], connectors: Mapping[str, Mapping[str, Any]],
             hint: str) -> End:
    """``connection.entity`` (a workspace connection) or ``connector.entity``."""
    first, dot, entity = text.partition(".")
    if not dot or not entity:
        raise click.BadParameter(f"{text!r}: write connection.entity or connector.entity", param_hint=hint)
    connector = connections.get(first, first)
    if connector not in connectors:
        known = sorted({*connections, *connectors})
        raise click.BadParameter(f"{first!r} is neither a connection nor a connector (known: "
                                 f"{', '.join(known) or 'none'})", param_hint=hint)
    entities = connectors[connector].get("entities") or {}
    if entity not in entities:
        raise click.BadParameter(f"connector {connector} has no entity {entity!r} (entities: "
                                 f"{', '.join(sorted(entities)) or 'none'})", param_hint=hint)
    return End(first, connector, entity, entities[entity])


def _writable(spec: Mapping[str, Any]) -> list[tuple[str, Mapping[str, Any]]]:
    fields = spec.get("fields") or {}
    return [(name, decl) for name, decl in fields.items()
            if isinstance(decl, Mapping) and decl.get("writable", True) is not False]


def _field_lines(source: End, target: End) -> list[str]:
    """One line per writable target field: mapped from the source field of the same name, else commented out."""
    source_fields = set(source.spec.get("fields") or {})
    lines: list[str] = []
    for name, decl in _writable(target.spec):
        about = ", ".join(part for part in (str(decl.get("type") or ""), "required" if decl.get("required") else "",
                                            str(decl.get("description") or "")) if part)
        note = f"  # {about}" if about else ""
        if name in source_fields:
            lines.append(f"  {name}: {name}{note}")
        else:
            lines.append(f"  # {name}: ...{note}")
    if not any(not line.lstrip().startswith("#") for line in lines):  # a spec needs one field: the key to start
        key = str(source.spec.get("key") or "id")
        lines.insert(0, f"  {key}: {key}  # a start: replace with the target's fields")
    return lines


def _match_line(target: End, fields: list[str]) -> str:
    """Required when the target finds records before writing them (its strategy says so); a hint otherwise."""
    write = target.spec.get("write")
    strategy = write.get("strategy") if isinstance(write, Mapping) else None
    mapped = [line.split(":", 1)[0].strip() for line in fields if not line.lstrip().startswith("#")]
    if strategy in MATCHED_STRATEGIES and mapped:
        return (f"match: {{target: {mapped[0]}}}   # {target.entity} is written with {strategy}: the target field "
                "that finds a record\n#   already there (pick a unique one, e.g. a custom field holding the source "
                "key)")
    return "# match: {target: some_field}   # find an existing target record by this field before creating one"


def mapping_spec(source: End, target: End, flow: str, path: Path) -> str:
    key = str(source.spec.get("key") or "id")
    fields = _field_lines(source, target)
    head = MAPPING_HEAD.format(schema=_schema(path, "mapping"), source=f"{source.connection}.{source.entity}",
                               target=f"{target.connection}.{target.entity}", flow=flow,
                               source_entity=source.entity, target_entity=target.entity,
                               source_connection=source.connection, target_connection=target.connection, key=key,
                               key_note=f"   # the key of {source.entity}", match=_match_line(target, fields))
    return head + "\n".join(fields) + "\n" + MAPPING_TAIL.format(key=key)


def _project(connectors_dir: Path, workspace: Path | None) -> tuple[dict[str, str], dict[str, Mapping[str, Any]]]:
    """(workspace connection -> connector, connector name -> its spec as written) for resolving SOURCE/TARGET."""
    connections: dict[str, str] = {}
    if workspace is not None and workspace.is_file():
        data = yaml.safe_load(workspace.read_text()) or {}
        for name, entry in (data.get("connections") or {}).items():
            if isinstance(entry, Mapping) and isinstance(entry.get("connector"), str):
                connections[str(name)] = entry["connector"]
    project, _problems = load_specs([connectors_dir]) if connectors_dir.exists() else (None, [])
    connectors: dict[str, Mapping[str, Any]] = \
        {name: spec.data for name, spec in project.connectors.items()} if project is not None else {}
    return connections, connectors


def _as_declared(end: End, integration: Path) -> End:
    """``end`` named by the connection an existing integration declares for its connector (if it declares one)."""
    data = yaml.safe_load(integration.read_text(encoding="utf-8")) or {}
    declared = data.get("connections") if isinstance(data, Mapping) else None
    if not isinstance(declared, Mapping) or end.connection in declared:
        return end
    for connection, entry in declared.items():
        if isinstance(entry, Mapping) and entry.get("connector") == end.connector:
            return End(str(connection), end.connector, end.entity, end.spec)
    return end


def _add_flow(integration: Path, file_name: str) -> bool:
    """Append ``file_name`` to an integration's ``flows`` when that block list ends the file (the usual layout),
    keeping every other byte; False, and the file untouched, when the result would not be exactly that."""
    text = integration.read_text(encoding="utf-8")
    before = yaml.safe_load(text) or {}
    flows = before.get("flows") if isinstance(before, Mapping) else None
    lines = text.rstrip("\n").splitlines()
    if not isinstance(flows, list) or not lines or not re.match(r"^\s+- \S", lines[-1]):
        return False
    indent = lines[-1][:len(lines[-1]) - len(lines[-1].lstrip())]
    updated = text.rstrip("\n") + f"\n{indent}- {file_name}\n"
    try:
        after = yaml.safe_load(updated)
    except yaml.YAMLError:
        return False
    if after != {**before, "flows": [*flows, file_name]}:
        return False
    integration.write_text(updated, encoding="utf-8")
    return True


@click.group()
def new() -> None:
    """Write a commented starting spec that validates (never over an existing file).

    \b
    Example:
      ml-connector new connector my_crm
    """


@new.command("connector")
@click.argument("name")
@click.option("--dir", "directory", type=click.Path(path_type=Path, file_okay=False), default=Path("connectors"),
              show_default=True, help="Where connector specs live.")
def new_connector(name: str, directory: Path) -> None:
    """Write DIR/NAME.yaml: a connector with one example entity, every part commented.

    \b
    Example:
      ml-connector new connector my_crm && ml-connector validate connectors/my_crm.yaml
    """
    path = directory / f"{name}.yaml"
    _write(path, connector_spec(name, path))
    click.echo(f"wrote {path}; edit it, then `ml-connector validate {path}`")


@new.command("mapping")
@click.argument("source")
@click.argument("target")
@click.option("--flow", help="The flow's name (default: SOURCEENTITY_to_TARGETENTITY).")
@click.option("--dir", "directory", type=click.Path(path_type=Path, file_okay=False),
              help="The integration folder (default: mappings/SOURCECONNECTOR-TARGETCONNECTOR).")
@click.option("--connectors", "connectors_dir", type=click.Path(path_type=Path, file_okay=False),
              default=Path("connectors"), show_default=True, help="Where connector specs live.")
@click.option("-w", "--workspace", "workspace_path", type=click.Path(path_type=Path, dir_okay=False),
              default=lambda: os.environ.get("ML_CONNECTOR_WORKSPACE", "workspace.yaml"),
              show_default="workspace.yaml", help="Resolves connection names (when the file exists).")
def new_mapping(source: str, target: str, flow: str | None, directory: Path | None, connectors_dir: Path,
                workspace_path: Path) -> None:
    """Write a mapping from SOURCE to TARGET (each connection.entity or connector.entity): the target's writable
    fields, mapped from source fields of the same name, the others commented out for you to fill.

    \b
    Example:
      ml-connector new mapping erp.customer crm.organization
    """
    connections, connectors = _project(connectors_dir, workspace_path)
    ends = (_resolve(source, connections, connectors, "SOURCE"), _resolve(target, connections, connectors, "TARGET"))
    name = flow or f"{ends[0].entity}_to_{ends[1].entity}"
    if not NAME.match(name):
        raise click.BadParameter(f"{name!r}: use lowercase letters, digits and _", param_hint="--flow")
    folder = directory or Path("mappings") / f"{ends[0].connector}-{ends[1].connector}"
    path = folder / f"{name}.yaml"
    integration = folder / "integration.yaml"
    if integration.exists():  # the integration's own names for the connections, where it has them
        ends = (_as_declared(ends[0], integration), _as_declared(ends[1], integration))
    _write(path, mapping_spec(*ends, name, path))
    click.echo(f"wrote {path}")
    if integration.exists():
        if _add_flow(integration, path.name):
            click.echo(f"added {path.name} to the flows of {integration}")
        else:
            click.echo(f"add `- {path.name}` to the flows of {integration}, then `ml-connector validate`")
        return
    lines = "\n".join(f"  {end.connection}: {{connector: {end.connector}}}"
                      for end in {e.connection: e for e in ends}.values())
    _write(integration, INTEGRATION_TEMPLATE.format(schema=_schema(integration, "integration"), name=folder.name,
                                                    connections=lines, flow_file=path.name))
    click.echo(f"wrote {integration}; edit them, then `ml-connector validate`")
