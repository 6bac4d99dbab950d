"""Small helpers shared by the semantic checks: defensive data access and problem wording."""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from typing import Any

from ml_connector.spec.model import Spec
from ml_connector.spec.problems import JsonPath, SpecProblem, field_name


def problem(spec: Spec, path: JsonPath, message: str, line: int | None = None) -> SpecProblem:
    """A problem at `path` of `spec` (its line unless `line` is given)."""
    return SpecProblem(
        str(spec.path), spec.line_of(path) if line is None else line, field_name(path), message
    )


def unknown(kind: str, name: str, known: Any) -> str:
    """`unknown <kind> '<name>' (known: …)` for a reference to nothing."""
    names = as_dict(known)
    if not names and kind in ("connector", "flow"):
        return f"unknown {kind} '{name}' (no {kind} specs loaded)"
    return f"unknown {kind} '{name}' ({listing(names)})"


def did_you_mean(name: str, known: Iterable[Any]) -> str:
    """` (did you mean 'x'?)` for a close name, else the list of known names."""
    close = difflib.get_close_matches(str(name), [str(k) for k in known], n=1, cutoff=0.6)
    if close:
        return f" (did you mean '{close[0]}'?)"
    return f" ({listing(known)})"


def listing(known: Iterable[Any]) -> str:
    """`known: a, b` or `none defined`."""
    names = [str(name) for name in known]
    return "known: " + ", ".join(names) if names else "none defined"


def as_dict(value: Any) -> dict[Any, Any]:
    """`value` if it is a dict, else an empty one."""
    return value if isinstance(value, dict) else {}


def as_list(value: Any) -> list[Any]:
    """`value` if it is a list, else an empty one."""
    return value if isinstance(value, list) else []


def get_path(data: Any, path: JsonPath) -> Any:
    """The value at `path` through nested dicts, or None."""
    for part in path:
        data = as_dict(data).get(part)
    return data


def value_at(data: Any, path: JsonPath) -> Any:
    """The value at `path` through dicts and lists; LookupError where there is none (a None value is a value)."""
    for part in path:
        if isinstance(data, list) and isinstance(part, int) and 0 <= part < len(data):
            data = data[part]
            continue
        if not isinstance(data, dict) or part not in data:
            raise LookupError(f"no value at {list(path)}")
        data = data[part]
    return data
