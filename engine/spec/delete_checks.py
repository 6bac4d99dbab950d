"""Checks of a flow's `on_delete`: the source tells deletions, the target can delete, and the keys line up."""

from __future__ import annotations

from typing import Any

from ml_connector.spec.checkutil import as_dict, problem
from ml_connector.spec.model import Project, Spec
from ml_connector.spec.problems import SpecProblem


def check_on_delete(project: Project, spec: Spec) -> list[SpecProblem]:
    """`on_delete: clear|delete` needs a source entity with `deletes`; `delete` a target with `write.delete`.

    A deleted-records endpoint names records by the entity's key, so the flow's key must be that field; absence is
    never inferred from a read that `from.params` filters; a flow with `from.each` has no per-record deletes.
    """
    data = spec.data
    action = data.get("on_delete")
    if action not in ("clear", "delete") or spec.name not in project.flow_integration:
        return []
    source, source_name, where = _entity(project, spec, "from")
    problems = []
    if "each" in as_dict(data.get("from")):
        problems.append(problem(spec, ("on_delete",), f"'{action}' is not supported with from.each (a record "
                                                      "read becomes several, each deleted by its own key)"))
    if source is not None:
        deletes = as_dict(source.get("deletes"))
        if not deletes:
            problems.append(problem(spec, ("on_delete",), f"'{action}' needs a source that tells deletions: entity "
                                                          f"'{source_name}' of {where} declares no 'deletes' "
                                                          "(flag, read or absent)"))
        if "read" in deletes and data.get("key") != source.get("key"):
            problems.append(problem(spec, ("key",), f"entity '{source_name}' of {where} names deleted records by "
                                                    f"its key '{source.get('key')}' (deletes.read): with on_delete "
                                                    f"'{action}' the flow's key must be that field"))
        if "absent" in deletes and as_dict(data.get("from")).get("params"):
            problems.append(problem(spec, ("from", "params"), f"entity '{source_name}' of {where} tells deletions "
                                                              "by absence from a full read, which a read filtered "
                                                              "by from.params cannot show; drop from.params or use "
                                                              "on_delete: ignore"))
    target, target_name, where = _entity(project, spec, "to")
    if action == "delete" and target is not None and "delete" not in as_dict(target.get("write")):
        problems.append(problem(spec, ("on_delete",), f"'delete' needs a delete operation: entity '{target_name}' "
                                                      f"of {where} has no write.delete"))
    return problems


def _entity(project: Project, spec: Spec, side: str) -> tuple[dict[str, Any] | None, str, str]:
    """The connector entity at one end of the flow (None when it cannot be resolved: reported elsewhere)."""
    end = as_dict(spec.data.get(side))
    integration = project.integrations[project.flow_integration[spec.name]]
    role = as_dict(as_dict(integration.data.get("connections")).get(end.get("connection")))
    connector_name = role.get("connector")
    connector = project.connectors.get(connector_name) if isinstance(connector_name, str) else None
    name = end.get("entity")
    if connector is None or not isinstance(name, str):
        return None, str(name), ""
    entity = as_dict(connector.data.get("entities")).get(name)
    return (entity if isinstance(entity, dict) else None), name, f"connector '{connector.name}'"
