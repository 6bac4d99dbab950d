"""Semantic checks of flows: schedule, depends_on and lookups, connections, examples, cycles."""

from __future__ import annotations

import re
from typing import Any

from ml_connector.spec.channel_checks import check_trigger
from ml_connector.spec.checkutil import as_dict, as_list, listing, problem, unknown
from ml_connector.spec.delete_checks import check_on_delete
from ml_connector.spec.ensure_checks import check_ensure_fields
from ml_connector.spec.expressions import jinja_sources, lookup_calls
from ml_connector.spec.field_checks import check_mapping_fields
from ml_connector.spec.graph import find_cycles
from ml_connector.spec.keyed_checks import check_keyed_flow
from ml_connector.spec.model import Project, Spec
from ml_connector.spec.problems import JsonPath, SpecProblem
from ml_connector.spec.two_way_checks import check_reverse

SCHEDULE = re.compile(r"^every ([1-9][0-9]*)([smhd])$")
MATCHED_STRATEGIES = ("search_then_write", "upsert")
_SCHEDULE_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def schedule_seconds(schedule: str) -> int | None:
    """Seconds between runs for `every <n>s|m|h|d`, or None if `schedule` is not of that form."""
    found = SCHEDULE.match(schedule)
    return int(found.group(1)) * _SCHEDULE_SECONDS[found.group(2)] if found else None


def check_flow(project: Project, spec: Spec) -> list[SpecProblem]:
    """Schedule, depends_on, lookups, connections, entities and match are consistent.

    (Expressions are compiled when the file loads, see `engine.spec.typed`.)
    """
    data = spec.data
    problems = []
    for where, expr in spec.expressions.items():
        for path, text in jinja_sources(where, expr):
            problems += _lookup_problems(project, spec, path, text)
    for key in ("schedule", "reconcile"):
        schedule = data.get(key)
        if isinstance(schedule, str) and schedule_seconds(schedule) is None:
            problems.append(
                problem(spec, (key,), f"'{schedule}' is not a schedule: write 'every <n>s|m|h|d', e.g. 'every 15m'")
            )
    for index, name in enumerate(as_list(data.get("depends_on"))):
        if isinstance(name, str) and name not in project.flows:
            problems.append(problem(spec, ("depends_on", index), unknown("flow", name, project.flows)))
    problems += check_on_delete(project, spec)
    problems += check_keyed_flow(project, spec)
    problems += check_trigger(project, spec)
    problems += _example_problems(project, spec)
    problems += check_reverse(project, spec)
    if spec.name in project.flow_integration:
        problems += _connection_problems(project, spec)
        problems += check_mapping_fields(project, spec)
    return problems


def _example_problems(project: Project, spec: Spec) -> list[SpecProblem]:
    """An example's `out` is a list exactly when the flow has `from.each`; its `lookups` name known flows."""
    problems = []
    each = "each" in as_dict(spec.data.get("from"))
    for index, example in enumerate(as_list(spec.data.get("examples"))):
        example = as_dict(example)
        out = example.get("out")
        if each and isinstance(out, dict):
            problems.append(
                problem(
                    spec,
                    ("examples", index, "out"),
                    "the flow has from.each: 'out' is a list with one payload (or null) per item",
                )
            )
        elif not each and isinstance(out, list):
            problems.append(
                problem(
                    spec,
                    ("examples", index, "out"),
                    "the flow has no from.each: 'out' is one payload (or null), not a list",
                )
            )
        for flow in as_dict(example.get("lookups")):
            if flow not in project.flows:
                problems.append(
                    problem(spec, ("examples", index, "lookups", flow), unknown("flow", flow, project.flows))
                )
    return problems


def _lookup_problems(project: Project, spec: Spec, path: JsonPath, template: str) -> list[SpecProblem]:
    """A lookup names a known flow, and one this flow depends on: run order and deferral retries follow depends_on."""
    depends = as_list(spec.data.get("depends_on"))
    problems = []
    for function, flow in lookup_calls(template):
        if flow not in project.flows:
            problems.append(problem(spec, path, f"{function}() names {unknown('flow', flow, project.flows)}"))
        elif flow not in depends and flow != spec.name:
            problems.append(problem(spec, path, f"{function}() reads flow '{flow}', which is not in depends_on: "
                                    "add it there, so that flow runs first and records waiting for it are retried "
                                    "after it"))
    return problems


