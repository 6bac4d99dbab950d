"""What a task says: which tenant's workspace, which flow, for which cycle. Plain strings: it travels as JSON."""

from __future__ import annotations

from dataclasses import astuple, dataclass
from datetime import datetime
from pathlib import Path

#: The queue flow tasks travel on (workers consume it; the scheduler sends to it).
QUEUE = "flows"
#: The actor's name in every message: workers and scheduler of different versions must agree on it.
ACTOR = "run_flow"


@dataclass(frozen=True)
class FlowJob:
    """One flow run to do. ``after``: the end of the flow's last completed run as the scheduler saw it (None:
    never run); a worker that finds a completed run after it knows this cycle is done (a redelivered task)."""

    workspace: str
    tenant: str
    flow: str
    due_at: str  # ISO 8601, UTC: when the scheduler found the flow due (logs, the longest wait of a due flow)
    after: str | None = None

    def args(self) -> tuple[str | None, ...]:
        return astuple(self)

    @property
    def after_time(self) -> datetime | None:
        return datetime.fromisoformat(self.after) if self.after else None


@dataclass(frozen=True)
class Tenant:
    """A tenant is a workspace: its own connections, secrets, state and quotas."""

    name: str
    workspace: Path

    @classmethod
    def parse(cls, text: str) -> Tenant:
        """``NAME=PATH`` or a workspace path alone (the tenant is then named after the workspace's folder)."""
        name, sep, path = text.partition("=")
        if not sep:
            name, path = "", text
        workspace = Path(path).resolve()
        return cls(name or workspace.parent.name, workspace)
