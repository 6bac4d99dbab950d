"""Finding spec files, loading and classifying them, and assembling a checked Project."""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from ml_connector.spec.cache import SpecCache
from ml_connector.spec.cascades import follows_from_unreadable, named_in
from ml_connector.spec.checks import check_connector, run_checks
from ml_connector.spec.context import context_files, is_flow_or_broken
from ml_connector.spec.model import Project, Spec, SpecKind
from ml_connector.spec.problems import SpecError, SpecProblem, field_name, sort_problems
from ml_connector.spec.schemas import validate_document
from ml_connector.spec.typed import retype_spec, type_spec
from ml_connector.spec.yamlload import DEFAULT_LIMITS, YamlLimits, parse_yaml, read_spec_text

YAML_SUFFIXES = (".yaml", ".yml")
#: Top-level key -> kind; checked in this order (an integration also has `connections`).
KIND_KEYS: tuple[tuple[str, SpecKind], ...] = (
    ("connector", "connector"),
    ("flow", "mapping"),
    ("integration", "integration"),
    ("connections", "workspace"),
)


def discover(paths: Iterable[Path]) -> list[Path]:
    """Spec files under `paths`: files as given, directories searched recursively for *.yaml / *.yml.

    Hidden files and directories are skipped; paths that do not exist are left out.
    """
    found: list[Path] = []
    for path in paths:
        if path.is_file():
            found.append(path)
        elif path.is_dir():
            found += sorted(
                p
                for p in path.rglob("*")
                if p.suffix in YAML_SUFFIXES
                and p.is_file()
                and not any(part.startswith(".") for part in p.relative_to(path).parts)
            )
    return _unique(found)


def load_specs(
    paths: Iterable[Path], workspace: Path | None = None, limits: YamlLimits = DEFAULT_LIMITS
) -> tuple[Project, list[SpecProblem]]:
    """Load and check every spec under `paths` (and a workspace with its connectors and integrations).

    Integrations' `flows` are loaded from beside them; a flow that no integration claims is still checked.
    Every file is read within `limits` (size, expanded nodes, depth).
    """
    return _Loader(limits).load(list(paths), workspace)


def load_workspace(path: Path) -> Project:
    """Load a workspace with the connector directories and integrations it names; SpecError on any problem."""
    project, problems = load_specs([], workspace=path)
    if problems:
        raise SpecError(problems)
    return project


