"""Semantic checks of a workspace: connectors and auth methods exist, settings and secrets fit, secrets are
references (never clear text), and the integrations' connection roles are provided."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from ml_connector.spec.checkutil import as_dict, as_list, did_you_mean, listing, problem, unknown
from ml_connector.spec.expressions import strings
from ml_connector.spec.model import Project, Spec
from ml_connector.spec.problems import JsonPath, SpecProblem

SECRET_REFERENCE = re.compile(r"^(env|store):[A-Za-z0-9_][A-Za-z0-9_.:/-]*$")


def check_workspace(project: Project, spec: Spec) -> list[SpecProblem]:
    """Connections name known connectors and auth methods, give what they need, and hold secret references."""
    problems: list[SpecProblem] = _state_problems(spec)
    connections = as_dict(spec.data.get("connections"))
    for name, connection in connections.items():
        connection = as_dict(connection)
        base: JsonPath = ("connections", name)
        problems += _secret_reference_problems(spec, base, connection)
        connector_name = connection.get("connector")
        if not isinstance(connector_name, str):
            continue
        connector = project.connectors.get(connector_name)
        if connector is None:
            problems.append(
                problem(spec, (*base, "connector"), unknown("connector", connector_name, project.connectors))
            )
            continue
        problems += _connection_needs(spec, base, connection, connector)
    for integration in _integrations_in_scope(project, spec):
        for role, needed in as_dict(integration.data.get("connections")).items():
            wanted = as_dict(needed).get("connector")
            given = as_dict(connections.get(role)).get("connector") if role in connections else None
            if role not in connections:
                problems.append(
                    problem(
                        spec,
                        ("connections",),
                        f"integration '{integration.name}' needs connection '{role}' (connector '{wanted}')",
                    )
                )
            elif isinstance(wanted, str) and isinstance(given, str) and given != wanted:
                problems.append(
                    problem(
                        spec,
                        ("connections", role, "connector"),
                        f"integration '{integration.name}' needs connector '{wanted}' for "
                        f"connection '{role}', not '{given}'",
                    )
                )
    return problems


def _state_problems(spec: Spec) -> list[SpecProblem]:
    """A PostgreSQL state's password is an env:NAME reference, never clear text, never in the URL (the messages
    never repeat it; ``store:`` cannot hold it: the store is in that database)."""
    state = spec.data.get("state")
    if not isinstance(state, dict):
        return []
    problems = []
    url = state.get("postgresql")
    if isinstance(url, str):
        try:
            has_password = urlsplit(url).password is not None
        except ValueError:
            has_password = False
        if has_password:
            problems.append(problem(spec, ("state", "postgresql"), "the URL holds a password: leave it out and "
                                    "write it as password: env:NAME"))
    password = state.get("password")
    if isinstance(password, str) and not (SECRET_REFERENCE.match(password) and password.startswith("env:")):
        what = "is a malformed reference" if password.startswith(("env:", "store:")) else "is written in clear text"
        problems.append(problem(spec, ("state", "password"), f"the state's password {what}: write env:NAME"))
    return problems


def _secret_reference_problems(spec: Spec, base: JsonPath, connection: dict[str, Any]) -> list[SpecProblem]:
    """Secrets must be env:NAME / store:NAME references; the message never repeats the value."""
    problems = []
    for name, value in as_dict(connection.get("secrets")).items():
        if not isinstance(value, str) or SECRET_REFERENCE.match(value):
            continue
        malformed = value.startswith(("env:", "store:"))
        what = "is a malformed reference" if malformed else "is written in clear text"
        problems.append(
            problem(spec, (*base, "secrets", name), f"secret '{name}' {what}: write env:NAME or store:NAME")
        )
    return problems


def _connection_needs(
    spec: Spec, base: JsonPath, connection: dict[str, Any], connector: Spec
) -> list[SpecProblem]:
    """Auth method exists; settings and secrets are declared by the connector, and required ones given."""
    problems = []
    methods = as_dict(connector.data.get("auth"))
    auth = connection.get("auth", next(iter(methods), None))
    if isinstance(auth, str) and auth not in methods:
        problems.append(
            problem(
                spec,
                (*base, "auth"),
                f"connector '{connector.name}' has no auth method '{auth}' ({listing(methods)})",
            )
        )
    declared = as_dict(connector.data.get("connection"))
    for kind, singular in (("settings", "setting"), ("secrets", "secret")):
        known = as_dict(declared.get(kind))
        given = as_dict(connection.get(kind))
        for name in given:
            if name not in known:
                problems.append(
                    problem(
                        spec,
                        (*base, kind, name),
                        f"connector '{connector.name}' has no {singular} '{name}'"
                        + did_you_mean(name, known),
                    )
                )
        for name, meta in known.items():
            meta = as_dict(meta)
            if meta.get("required") is True and "default" not in meta and name not in given:
                problems.append(
                    problem(
                        spec,
                        (*base, kind) if kind in connection else base,
                        f"missing required {singular} '{name}' of connector '{connector.name}'",
                    )
                )
    method = methods.get(auth) if isinstance(auth, str) else None
    given_secrets = as_dict(connection.get("secrets"))
    for name in sorted(_secrets_used(method)):
        if name in as_dict(declared.get("secrets")) and name not in given_secrets:
            problems.append(
                problem(
                    spec,
                    (*base, "secrets") if "secrets" in connection else base,
                    f"auth method '{auth}' uses secret '{name}', which is not given",
                )
            )
    return problems


def _secrets_used(method: Any) -> set[str]:
    """Names `x` of every `secrets.x` an auth method's templates use."""
    used: set[str] = set()
    for _, text in strings(method, ()):
        used.update(re.findall(r"\bsecrets\.([A-Za-z_][A-Za-z0-9_]*)", text))
    return used


def _integrations_in_scope(project: Project, spec: Spec) -> list[Spec]:
    """The integrations the workspace names (all loaded ones when it names none)."""
    entries = as_list(spec.data.get("integrations"))
    if not entries:
        return list(project.integrations.values())
    roots = {(spec.path.parent / entry).resolve() for entry in entries if isinstance(entry, str)}
    return [i for i in project.integrations.values() if _within(i.path.resolve(), roots)]


def _within(path: Path, roots: set[Path]) -> bool:
    return path in roots or path.parent in roots
