"""Checks of a write's follow-up steps (`write.then`) that the schema cannot see."""

from __future__ import annotations

from ml_connector.spec.checkutil import as_dict, as_list, problem, unknown
from ml_connector.spec.model import Spec
from ml_connector.spec.problems import SpecProblem


def check_write_steps(spec: Spec) -> list[SpecProblem]:
    """Step names are unique (a parked record names the step it needs); `expect` has a `get` to read back with;
    a step's quota pool exists."""
    problems = []
    quotas = as_dict(spec.data.get("quotas"))
    for entity_name, entity in as_dict(spec.data.get("entities")).items():
        entity = as_dict(entity)
        seen: set[str] = set()
        for index, step in enumerate(as_list(as_dict(entity.get("write")).get("then"))):
            step = as_dict(step)
            path = ("entities", entity_name, "write", "then", index)
            name = step.get("name")
            if isinstance(name, str) and name in seen:
                problems.append(problem(spec, (*path, "name"), f"step name '{name}' is used twice: a parked record "
                                                               "names the step it still needs"))
            seen.add(str(name))
            if "expect" in step and not entity.get("get"):
                problems.append(problem(spec, (*path, "expect"), "needs the entity's get operation: a step whose "
                                                                 "answer is lost is read back by it"))
            quota = step.get("quota")
            if isinstance(quota, str) and quota not in quotas:
                problems.append(problem(spec, (*path, "quota"), unknown("quota", quota, quotas)))
    return problems
