"""Checks of a flow's `ensure_fields`: the target can create custom fields, and the flow writes each one listed."""

from __future__ import annotations

from typing import Any

from ml_connector.spec.checkutil import as_dict, problem
from ml_connector.spec.model import Spec
from ml_connector.spec.problems import SpecProblem


def check_ensure_fields(spec: Spec, connector: Spec, name: str, entity: dict[str, Any]) -> list[SpecProblem]:
    """`ensure_fields` of a flow writing entity `name` of `connector`: creatable, and written by the flow."""
    wanted = as_dict(spec.data.get("ensure_fields"))
    if not wanted:
        return []
    custom = as_dict(entity.get("custom_fields"))
    where = f"entity '{name}' of connector '{connector.name}'"
    if not custom:
        return [problem(spec, ("ensure_fields",), f"{where} has no custom_fields: only custom fields can be ensured")]
    if "create" not in custom:
        return [problem(spec, ("ensure_fields",),
                        f"{where} declares no custom_fields.create: it cannot create fields")]
    prefix = f"{custom.get('object')}."
    written = [path for path in as_dict(spec.data.get("fields")) if isinstance(path, str) and path.startswith(prefix)]
    return [problem(spec, ("ensure_fields", label),
                    f"the flow writes no field '{prefix}{label}' (it writes: {', '.join(written) or 'none'})")
            for label in wanted if f"{prefix}{label}" not in written]
