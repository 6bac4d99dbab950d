"""`ml-connector discover CONNECTION [ENTITY]`: the entities a connection offers, and a draft of an entity's field
declarations from sampled records, for an analyst to paste into the connector spec and edit.

Types are inferred from what the sample holds (a field that is sometimes an integer and sometimes a fraction is a
number; ISO-8601 text is a date or datetime); a field present and non-null in every sampled record is drafted as
required. The entity's key and its `updated` field are drafted as not writable. Custom fields (read through the
entity's catalog) show under their labels, as mappings name them.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import click
import httpx

from ml_connector.commands.options import workspace_option
from ml_connector.config.entity import EntityConfig
from ml_connector.errors import SetupError
from ml_connector.http.reader import EntityReader
from ml_connector.report import table
from ml_connector.sync.runner import Runner
from ml_connector.workspace import Workspace

DATETIME = re.compile(r"^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:?\d{2})?$")
DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


def _type(value: Any) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, Mapping):
        return "object"
    if isinstance(value, list):
        return "array"
    if isinstance(value, str):
        return "datetime" if DATETIME.match(value) else "date" if DATE.match(value) else "string"
    return "any"


def _merge(types: set[str]) -> str:
    """One type for the values a field held: a mix of numbers is a number, a mix of texts is a string."""
    if len(types) == 1:
        return next(iter(types))
    if types == {"integer", "number"}:
        return "number"
    if types and types <= {"date", "datetime", "string"}:
        return "string"
    return "any"


def draft(records: Sequence[Mapping[str, Any]], not_writable: Iterable[str] = ()) -> dict[str, Any]:
    """Field declarations for what ``records`` hold (nested for objects and lists of objects)."""
    fixed = set(not_writable)
    names: dict[str, None] = {}
    for record in records:
        names.update(dict.fromkeys(record))
    fields: dict[str, Any] = {}
    for name in names:
        values = [record.get(name) for record in records]
        present = [value for value in values if value is not None]
        decl: dict[str, Any] = {"type": _merge({_type(value) for value in present})}
        if records and len(present) == len(records):
            decl["required"] = True
        if name in fixed:
            decl["writable"] = False
        nested = [v for v in present if isinstance(v, Mapping)] if decl["type"] == "object" else \
            [item for v in present if isinstance(v, list) for item in v if isinstance(item, Mapping)] \
            if decl["type"] == "array" else []
        if nested:
            decl["fields"] = draft(nested)
        fields[name] = decl
    return fields


PLAIN_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_ .-]*(?<! )$")


def _name(name: str) -> str:
    return name if PLAIN_NAME.match(name) else json.dumps(name)


def _flat(decl: Mapping[str, Any]) -> str:
    parts = [f"type: {decl['type']}"]
    parts += [f"{flag}: {'true' if decl[flag] else 'false'}" for flag in ("required", "writable") if flag in decl]
    return "{" + ", ".join(parts) + "}"


def as_yaml(fields: Mapping[str, Any]) -> str:
    """The declarations as the shipped connectors write them: one flow-style line per field, nesting indented."""

    def lines(block: Mapping[str, Any], indent: str) -> list[str]:
        out: list[str] = []
        for name, decl in block.items():
            if "fields" in decl:
                out.append(f"{indent}{_name(name)}:")
                out.extend(f"{indent}  {key}: {'true' if value is True else 'false' if value is False else value}"
                           for key, value in decl.items() if key != "fields")
                out.append(f"{indent}  fields:")
                out.extend(lines(decl["fields"], indent + "    "))
            else:
                out.append(f"{indent}{_name(name)}: {_flat(decl)}")
        return out

    return "\n".join(["fields:", *lines(fields, "  ")]) + "\n"


async def _sample(runner: Runner, connection: str, name: str, entity: EntityConfig, size: int
                  ) -> list[dict[str, Any]]:
    reader = EntityReader(runner.client(connection), name, entity,
                          runner.catalog(connection, name, entity) if entity.custom_fields is not None else None)
    records: list[dict[str, Any]] = []
    async for page in reader.pages(bulk=False):  # a sample: never a server-side bulk job
        records.extend(page)
        if len(records) >= size:
            break
    return records[:size]


def base_transport() -> httpx.AsyncBaseTransport | None:
    """The network (None: httpx's own); tests put an in-process API here."""
    return None


def sample_entity(workspace: Workspace, connection: str, name: str, size: int) -> list[dict[str, Any]]:
    state = workspace.state()
    try:
        runner = Runner(workspace.project, state, transport=base_transport())
        entity = runner.entity(connection, name)

        async def sample() -> list[dict[str, Any]]:
            try:
                return await _sample(runner, connection, name, entity, size)
            finally:
                await runner.aclose()

        return asyncio.run(sample())
    finally:
        state.close()


@click.command()
@workspace_option
@click.argument("connection")
@click.argument("entity", required=False)
@click.option("--sample", "size", default=50, show_default=True, type=click.IntRange(1, 10_000),
              help="How many records to read for the draft.")
def discover(workspace_path: Path, connection: str, entity: str | None, size: int) -> None:
    """List CONNECTION's entities; with ENTITY, draft its `fields:` declarations from sampled records (to paste into
    the connector spec and edit).

    \b
    Example:
      ml-connector discover erp customer --sample 20
    """
    workspace = Workspace.open(workspace_path)
    known = (workspace.project.workspace.data.get("connections") or {}) if workspace.project.workspace else {}
    if connection not in known:
        raise SetupError(f"the workspace has no connection named {connection!r} "
                         f"(connections: {', '.join(sorted(known)) or 'none'})")
    state = workspace.state()
    try:
        connector = Runner(workspace.project, state).connection(connection).connector
    finally:
        state.close()
    if entity is None:
        rows = [[name, e.key, str(e.read.path.source) if e.read is not None else "-",
                 e.write.strategy if e.write is not None else "-", len(e.fields) if e.fields is not None else "-"]
                for name, e in connector.entities.items()]
        click.echo(table(["entity", "key", "read", "write", "declared fields"], rows))
        return
    if entity not in connector.entities:
        raise click.BadParameter(f"connector {connector.connector} has no entity {entity!r} (entities: "
                                 f"{', '.join(sorted(connector.entities))})", param_hint="ENTITY")
    config = connector.entities[entity]
    records = sample_entity(workspace, connection, entity, size)
    fixed = [f for f in (config.key, config.updated) if f]
    click.echo(f"# {entity}: fields drafted from {len(records)} sampled records of connection {connection}; check "
               "the types, required and writable, and add descriptions")
    click.echo(as_yaml(draft(records, fixed)), nl=False)
