"""What `serve` tells a person: what is scheduled and when each flow is next due.

A service that prints nothing until something is due looks dead; one that logs every idle tick buries what
happened. So: one block at start and idle ticks (with -v only) on stderr, like the service's other messages; a run
table on stdout for each tick that ran something.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from ml_connector.store import State
from ml_connector.sync.schedule import parse_schedule


@dataclass(frozen=True)
class Slot:
    """One flow's schedule: ``schedule`` None means it runs only on demand (`ml-connector run --flow`)."""

    flow: str
    schedule: str | None
    next_due: datetime | None  # naive UTC, as the state stores moments; None: never due by itself


def slots(schedules: Iterable[tuple[str, str | None]], state: State) -> list[Slot]:
    """Each flow's slot, from its schedule and when it last finished a run (never run: due at once)."""
    out = []
    for flow, schedule in schedules:
        if not schedule:
            out.append(Slot(flow, None, None))
            continue
        last = state.runs.last_finished(flow)
        out.append(Slot(flow, schedule, None if last is None else last + parse_schedule(schedule)))
    return out


def started_lines(schedules: Sequence[tuple[str, str | None]], interval: float,
                  now: datetime | None = None) -> list[str]:
    """The block `serve` prints when it starts (before it opens the state, which another process may hold)."""
    now = now or datetime.now(UTC)
    lines = [f"ml-connector serve: started {now:%Y-%m-%d %H:%M:%S} UTC, checking schedules every {interval:g}s"]
    scheduled = [(flow, schedule) for flow, schedule in schedules if schedule]
    if not scheduled:
        lines.append("  no flow has a schedule (add `schedule: every 15m` to a flow); nothing will run")
    lines += [f"  {flow}: {schedule}" for flow, schedule in scheduled]
    on_demand = [flow for flow, schedule in schedules if not schedule]
    if on_demand:
        lines.append(f"  on demand only (no schedule): {', '.join(on_demand)}")
    return lines


def idle_line(found: list[Slot], now: datetime) -> str:
    """A tick with nothing due (printed with -v only): when the next flow comes round."""
    upcoming = sorted((s.next_due, s.flow) for s in found if s.schedule and s.next_due is not None)
    if not upcoming:
        return f"{now:%H:%M:%S} nothing due"
    moment, flow = upcoming[0]
    return f"{now:%H:%M:%S} nothing due; next: {flow} at {moment:%H:%M:%S} UTC"


def utc_naive(moment: datetime) -> datetime:
    """A moment as the state stores it (UTC, without a zone)."""
    return moment.astimezone(UTC).replace(tzinfo=None)
