"""bench/cluster_scale.py's arithmetic: the longest wait of a due flow read from flow runs, and its RESULTS.md section
kept between markers (no servers here)."""

from __future__ import annotations

from datetime import datetime, timedelta

from bench.cluster_scale import Wait, longest_wait, markers, waits, with_section

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
    begin, end = markers("every 1m")
    text = f"# Results\n\nbefore\n\n{begin}\nold table\n{end}\n\nafter\n"
    assert with_section(text, begin, end, "new") == f"# Results\n\nbefore\n\n{begin}\nnew\n{end}\n\nafter\n"
    assert with_section("# Results\n", begin, end, "new") == f"# Results\n\n{begin}\nnew\n{end}\n"


def test_each_schedule_has_a_section_of_its_own() -> None:
    """A round at a cadence the machine keeps up with is added beside the one it cannot keep up with."""
    minute, quarter = markers("every 1m"), markers("every 15m")
    assert minute != quarter
    text = with_section("# Results\n", *minute, "fast")
    text = with_section(text, *quarter, "slow")
    assert text == f"# Results\n\n{minute[0]}\nfast\n{minute[1]}\n\n{quarter[0]}\nslow\n{quarter[1]}\n"
    assert with_section(text, *minute, "fast again").count("slow") == 1


def test_each_due_cycle_has_one_wait_and_those_still_waiting_at_the_end_say_so() -> None:
    runs = [("a", at(3), at(5), "ok"), ("a", at(72), at(74), "ok"), ("b", at(10), at(11), "failed")]
    assert waits(runs, ["a", "b", "c"], MINUTE, T0, at(100)) == [
        Wait(3.0, "a", True), Wait(7.0, "a", True), Wait(10.0, "b", True), Wait(29.0, "b", False),
        Wait(100.0, "c", False)]


def test_make_bench_keeps_every_schedule_s_section_when_it_rewrites_the_results() -> None:
    from bench.compare import kept_sections

    minute, quarter = markers("every 1m"), markers("every 15m")
    text = with_section(with_section("# Results\n\nold targets\n", *minute, "fast"), *quarter, "slow")
    assert kept_sections(text) == f"\n{minute[0]}\nfast\n{minute[1]}\n\n{quarter[0]}\nslow\n{quarter[1]}\n"
    assert kept_sections("# Results\n") == ""
