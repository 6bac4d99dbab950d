"""Where the shipped connector and mapping specs are, in a source checkout and in an installed package alike.

A checkout keeps them in its top-level connectors/ and mappings/; a wheel carries the same folders as the data
package ``ml_connector_specs`` (pyproject maps it from those folders), found through importlib.resources. Either way
the answer is one folder holding ``connectors/`` and ``mappings/``, on disk, because workspaces name spec folders by
path (pip installs wheels unpacked, so an installed package's data is on disk too).
"""

from __future__ import annotations

import importlib.resources
from pathlib import Path

from ml_connector.errors import SetupError

SPECS_PACKAGE = "ml_connector_specs"
SPEC_FOLDERS = ("connectors", "mappings")


def _checkout() -> Path | None:
    """The repository root when this code runs from its engine/ folder (a checkout or an editable install)."""
    here = Path(__file__).resolve().parent
    root = here.parent
    if here.name == "engine" and all((root / folder).is_dir() for folder in SPEC_FOLDERS):
        return root
    return None


CHECKOUT = _checkout()


def shipped_specs() -> Path:
    """The folder holding the shipped ``connectors/`` and ``mappings/``; SetupError when they are not installed."""
    if CHECKOUT is not None:
        return CHECKOUT
    missing = SetupError(f"the shipped specs (the data package {SPECS_PACKAGE}) are not installed: "
                         f"reinstall ml-connector")
    try:
        package = importlib.resources.files(SPECS_PACKAGE)
    except (ModuleNotFoundError, NotADirectoryError):  # not installed; a stale editable install's placeholder path
        raise missing from None
    # A data package without __init__.py is a namespace package, whose root is not a Path; its children are.
    folders = [package.joinpath(folder) for folder in SPEC_FOLDERS]
    if not all(isinstance(folder, Path) and folder.is_dir() for folder in folders):
        raise missing
    return Path(str(folders[0])).parent


def spec_files() -> list[Path]:
    """Every shipped spec file, relative to :func:`shipped_specs` (connectors first, then mappings, sorted)."""
    root = shipped_specs()
    return [path.relative_to(root) for folder in SPEC_FOLDERS for path in sorted((root / folder).rglob("*.yaml"))]
