"""A watermark never moves past the time its read began (server clock if given, else ours) minus the lookback."""

from __future__ import annotations

from datetime import UTC, datetime

from ml_connector.report import run_table
from ml_connector.store import State
from tests.engine.fakeapi import FakeAPI
from tests.engine.flowkit import bodies, flow_spec, run_flow

SPEC = flow_spec({"name": "name"})
SERVER_DATE = "Sun, 01 Mar 2026 11:58:00 GMT"  # the source's clock is two minutes behind ours (12:00Z)


def things(*stamps: str) -> dict[str, list[dict[str, str]]]:
    return {"data": [{"code": f"T{i}", "name": f"thing {i}", "updated": stamp} for i, stamp in enumerate(stamps)]}


def target_creating(count: int) -> FakeAPI:
    api = FakeAPI()
    for n in range(count):
        api.on("POST", "/v2/items", 200, {"data": {"id": 100 + n}})
    return api


def test_future_stamped_records_sync_but_hold_the_watermark_at_the_servers_read_start() -> None:
    stamps = ("2026-03-01T11:50:00Z",        # T0: ordinary
              "2099-01-01T00:00:00Z",        # T1: a century ahead
              "2026-03-01T13:30:00+02:00",   # T2: 11:30Z (looks later than 12:00 when compared as text)
              "2026-03-01T10:30:00-02:00",   # T3: 12:30Z, after the read began
              "2026-03-01T11:59:00Z")        # T4: before our clock, after the server's
    source = FakeAPI().on("GET", "/v2/things", 200, things(*stamps), {"date": SERVER_DATE})
    target = target_creating(5)
    state = State(":memory:")

    summary = run_flow(state, SPEC, source, target)

    assert (summary.status, summary.read, summary.created, summary.future_stamped) == ("ok", 5, 5, 3)
    assert summary.as_dict()["future_stamped"] == 3
    assert sorted(b["name"] for b in bodies(target)) == [f"thing {i}" for i in range(5)]  # all of them synced
    assert state.watermarks.get("things") == "2026-03-01T11:57:00Z"  # server's 11:58 minus the 60 s lookback
    notes = {row["source_key"]: row["note"] for row in state.audit.query(run_id="r1")}
    assert {key for key, note in notes.items() if note} == {"T1", "T3", "T4"}
    assert notes["T1"] == ("future-stamped: updated=2099-01-01T00:00:00Z is after the read began "
                           "(2026-03-01T11:58:00Z by the source's clock)")

    # The next run reads from the held watermark, meets the same records unchanged: no writes.
    again = FakeAPI().on("GET", "/v2/things", 200, things(*stamps[1:]), {"date": SERVER_DATE})
    summary = run_flow(state, SPEC, again, FakeAPI(), run_id="r2")
    assert [call["params"]["since"] for call in again.calls()] == ["2026-03-01T11:56:00Z"]
    assert (summary.read, summary.unchanged, summary.created, summary.future_stamped) == (4, 4, 0, 3)
    assert state.watermarks.get("things") == "2026-03-01T11:57:00Z"


def test_without_a_server_date_our_clock_bounds_the_watermark() -> None:
    source = FakeAPI().on("GET", "/v2/things", 200, things("2026-03-01T11:00:00Z", "2026-03-01T12:00:30Z"))
    state = State(":memory:")
    summary = run_flow(state, SPEC, source, target_creating(2))
    assert (summary.created, summary.future_stamped) == (2, 1)
    assert state.watermarks.get("things") == "2026-03-01T11:59:00Z"  # our 12:00 minus the lookback
    table = run_table({"run_id": "r1", "status": "ok", "flows": [summary.as_dict()]})
    assert "notes:\n  things: 1 record(s) stamped after the read began" in table


def test_a_watermark_already_in_the_future_is_dropped_so_the_next_run_reads_everything() -> None:
    state = State(":memory:")
    state.watermarks.set("things", "2099-01-01T00:00:00Z")  # left by an engine without the bound
    source = FakeAPI().on("GET", "/v2/things", 200, things("2099-01-01T00:00:00Z"))
    summary = run_flow(state, SPEC, source, target_creating(1))
    assert [call["params"].get("since") for call in source.calls()] == ["2098-12-31T23:59:00Z"]
    assert (summary.created, summary.future_stamped) == (1, 1)
    assert state.watermarks.get("things") is None

    everything = FakeAPI().on("GET", "/v2/things", 200, things("2099-01-01T00:00:00Z", "2026-02-01T00:00:00Z"))
    summary = run_flow(state, SPEC, everything, target_creating(1), run_id="r2",
                       now=lambda: datetime(2026, 3, 1, 12, 0, tzinfo=UTC))
    assert [call["params"] for call in everything.calls()] == [{}]  # no `since`: the whole source
    assert (summary.created, summary.unchanged) == (1, 1)
    assert state.watermarks.get("things") == "2026-03-01T11:59:00Z"
