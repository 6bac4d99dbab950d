"""The benchmark's arithmetic: ratios paired per round, their median, and the table of the issue's targets.

Paired ratios (engine / baseline measured in the same round, back to back) cancel most of the machine's drift
between rounds; the median of them is what a target is compared with.
"""

from __future__ import annotations

import re
import statistics
from collections.abc import Sequence
from dataclasses import dataclass


def paired_ratios(engine: Sequence[float], baseline: Sequence[float]) -> list[float]:
    """engine[i] / baseline[i] per round; both sides must have the same, non-zero number of rounds."""
    if len(engine) != len(baseline) or not engine:
        raise ValueError(f"rounds must be paired: {len(engine)} engine vs {len(baseline)} baseline")
    if any(b <= 0 for b in baseline):
        raise ValueError("a baseline measurement must be positive")
    return [e / b for e, b in zip(engine, baseline, strict=True)]


def median_paired_ratio(engine: Sequence[float], baseline: Sequence[float]) -> float:
    return statistics.median(paired_ratios(engine, baseline))


@dataclass(frozen=True)
class Target:
    """One target of the issue: measured value (None: not measured) against its limit."""

    name: str
    measured: float | None
    limit: float
    unit: str  # printed after both numbers: "x", " MiB", ""
    at_least: bool = False  # the limit is a floor (e.g. quota use >= 0.95), not a ceiling
    note: str = ""

    @property
    def met(self) -> bool:
        if self.measured is None:
            return False
        return self.measured >= self.limit if self.at_least else self.measured <= self.limit

    @property
    def ratio(self) -> float | None:
        """measured / limit: above 1 misses a ceiling, below 1 misses a floor (none for a limit of zero)."""
        return None if self.measured is None or not self.limit else self.measured / self.limit

    @property
    def status(self) -> str:
        if self.measured is None:
            return "not measured"
        return "met" if self.met else "NOT MET"

    def cells(self) -> list[str]:
        measured = "-" if self.measured is None else f"{_num(self.measured)}{self.unit}"
        limit = f"{'>=' if self.at_least else '<='} {_num(self.limit)}{self.unit}"
        ratio = "-" if self.ratio is None else f"{self.ratio:.2f}"
        verdict = self.status + (f" ({self.note})" if self.note else "")
        return [self.name, measured, limit, ratio, verdict]


def _num(value: float) -> str:
    return f"{value:.0f}" if abs(value) >= 100 else f"{value:.2f}"


HEADER = ["target", "measured", "limit", "ratio", "verdict"]


def target_table(targets: Sequence[Target], markdown: bool = False) -> list[str]:
    """The targets as aligned text lines (the console) or a Markdown table (RESULTS.md)."""
    rows = [t.cells() for t in targets]
    if markdown:
        return (["| " + " | ".join(HEADER) + " |", "|" + "---|" * len(HEADER)]
                + ["| " + " | ".join(row) + " |" for row in rows])
    widths = [max(len(r[i]) for r in [HEADER, *rows]) for i in range(len(HEADER) - 1)]
    return ["  ".join(cell.ljust(w) for cell, w in zip(row[:-1], widths, strict=True)) + "  " + row[-1]
            for row in [HEADER, *rows]]


IN_FLIGHT = 0.1  # seconds: 429s answered this soon after the first one were sent before it came back


def rate_use(times: Sequence[float], statuses: Sequence[int], limit: int, window: float) -> tuple[float, int]:
    """From a request log (answer times, statuses): admitted calls per window / ``limit`` over the log's whole
    span, and the 429s after the first back-off (those answered more than IN_FLIGHT after the first 429)."""
    if len(times) < 2:
        return 0.0, 0
    span = max(times) - min(times)
    admitted = sum(1 for status in statuses if status != 429)
    rejected = [t for t, status in zip(times, statuses, strict=True) if status == 429]
    later = sum(1 for t in rejected if t > rejected[0] + IN_FLIGHT) if rejected else 0
    return (admitted / (span / window) / limit if span else 0.0), later


_STATE_SCALE = re.compile(r"^\s*target (\d)[,:]\s*(.+?)(?:\s+\((x)\))?\s+(-?[\d.]+) (\S+)\s+target <= ([\d.]+)")


def parse_state_scale(text: str) -> list[Target]:
    """The `target N...` lines that bench/state_scale.py prints (value, unit, limit) as targets."""
    targets = []
    for line in text.splitlines():
        found = _STATE_SCALE.match(line)
        if found:
            number, name, _x, value, unit, limit = found.groups()
            targets.append(Target(f"{number} {name}", float(value), float(limit), unit if unit == "x" else f" {unit}"))
    return targets
