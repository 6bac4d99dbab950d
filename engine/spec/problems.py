"""Spec problems: one located error (file, line, field) and the exception that carries several."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from ml_connector.errors import MlConnectorError

JsonPath = tuple[str | int, ...]


def field_name(path: Sequence[object]) -> str:
    """A JSON path as a dotted field name (`entities.deal.read`, `responses[0].do`); `(root)` when empty."""
    out = ""
    for part in path:
        if isinstance(part, int) and not isinstance(part, bool):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out or "(root)"


@dataclass(frozen=True)
class SpecProblem:
    """One problem in a spec file, printed as `file:line: field: message`."""

    file: str
    line: int
    field: str
    message: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.field}: {self.message}"


def sort_problems(problems: Iterable[SpecProblem]) -> list[SpecProblem]:
    """Problems in a stable reading order (file, line, field), without exact duplicates."""
    return sorted(set(problems), key=lambda p: (p.file, p.line, p.field, p.message))


class SpecError(MlConnectorError):
    """Raised when specs do not load; `problems` lists every problem found."""

    def __init__(self, problems: Iterable[SpecProblem]) -> None:
        self.problems: list[SpecProblem] = list(problems)
        super().__init__(str(self))

    def __str__(self) -> str:
        count = len(self.problems)
        head = f"{count} spec problem{'' if count == 1 else 's'}"
        return "\n".join([head + ":", *(f"  {p}" for p in self.problems)]) if count else head
