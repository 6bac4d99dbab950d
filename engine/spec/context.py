"""What one spec file or folder refers to, so it is checked against the real thing, not alone.

`validate mappings/pair/x.yaml` loads x's integration (and so its sibling flows) and the workspace's connectors;
`validate mappings` finds the connectors too. The connectors are found by the layout a workspace has: walking up
from the path, the first directory with a `workspace.yaml` (its `connectors` entries) or a `connectors/` folder.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from ml_connector.spec.problems import SpecError
from ml_connector.spec.yamlload import YamlLimits, load_yaml

WORKSPACE_FILE = "workspace.yaml"
CONNECTORS_DIR = "connectors"
_SUFFIXES = (".yaml", ".yml")


def context_files(paths: Iterable[Path], limits: YamlLimits) -> list[Path]:
    """Integration files beside each given file, and the connector directories of the layout around each path."""
    found: list[Path] = []
    for path in paths:
        if not path.exists():
            continue
        folder = path if path.is_dir() else path.parent
        if path.is_file():
            found += [p for p in _yaml_files(folder) if _top_key(p, limits) == "integration"]
        found += _connector_dirs(folder, limits)
    return found


def _connector_dirs(start: Path, limits: YamlLimits) -> list[Path]:
    for folder in (start.resolve(), *start.resolve().parents):
        workspace = folder / WORKSPACE_FILE
        if workspace.is_file() and _top_key(workspace, limits) == "connections":
            entries = _data(workspace, limits).get("connectors")
            names = [e for e in entries if isinstance(e, str)] if isinstance(entries, list) else [CONNECTORS_DIR]
            return [Path(os.path.normpath(folder / name)) for name in names if (folder / name).exists()]
        if (folder / CONNECTORS_DIR).is_dir():
            return [folder / CONNECTORS_DIR]
    return []


def _yaml_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.suffix in _SUFFIXES and p.is_file() and not p.name.startswith("."))


def _data(path: Path, limits: YamlLimits) -> dict[str, Any]:
    """A file's top-level mapping, or an empty one when it does not load (its own read reports why)."""
    try:
        data, _ = load_yaml(path, limits)
    except SpecError:
        return {}
    return data if isinstance(data, dict) else {}


def _top_key(path: Path, limits: YamlLimits) -> str | None:
    data = _data(path, limits)
    return next((key for key in ("connector", "flow", "integration", "connections") if key in data), None)


def is_flow_or_broken(path: Path, limits: YamlLimits) -> bool:
    """True for a mapping file, or a YAML file that does not load (it may well be one): what a folder of flows
    must not hold unlisted. A workspace, a connector or notes beside an integration are not flows."""
    try:
        data, _ = load_yaml(path, limits)
    except SpecError:
        return True
    return isinstance(data, dict) and "flow" in data and "connector" not in data
