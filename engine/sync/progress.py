"""Progress of a run, as the flows report it: what a person watching a long run sees, and what the report charts.

The runner and the flows call a :class:`Progress`; they never print. Which one they get is the caller's choice: a
live table on a terminal (the only place ``rich`` is imported), plain throttled lines when stderr is a file or a
pipe, nothing in tests. :class:`Timeline` keeps a few samples per flow in the state, for `ml-connector report`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import IO, Any, Protocol

#: Samples kept per flow for the report's chart: enough for a smooth line, small enough for a JSON column.
TIMELINE_SAMPLES = 120


@dataclass(frozen=True)
class FlowCounts:
    """A flow's numbers so far."""

    read: int = 0
    written: int = 0
    deferred: int = 0
    failed: int = 0
    rate_limited: int = 0
    waited_seconds: float = 0.0

    def line(self) -> str:
        return (f"{self.read} read, {self.written} written, {self.deferred} deferred, {self.failed} failed, "
                f"{self.rate_limited} rate-limited ({self.waited_seconds:.1f}s waited)")


class Progress(Protocol):
    """What a run tells whoever watches it."""

    def flow_started(self, flow: str) -> None: ...

    def flow_update(self, flow: str, counts: FlowCounts) -> None: ...

    def flow_finished(self, flow: str, status: str, counts: FlowCounts) -> None: ...


class NullProgress:
    """Tells nobody (tests, and commands that print their own output only)."""

    def flow_started(self, flow: str) -> None:
        pass

    def flow_update(self, flow: str, counts: FlowCounts) -> None:
        pass

    def flow_finished(self, flow: str, status: str, counts: FlowCounts) -> None:
        pass


class LineProgress:
    """Plain lines for logs and pipes: one per flow every ``every`` seconds while it runs.

    A flow that ends before its first line is due prints nothing, so short runs stay quiet; a flow that printed
    progress also prints its end.
    """

    def __init__(self, stream: IO[str], *, every: float = 5.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.stream, self.every, self.clock = stream, every, clock
        self._next: dict[str, float] = {}
        self._spoke: set[str] = set()

    def flow_started(self, flow: str) -> None:
        self._next[flow] = self.clock() + self.every

    def flow_update(self, flow: str, counts: FlowCounts) -> None:
        now = self.clock()
        if now >= self._next.get(flow, now):
            self._next[flow] = now + self.every
            self._spoke.add(flow)
            self._say(f"{flow}: {counts.line()}")

    def flow_finished(self, flow: str, status: str, counts: FlowCounts) -> None:
        if flow in self._spoke:
            self._say(f"{flow}: {status}: {counts.line()}")

    def _say(self, line: str) -> None:
        try:
            self.stream.write(f"ml-connector: {line}\n")
            self.stream.flush()
        except (OSError, ValueError):  # a closed pipe or log: progress is for people, never a reason to fail a run
            pass


class RichProgress:
    """A live table on a terminal, one row per flow, redrawn in place; it goes when the run ends (its summary
    follows on stdout)."""

    def __init__(self, stream: IO[str]) -> None:
        from rich.console import Console
        from rich.live import Live

        self.console = Console(file=stream)
        self.rows: dict[str, tuple[str, FlowCounts]] = {}
        self.live = Live(self._table(), console=self.console, refresh_per_second=4, transient=True)
        self._on = False

    def _table(self) -> Any:
        from rich.table import Table

        table = Table(title="ml-connector run", expand=False)
        for header in ("flow", "status", "read", "written", "deferred", "failed", "rate-limited", "waited s"):
            table.add_column(header, justify="left" if header in ("flow", "status") else "right")
        for flow, (status, c) in self.rows.items():
            table.add_row(flow, status, str(c.read), str(c.written), str(c.deferred), str(c.failed),
                          str(c.rate_limited), f"{c.waited_seconds:.1f}")
        return table

    def _show(self, flow: str, status: str, counts: FlowCounts) -> None:
        self.rows[flow] = (status, counts)
        if not self._on:
            self.live.start()
            self._on = True
        self.live.update(self._table())

    def flow_started(self, flow: str) -> None:
        self._show(flow, "running", FlowCounts())

    def flow_update(self, flow: str, counts: FlowCounts) -> None:
        self._show(flow, "running", counts)

    def flow_finished(self, flow: str, status: str, counts: FlowCounts) -> None:
        self._show(flow, status, counts)

    def close(self) -> None:
        if self._on:
            self.live.stop()
            self._on = False


class Timeline:
    """Samples of each flow's counts over time (seconds since the flow started), for the run report's chart.

    Bounded: past ``limit`` samples every other one is dropped, so a long flow keeps an even, coarser line.
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic, limit: int = TIMELINE_SAMPLES) -> None:
        self.clock, self.limit = clock, limit
        self._start: dict[str, float] = {}
        self._samples: dict[str, list[dict[str, Any]]] = {}

    def flow_started(self, flow: str) -> None:
        self._start[flow] = self.clock()
        self._samples[flow] = [{"t": 0.0, **asdict(FlowCounts())}]

    def flow_update(self, flow: str, counts: FlowCounts) -> None:
        samples = self._samples.setdefault(flow, [])
        start = self._start.setdefault(flow, self.clock())
        samples.append({"t": round(self.clock() - start, 3), **asdict(counts)})
        if len(samples) > self.limit:
            self._samples[flow] = samples[:1] + samples[2:-1:2] + samples[-1:]

    def flow_finished(self, flow: str, status: str, counts: FlowCounts) -> None:
        self.flow_update(flow, counts)

    def samples(self, flow: str) -> list[dict[str, Any]]:
        return list(self._samples.get(flow, []))


class Fanout:
    """Tells several listeners."""

    def __init__(self, *sinks: Progress) -> None:
        self.sinks = sinks

    def flow_started(self, flow: str) -> None:
        for sink in self.sinks:
            sink.flow_started(flow)

    def flow_update(self, flow: str, counts: FlowCounts) -> None:
        for sink in self.sinks:
            sink.flow_update(flow, counts)

    def flow_finished(self, flow: str, status: str, counts: FlowCounts) -> None:
        for sink in self.sinks:
            sink.flow_finished(flow, status, counts)


def for_stream(stream: IO[str]) -> Progress:
    """A live table when ``stream`` is a terminal, plain lines otherwise."""
    isatty = getattr(stream, "isatty", None)
    if isatty is not None and isatty():
        return RichProgress(stream)
    return LineProgress(stream)


def close(progress: Progress) -> None:
    """Leave the terminal tidy (a live table stops redrawing)."""
    stop = getattr(progress, "close", None)
    if stop is not None:
        stop()
