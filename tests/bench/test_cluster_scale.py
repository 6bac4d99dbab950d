"""bench/cluster_scale.py's arithmetic: the longest wait of a due flow read from flow runs, and its RESULTS.md section
kept between markers (no servers here)."""

from __future__ import annotations

from datetime import datetime, timedelta

from bench.cluster_scale import BEGIN, END, Wait, longest_wait, waits, with_section

T0 = datetime(2026, 12, 6, 8, 0, 0)
MINUTE = timedelta(minutes=1)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def test_wait_runs_from_the_window_start_then_from_each_completed_run_plus_the_period() -> None:
    runs = [("a", at(3), at(5), "ok"), ("a", at(72), at(74), "ok"),  # due at 65: waited 7
            ("b", at(10), at(11), "failed")]  # a failed run completed: due again at 71, never started by 100
    assert longest_wait(runs, ["a"], MINUTE, T0, at(100)) == (7.0, "a")
    assert longest_wait(runs, ["a", "b"], MINUTE, T0, at(100)) == (29.0, "b (never started)")
    assert longest_wait(runs, ["a", "b"], MINUTE, T0, at(80)) == (10.0, "b")  # b's first start, 10 s after T0


def test_an_interrupted_run_is_due_again_at_once_and_a_running_one_waits_for_nothing() -> None:
    runs = [("a", at(1), at(20), "interrupted"), ("a", at(50), None, "running")]
    assert longest_wait(runs, ["a"], MINUTE, T0, at(300)) == (30.0, "a")
    assert longest_wait([], ["a"], MINUTE, T0, at(42)) == (42.0, "a (never started)")


def test_the_section_replaces_only_what_is_between_its_markers() -> None:
    text = f"# Results\n\nbefore\n\n{BEGIN}\nold table\n{END}\n\nafter\n"
    assert with_section(text, f"{BEGIN}\nnew\n{END}") == f"# Results\n\nbefore\n\n{BEGIN}\nnew\n{END}\n\nafter\n"
    assert with_section("# Results\n", f"{BEGIN}\nnew\n{END}") == f"# Results\n\n{BEGIN}\nnew\n{END}\n"


def test_each_due_cycle_has_one_wait_and_those_still_waiting_at_the_end_say_so() -> None:
    runs = [("a", at(3), at(5), "ok"), ("a", at(72), at(74), "ok"), ("b", at(10), at(11), "failed")]
    assert waits(runs, ["a", "b", "c"], MINUTE, T0, at(100)) == [
        Wait(3.0, "a", True), Wait(7.0, "a", True), Wait(10.0, "b", True), Wait(29.0, "b", False),
        Wait(100.0, "c", False)]