class _Loader:
    """One load: reads each file once, keeps problems, and builds the Project."""

    def __init__(self, limits: YamlLimits) -> None:
        self.limits = limits
        self.cache = SpecCache.default()
        self.specs: dict[Path, Spec | None] = {}
        self.files: list[Path] = []
        self.problems: list[SpecProblem] = []
        self.unreadable: set[tuple[str, str]] = set()  # (kind, name) of specs whose YAML did not load
        self.unlisted: set[Path] = set()  # files in an integration folder its flows do not list

    def load(self, paths: list[Path], workspace_path: Path | None) -> tuple[Project, list[SpecProblem]]:
        files = self._existing(paths)
        workspace = None
        if workspace_path is not None:
            workspace = self._workspace(workspace_path)
            if workspace is not None:
                files += self._workspace_files(workspace)
        else:  # one file or folder is checked with what it refers to: its integration and the connectors
            files += discover(context_files(paths, self.limits))
        loaded = [spec for spec in (self.read(path) for path in _unique(files)) if spec is not None]
        workspace = workspace or self._single_workspace(loaded)
        connectors = self._by_name([s for s in loaded if s.kind == "connector"])
        integrations = self._by_name([s for s in loaded if s.kind == "integration"])
        flows, flow_integration = self._flows(integrations, [s for s in loaded if s.kind == "mapping"])
        project = Project(connectors, integrations, flows, flow_integration, workspace, list(self.files))
        checked = [p for p in run_checks(project) if not follows_from_unreadable(p, self.unreadable)]
        return project, sort_problems([*self.problems, *checked])

    def read(self, path: Path) -> Spec | None:
        """Parse, classify and schema-check one file (once); None if it is not a usable spec."""
        key = path.resolve()
        if key in self.specs:
            return self.specs[key]
        self.specs[key] = None
        self.files.append(path)
        try:
            text = read_spec_text(path, self.limits)
            cached = self.cache.get(text, self.limits)
            data, source = (cached.data, cached.source) if cached else parse_yaml(text, str(path), self.limits)
        except SpecError as error:
            self.problems += error.problems
            self.unreadable |= named_in(path, self.limits)
            return None
        self.problems += source.problems
        kind = _classify(data)
        if kind is None:
            keys = ", ".join(k for k, _ in KIND_KEYS)
            self.problems.append(
                SpecProblem(
                    str(path),
                    source.line_of(()),
                    "(root)",
                    "empty file" if data is None else f"not a spec file: expected a top-level key {keys}",
                )
            )
            return None
        spec = Spec(kind, _name(kind, data, path), path, data, source)
        if cached is not None:  # this very text loaded and checked without a problem before (spec/cache.py)
            self.problems += retype_spec(spec, cached.normalised, cached.expressions)
            spec.checked_alone = kind == "connector"
        else:
            invalid = validate_document(kind, data, source, str(path))
            problems = invalid + type_spec(spec, valid=not invalid and not source.problems)
            if kind == "connector" and not problems and not source.problems:
                problems += check_connector(spec)  # a connector's own checks need no other file: cached with it
                spec.checked_alone = True
            if not problems and not source.problems:
                self.cache.put(text, self.limits, spec)
            self.problems += problems
        self.specs[key] = spec
        return spec

    def _existing(self, paths: list[Path]) -> list[Path]:
        for path in paths:
            if not path.exists():
                self.problems.append(SpecProblem(str(path), 1, "(root)", "no such file or directory"))
        return discover(paths)

    def _workspace(self, path: Path) -> Spec | None:
        if not path.is_file():
            self.problems.append(SpecProblem(str(path), 1, "(root)", "no such file"))
            return None
        spec = self.read(path)
        if spec is not None and spec.kind != "workspace":
            self.problems.append(
                SpecProblem(
                    str(path), spec.line_of(()), "(root)", f"not a workspace file (it is a {spec.kind} spec)"
                )
            )
            return None
        return spec

    def _workspace_files(self, workspace: Spec) -> list[Path]:
        """Connector directories (default `connectors/` beside it) and integrations a workspace names."""
        base = workspace.path.parent
        files: list[Path] = []
        connector_dirs = workspace.data.get("connectors")
        if not isinstance(connector_dirs, list):
            connector_dirs = ["connectors"] if (base / "connectors").is_dir() else []
        for key, entries in (
            ("connectors", connector_dirs),
            ("integrations", workspace.data.get("integrations")),
        ):
            for index, entry in enumerate(entries if isinstance(entries, list) else []):
                if not isinstance(entry, str):
                    continue
                target = _join(base, entry)
                if not target.exists():
                    self.problems.append(
                        SpecProblem(
                            str(workspace.path),
                            workspace.line_of((key, index)),
                            field_name((key, index)),
                            f"'{entry}' does not exist",
                        )
                    )
                elif key == "integrations" and target.is_dir():
                    files += self._integration_files(workspace, index, entry, target)
                else:
                    files += discover([target])
        return files

    def _integration_files(self, workspace: Spec, index: int, entry: str, directory: Path) -> list[Path]:
        """The integration file(s) inside a directory a workspace names."""
        found = [
            path
            for path in discover([directory])
            if path.parent.resolve() == directory.resolve()
            and (spec := self.read(path)) is not None
            and spec.kind == "integration"
        ]
        if not found:
            self.problems.append(
                SpecProblem(
                    str(workspace.path),
                    workspace.line_of(("integrations", index)),
                    field_name(("integrations", index)),
                    f"'{entry}' holds no integration file",
                )
            )
        return found

    def _single_workspace(self, loaded: list[Spec]) -> Spec | None:
        workspaces = [spec for spec in loaded if spec.kind == "workspace"]
        for extra in workspaces[1:]:
            self.problems.append(
                SpecProblem(
                    str(extra.path),
                    extra.line_of(()),
                    "(root)",
                    f"a second workspace file (the first is {workspaces[0].path})",
                )
            )
        return workspaces[0] if workspaces else None

    def _by_name(self, specs: list[Spec]) -> dict[str, Spec]:
        named: dict[str, Spec] = {}
        for spec in specs:
            if spec.name in named:
                key = "connector" if spec.kind == "connector" else "integration"
                self.problems.append(
                    SpecProblem(
                        str(spec.path),
                        spec.line_of((key,)),
                        key,
                        f"{spec.kind} '{spec.name}' is already defined in {named[spec.name].path}",
                    )
                )
            else:
                named[spec.name] = spec
        return named

    def _flows(
        self, integrations: dict[str, Spec], loose: list[Spec]
    ) -> tuple[dict[str, Spec], dict[str, str]]:
        """Flows by name: those of each integration in its listed order, then unclaimed ones."""
        flows: dict[str, Spec] = {}
        owner: dict[str, str] = {}
        claimed_by: dict[Path, str] = {}
        for integration in integrations.values():
            for spec, where in self._claimed(integration):
                key = spec.path.resolve()
                if key in claimed_by:
                    self.problems.append(
                        SpecProblem(
                            str(integration.path),
                            integration.line_of(where),
                            field_name(where),
                            f"flow file {spec.path} is already part of integration '{claimed_by[key]}'",
                        )
                    )
                    continue
                claimed_by[key] = integration.name
                if self._add_flow(flows, spec, integration.name, owner):
                    owner[spec.name] = integration.name
        for spec in loose:
            if spec.path.resolve() not in claimed_by and spec.path.resolve() not in self.unlisted:
                self._add_flow(flows, spec, None, owner)
        return flows, owner

    def _claimed(self, integration: Spec) -> list[tuple[Spec, tuple[str | int, ...]]]:
        """(flow spec, field that claims it) for the flow files an integration lists or holds beside it."""
        listed = integration.data.get("flows")
        claimed: list[tuple[Spec, tuple[str | int, ...]]] = []
        if not isinstance(listed, list):
            siblings = [
                p
                for p in discover([integration.path.parent])
                if p.parent.resolve() == integration.path.parent.resolve()
                and p.resolve() != integration.path.resolve()
            ]
            for path in siblings:
                spec = self.read(path)
                if spec is not None and spec.kind == "mapping":
                    claimed.append((spec, ("integration",)))
            return claimed
        self._unlisted(integration, listed)
        for index, entry in enumerate(listed):
            if not isinstance(entry, str):
                continue
            path = _join(integration.path.parent, entry)
            where = ("flows", index)
            if not path.is_file():
                self.problems.append(
                    SpecProblem(
                        str(integration.path),
                        integration.line_of(where),
                        field_name(where),
                        f"flow file '{entry}' does not exist",
                    )
                )
                continue
            spec = self.read(path)
            if spec is not None and spec.kind != "mapping":
                self.problems.append(
                    SpecProblem(
                        str(integration.path),
                        integration.line_of(where),
                        field_name(where),
                        f"'{entry}' is a {spec.kind} spec, not a flow",
                    )
                )
            elif spec is not None:
                claimed.append((spec, where))
        return claimed

    def _unlisted(self, integration: Spec, listed: list[Any]) -> None:
        """One rule for validate and run: every YAML file beside an integration file is one of its flows.

        A mapping the list leaves out would pass validate and never run; a stray copy (`x.yml`, `x copy.yaml`)
        would be checked by validate and ignored by run.
        """
        folder = integration.path.parent
        named = {_join(folder, entry).resolve() for entry in listed if isinstance(entry, str)}
        for path in discover([folder]):
            key = path.resolve()
            if path.parent.resolve() != folder.resolve() or key == integration.path.resolve() or key in named:
                continue
            if not is_flow_or_broken(path, self.limits):
                continue
            self.unlisted.add(key)
            self.problems.append(
                SpecProblem(
                    str(path),
                    1,
                    "(root)",
                    f"not listed in the flows of integration '{integration.name}' ({integration.path.name}), so it "
                    "would never run: add it to flows, or move it out of the folder",
                )
            )

    def _add_flow(self, flows: dict[str, Spec], spec: Spec, integration: str | None, owner: dict[str, str]) -> bool:
        """Flow names are global in a workspace: the state, `--flow`, `depends_on` and lookups name a flow by it."""
        if spec.name in flows:
            other = owner.get(spec.name)
            mine = f" of integration '{integration}'" if integration and other != integration else ""
            theirs = f" by integration '{other}'" if other and other != integration else ""
            self.problems.append(
                SpecProblem(
                    str(spec.path),
                    spec.line_of(("flow",)),
                    "flow",
                    f"flow '{spec.name}'{mine} is already defined{theirs} in {flows[spec.name].path}; flow names "
                    "are global in a workspace (the state, --flow, depends_on and lookups name a flow by its "
                    "name): rename one",
                )
            )
            return False
        flows[spec.name] = spec
        return True


def _classify(data: Any) -> SpecKind | None:
    if not isinstance(data, dict):
        return None
    return next((kind for key, kind in KIND_KEYS if key in data), None)


def _name(kind: SpecKind, data: dict[str, Any], path: Path) -> str:
    key = {"connector": "connector", "mapping": "flow", "integration": "integration"}.get(kind)
    value = data.get(key) if key else None
    return value if isinstance(value, str) else path.stem


def _join(base: Path, entry: str) -> Path:
    """`entry` relative to `base`, normalised (no `..` segments left in what problems print)."""
    return Path(os.path.normpath(base / entry))


def _unique(paths: Iterable[Path]) -> list[Path]:
    seen: set[Path] = set()
    out = []
    for path in paths:
        key = path.resolve()
        if key not in seen:
            seen.add(key)
            out.append(path)
    return out
