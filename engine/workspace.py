"""An opened workspace: the user's file, the specs it brings in, and its state database."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from ml_connector.errors import SetupError
from ml_connector.spec import Project, load_workspace
from ml_connector.store import PostgresTarget, State, StateTarget

DEFAULT_STATE = "state/ml-connector.duckdb"


@dataclass(frozen=True)
class ServeSettings:
    """The workspace's `serve` block: where the callback receiver listens and how the sources reach it."""

    listen: str | None = None  # HOST:PORT; None: no receiver (unless --listen)
    public_url: str | None = None  # None: http://<listen>


@dataclass
class Workspace:
    path: Path
    project: Project

    @classmethod
    def open(cls, path: str | Path) -> Workspace:
        """Load and validate the workspace and every spec it names (SetupError without the file, else SpecError)."""
        if not Path(path).is_file():
            raise SetupError(f"no workspace file at {path} (see README: Workspace)")
        resolved = Path(path).resolve()
        return cls(resolved, load_workspace(resolved))

    @property
    def state_path(self) -> Path:
        """The DuckDB state file; for a PostgreSQL state, the local name its files beside go by (the key file,
        ``state/<schema>.key``)."""
        assert self.project.workspace is not None
        configured = self.project.workspace.data.get("state") or DEFAULT_STATE
        if isinstance(configured, dict):
            return self.path.parent / "state" / f"{configured.get('schema') or 'public'}.duckdb"
        candidate = Path(configured)
        return candidate if candidate.is_absolute() else self.path.parent / candidate

    @property
    def state_target(self) -> StateTarget:
        """What ``State`` opens: the DuckDB path, or the PostgreSQL database with its password resolved (SetupError
        when its variable is not set; the value is never said)."""
        assert self.project.workspace is not None
        configured = self.project.workspace.data.get("state")
        if not isinstance(configured, dict):
            return self.state_path
        password = None
        reference = configured.get("password")
        if isinstance(reference, str):
            name = reference.removeprefix("env:")
            password = os.environ.get(name)
            if not password:
                raise SetupError(f"the state's password: environment variable {name} is not set")
        return PostgresTarget(configured["postgresql"], schema=configured.get("schema") or "public",
                              password=password, key_file=self.state_path.with_suffix(".key"))

    @property
    def serve(self) -> ServeSettings:
        assert self.project.workspace is not None
        block = self.project.workspace.data.get("serve") or {}
        return ServeSettings(listen=block.get("listen"), public_url=block.get("public_url"))

    def state(self) -> State:
        return State(self.state_target)