def _connection_problems(project: Project, spec: Spec) -> list[SpecProblem]:
    """from/to connections are declared by the integration, entities exist and can be read / written."""
    integration = project.integrations[project.flow_integration[spec.name]]
    roles = as_dict(integration.data.get("connections"))
    problems: list[SpecProblem] = []
    for side in ("from", "to"):
        end = as_dict(spec.data.get(side))
        role, entity_name = end.get("connection"), end.get("entity")
        if not isinstance(role, str):
            continue
        if role not in roles:
            problems.append(
                problem(
                    spec,
                    (side, "connection"),
                    f"connection '{role}' is not declared by integration '{integration.name}'"
                    f" ({listing(roles)})",
                )
            )
            continue
        connector_name = as_dict(roles[role]).get("connector")
        connector = project.connectors.get(connector_name) if isinstance(connector_name, str) else None
        if connector is None or not isinstance(entity_name, str):
            continue  # an unknown connector is reported on the integration
        entities = as_dict(connector.data.get("entities"))
        if entity_name not in entities:
            problems.append(
                problem(
                    spec,
                    (side, "entity"),
                    f"connector '{connector.name}' has no entity '{entity_name}' ({listing(entities)})",
                )
            )
            continue
        entity = as_dict(entities[entity_name])
        problems += (
            _source_problems(spec, connector, entity_name, entity)
            if side == "from"
            else _target_problems(spec, connector, entity_name, entity)
            + check_ensure_fields(spec, connector, entity_name, entity)
        )
    return problems


def _source_problems(spec: Spec, connector: Spec, name: str, entity: dict[str, Any]) -> list[SpecProblem]:
    problems = []
    if "read" not in entity:
        problems.append(
            problem(
                spec,
                ("from", "entity"),
                f"entity '{name}' of connector '{connector.name}' cannot be read (no 'read')",
            )
        )
    expand = as_dict(entity.get("expand"))
    for index, child in enumerate(as_list(as_dict(spec.data.get("from")).get("expand"))):
        if isinstance(child, str) and child not in expand:
            problems.append(
                problem(
                    spec,
                    ("from", "expand", index),
                    f"entity '{name}' of connector '{connector.name}' has no expand '{child}' "
                    f"({listing(expand)})",
                )
            )
    return problems


def _target_problems(spec: Spec, connector: Spec, name: str, entity: dict[str, Any]) -> list[SpecProblem]:
    write = entity.get("write")
    if not isinstance(write, dict):
        return [
            problem(
                spec,
                ("to", "entity"),
                f"entity '{name}' of connector '{connector.name}' cannot be written (no 'write')",
            )
        ]
    strategy = write.get("strategy")
    match = spec.data.get("match")
    if strategy in MATCHED_STRATEGIES and match is None and "target_id" not in spec.data:
        return [
            problem(
                spec,
                ("match",),
                f"required: entity '{name}' of connector '{connector.name}' is "
                f"written with strategy {strategy}",
                line=spec.line_of(("to",)),
            )
        ]
    target = as_dict(match).get("target")
    fields = as_dict(spec.data.get("fields"))
    if (
        isinstance(target, str)
        and fields
        and not any(target == f or target.startswith(f"{f}.") for f in fields)
    ):
        return [problem(spec, ("match", "target"), f"'{target}' is not one of the mapped fields")]
    return []


def check_cycles(project: Project) -> list[SpecProblem]:
    """A depends_on cycle, once per cycle, on the depends_on line of its first flow."""
    depends = {
        name: [d for d in as_list(spec.data.get("depends_on")) if isinstance(d, str)]
        for name, spec in project.flows.items()
    }
    problems = []
    for cycle in find_cycles(list(project.flows), depends):
        spec = project.flows[cycle[0]]
        problems.append(problem(spec, ("depends_on",), "dependency cycle: " + " -> ".join(cycle)))
    return problems
