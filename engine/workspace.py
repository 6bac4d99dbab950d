"""An opened workspace: the user's file, the specs it brings in, and its state database."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ml_connector.errors import SetupError
from ml_connector.spec import Project, load_workspace
from ml_connector.store import State

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
        assert self.project.workspace is not None
        configured = self.project.workspace.data.get("state") or DEFAULT_STATE
        candidate = Path(configured)
        return candidate if candidate.is_absolute() else self.path.parent / candidate

    @property
    def serve(self) -> ServeSettings:
        assert self.project.workspace is not None
        block = self.project.workspace.data.get("serve") or {}
        return ServeSettings(listen=block.get("listen"), public_url=block.get("public_url"))

    def state(self) -> State:
        return State(self.state_path)
