"""Optional parts of the package and the pip extras that bring their third-party modules.

The engine itself never needs them; a command that does imports its module through :func:`import_from_extra`, so
that a plain ``pip install ml-connector`` says in one line which extra to add instead of failing with a traceback.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from ml_connector.errors import SetupError

#: Each extra of pyproject.toml's [project.optional-dependencies]: what needs it, and the top-level modules it brings.
EXTRAS: dict[str, tuple[str, tuple[str, ...]]] = {
    "sandbox": ("the sandboxes", ("sortedcontainers",)),
    "cluster": ("quota pools shared between workers (quotas_shared), a PostgreSQL state, `worker` and `scheduler`",
                ("redis", "psycopg", "dramatiq")),
}


class MissingExtra(SetupError):
    """A command needs an optional extra that is not installed."""


def import_from_extra(module: str, extra: str) -> ModuleType:
    """Import ``module``; MissingExtra naming ``extra`` when one of that extra's modules is not installed."""
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as exc:
        missing = (exc.name or "").split(".")[0]
        purpose, modules = EXTRAS[extra]
        if missing not in modules:
            raise
        raise MissingExtra(f"{purpose} need the optional extra '{extra}' (missing module {missing}): "
                           f"pip install 'ml-connector[{extra}]'") from exc
