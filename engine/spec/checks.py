"""Semantic checks run after schema validation: cross-file references, cycles, secrets.

Expressions are compiled as each file loads (`engine.spec.typed`). Every check reads the data defensively: a
file that failed its schema is still checked as far as its shape allows, so one run reports as much as possible.
Flow checks live in `flow_checks`, workspace checks in `workspace_checks`; this module runs them all and checks
connectors and integrations.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from ml_connector.spec.channel_checks import check_connector_channels
from ml_connector.spec.checkutil import as_dict, get_path, problem, unknown
from ml_connector.spec.connector_names import check_connector_names
from ml_connector.spec.field_checks import check_connector_fields
from ml_connector.spec.flow_checks import check_cycles, check_flow, schedule_seconds
from ml_connector.spec.keyed_checks import check_keyed_entities
from ml_connector.spec.model import Project, Spec
from ml_connector.spec.paging_checks import check_body_paging
from ml_connector.spec.problems import JsonPath, SpecProblem
from ml_connector.spec.step_checks import check_write_steps
from ml_connector.spec.workspace_checks import check_workspace

__all__ = [
    "check_connector",
    "check_cycles",
    "check_flow",
    "check_integration",
    "check_workspace",
    "run_checks",
    "schedule_seconds",
]


def run_checks(project: Project) -> list[SpecProblem]:
    """All semantic checks over a loaded project."""
    problems: list[SpecProblem] = []
    for connector in project.connectors.values():
        if not connector.checked_alone:  # passed them at load (so it is in the spec cache): not checked twice
            problems += check_connector(connector)
    for integration in project.integrations.values():
        problems += check_integration(project, integration)
    for flow in project.flows.values():
        problems += check_flow(project, flow)
    problems += check_cycles(project)
    if project.workspace is not None:
        problems += check_workspace(project, project.workspace)
    return problems


def check_connector(spec: Spec) -> list[SpecProblem]:
    """Paginator and quota names exist; search_lag has an incremental read to lean on; a GET search has no body.

    (Expressions are compiled when the file loads, see `engine.spec.typed`.)
    """
    data = spec.data
    problems = []
    for path, name in _connector_refs(data, "paginator"):
        if name not in as_dict(data.get("paginators")):
            problems.append(problem(spec, path, unknown("paginator", name, data.get("paginators"))))
    for path, name in _connector_refs(data, "quota"):
        if name not in as_dict(data.get("quotas")):
            problems.append(problem(spec, path, unknown("quota", name, data.get("quotas"))))
    quotas = as_dict(data.get("quotas"))
    for name, pool in quotas.items():
        within = as_dict(pool).get("within")
        if within is None:
            continue
        path = ("quotas", name, "within")
        if within == name:
            problems.append(problem(spec, path, "a pool cannot be within itself"))
        elif within not in quotas:
            problems.append(problem(spec, path, unknown("quota", within, quotas)))
        elif as_dict(quotas[within]).get("within") is not None:
            problems.append(problem(spec, path, f"pool '{within}' is itself within another: one level only"))
    for entity_name, entity in as_dict(data.get("entities")).items():
        write, read = as_dict(as_dict(entity).get("write")), as_dict(as_dict(entity).get("read"))
        if "search_lag" in write and not read.get("incremental"):
            problems.append(problem(spec, ("entities", entity_name, "write", "search_lag"),
                                    "needs read.incremental: the records changed within the lag are read by it"))
        search = as_dict(write.get("search"))
        if "body" in search and search.get("method", "GET") == "GET":
            problems.append(problem(spec, ("entities", entity_name, "write", "search", "body"),
                                    "a GET search sends no body (use method: POST)"))
    problems += check_body_paging(spec)
    problems += check_keyed_entities(spec)
    problems += check_write_steps(spec)
    problems += check_connector_fields(spec)
    problems += check_connector_names(spec)
    problems += check_connector_channels(spec)
    return problems


def _connector_refs(data: dict[str, Any], kind: str) -> Iterator[tuple[JsonPath, str]]:
    """(path, name) of every paginator or quota reference in a connector."""
    for entity_name, entity in as_dict(data.get("entities")).items():
        base: JsonPath = ("entities", entity_name)
        entity = as_dict(entity)
        if kind == "paginator":
            candidates = [(*base, "read"), (*base, "custom_fields", "catalog"), (*base, "deletes", "read")]
            candidates += [(*base, "expand", name) for name in as_dict(entity.get("expand"))]
        else:  # every operation may name a pool
            candidates = [(*base, op) for op in ("read", "get")] + [(*base, "custom_fields", "catalog")]
            candidates.append((*base, "deletes", "read"))
            candidates += [(*base, "expand", name) for name in as_dict(entity.get("expand"))]
            candidates += [(*base, "write", op) for op in ("search", "create", "update", "delete")]
        for path in candidates:
            value = as_dict(get_path(data, path)).get(kind)
            if isinstance(value, str):
                yield (*path, kind), value


def check_integration(project: Project, spec: Spec) -> list[SpecProblem]:
    """Each connection role names a loaded connector."""
    problems = []
    for role, connection in as_dict(spec.data.get("connections")).items():
        connector = as_dict(connection).get("connector")
        if isinstance(connector, str) and connector not in project.connectors:
            problems.append(
                problem(
                    spec,
                    ("connections", role, "connector"),
                    unknown("connector", connector, project.connectors),
                )
            )
    return problems
