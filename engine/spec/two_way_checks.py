"""Checks of two-way flows: a flow's `reverse` runs the other way and names it back (see engine.sync.echo)."""

from __future__ import annotations

from ml_connector.spec.checkutil import as_dict, problem, unknown
from ml_connector.spec.model import Project, Spec
from ml_connector.spec.problems import SpecProblem


def check_reverse(project: Project, spec: Spec) -> list[SpecProblem]:
    """`reverse` names another flow, from this flow's target to its source, that names this flow as its own
    `reverse`. Ends compare by connector and entity (connection names belong to each flow's integration)."""
    name = spec.data.get("reverse")
    if not isinstance(name, str):
        return []
    where = ("reverse",)
    if name == spec.name:
        return [problem(spec, where, f"flow '{name}' cannot be its own reverse")]
    other = project.flows.get(name)
    if other is None:
        return [problem(spec, where, unknown("flow", name, project.flows))]
    mine = {side: _end(project, spec, side) for side in ("from", "to")}
    theirs = {side: _end(project, other, side) for side in ("from", "to")}
    if theirs["from"] != mine["to"] or theirs["to"] != mine["from"]:
        return [problem(spec, where, f"flow '{name}' must run the other way: from {_text(mine['to'])} to "
                                     f"{_text(mine['from'])} (it runs from {_text(theirs['from'])} to "
                                     f"{_text(theirs['to'])})")]
    if other.data.get("reverse") != spec.name:
        return [problem(spec, where, f"flow '{name}' must name this flow back (reverse: {spec.name})")]
    return []


def _end(project: Project, spec: Spec, side: str) -> tuple[object, object]:
    """(connector, entity) of a flow's `from` or `to`; the connection name where no integration resolves it."""
    end = as_dict(spec.data.get(side))
    connection = end.get("connection")
    integration = project.integrations.get(project.flow_integration.get(spec.name, ""))
    if integration is not None and isinstance(connection, str):
        declared = as_dict(as_dict(integration.data.get("connections")).get(connection))
        connection = declared.get("connector", connection)
    return connection, end.get("entity")


def _text(end: tuple[object, object]) -> str:
    return f"{end[0]}.{end[1]}"
