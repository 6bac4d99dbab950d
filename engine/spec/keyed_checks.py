"""Checks of keyed reads: an entity whose `read.keys` says it cannot be listed is read only by a flow whose
`from.keys` names the flow holding the keys, after that flow, and never listed by a writer."""

from __future__ import annotations

from ml_connector.spec.checkutil import as_dict, as_list, problem
from ml_connector.spec.delete_checks import _entity as flow_entity
from ml_connector.spec.model import Project, Spec
from ml_connector.spec.problems import SpecProblem

LISTING_WRITES = ("prefetch", "search_lag")  # a writer lists its target entity for these (http/matching.py)


def check_keyed_flow(project: Project, spec: Spec) -> list[SpecProblem]:
    """`read.keys` and `from.keys` go together; the keys flow is of the same integration, in `depends_on`; a keyed
    read infers no deletes (a key set that shrank is not a deletion)."""
    if spec.name not in project.flow_integration:
        return []
    data = spec.data
    keys = as_dict(data.get("from")).get("keys")
    entity, name, where = flow_entity(project, spec, "from")
    problems = []
    if entity is not None:
        keyed = "keys" in as_dict(entity.get("read"))
        if keyed and keys is None:
            problems.append(problem(spec, ("from", "entity"), f"entity '{name}' of {where} is read by keys "
                                                              "(read.keys): the flow needs from.keys (the flow "
                                                              "whose id map holds them)"))
        elif keys is not None and not keyed:
            problems.append(problem(spec, ("from", "keys"), f"entity '{name}' of {where} has no read.keys: it is "
                                                            "listed, not read by keys"))
    if not isinstance(keys, dict):
        return problems
    flow = keys.get("flow")
    integration = project.flow_integration[spec.name]
    siblings = [other for other, owner in project.flow_integration.items() if owner == integration]
    if isinstance(flow, str) and flow not in siblings:
        problems.append(problem(spec, ("from", "keys", "flow"), f"'{flow}' is not a flow of integration "
                                                                f"'{integration}' (its flows: {', '.join(siblings)})"))
    elif isinstance(flow, str) and flow not in as_list(data.get("depends_on")):
        problems.append(problem(spec, ("from", "keys", "flow"), f"the keys come from flow '{flow}': list it in "
                                                                "depends_on (it must run first)"))
    action = data.get("on_delete")
    if action not in (None, "ignore"):
        problems.append(problem(spec, ("on_delete",), f"'{action}' is not supported with from.keys: a keyed read "
                                                      "sees only the keys it asks for (a key set that shrank is not "
                                                      "a deletion); use on_delete: ignore"))
    return problems


def check_keyed_entities(spec: Spec) -> list[SpecProblem]:
    """A keyed entity cannot be listed, so its writer must not list it (`write.prefetch`, `write.search_lag`)."""
    problems = []
    for name, entity in as_dict(spec.data.get("entities")).items():
        entity = as_dict(entity)
        if "keys" not in as_dict(entity.get("read")):
            continue
        write = as_dict(entity.get("write"))
        problems += [problem(spec, ("entities", name, "write", key), "the entity is read by keys (read.keys) and "
                                                                     f"cannot be listed; drop write.{key}")
                     for key in LISTING_WRITES if key in write]
    return problems
