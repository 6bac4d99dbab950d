"""The benchmark's arithmetic: paired ratios per round, their median, and the targets table (no timing here)."""

from __future__ import annotations

import pytest

from bench.stats import (
    Target,
    median_paired_ratio,
    paired_ratios,
    parse_state_scale,
    rate_use,
    target_table,
)


def test_ratios_are_paired_per_round_not_medians_of_each_side() -> None:
    engine = [2.0, 9.0, 3.0]
    baseline = [1.0, 3.0, 2.0]
    assert paired_ratios(engine, baseline) == [2.0, 3.0, 1.5]
    # median of the paired ratios (2.0), not median(engine) / median(baseline) (3.0 / 2.0 = 1.5)
    assert median_paired_ratio(engine, baseline) == 2.0


def test_even_number_of_rounds_takes_the_middle_mean() -> None:
    assert median_paired_ratio([1.0, 4.0], [1.0, 1.0]) == 2.5


def test_unpaired_or_empty_rounds_are_refused() -> None:
    with pytest.raises(ValueError):
        paired_ratios([1.0], [1.0, 2.0])
    with pytest.raises(ValueError):
        paired_ratios([], [])
    with pytest.raises(ValueError):
        paired_ratios([1.0], [0.0])


def test_upper_and_lower_limits() -> None:
    assert Target("t1 plan", 1.2, 1.3, "x").met is True
    assert Target("t1 plan", 1.31, 1.3, "x").met is False
    assert Target("t4 use", 0.96, 0.95, "", at_least=True).met is True
    assert Target("t4 use", 0.90, 0.95, "", at_least=True).met is False
    assert Target("t4 use", 0.90, 0.95, "", at_least=True).ratio == pytest.approx(0.90 / 0.95)
    assert Target("t1 plan", 2.6, 1.3, "x").ratio == pytest.approx(2.0)


def test_a_target_not_measured_is_never_met() -> None:
    skipped = Target("t5 id-map", None, 1.5, "x", note="bench/state_scale.py absent")
    assert skipped.met is False
    assert skipped.status == "not measured"


def test_table_prints_every_target_with_its_verdict() -> None:
    lines = target_table([Target("1 run --full / reader", 3.05, 1.5, "x"),
                          Target("4 calls per window / R", 0.97, 0.95, "", at_least=True),
                          Target("5 id-map 1M / 10k", None, 1.5, "x", note="skipped: no script")])
    assert lines[0].split() == ["target", "measured", "limit", "ratio", "verdict"]
    assert lines[1].split() == ["1", "run", "--full", "/", "reader", "3.05x", "<=", "1.50x", "2.03", "NOT", "MET"]
    assert lines[2].split() == ["4", "calls", "per", "window", "/", "R", "0.97", ">=", "0.95", "1.02", "met"]
    assert lines[3].split()[-8:] == ["-", "<=", "1.50x", "-", "not", "measured", "(skipped:", "no script)"][-8:] \
        or lines[3].endswith("not measured (skipped: no script)")
    assert lines[3].endswith("not measured (skipped: no script)")


def test_markdown_table_has_the_same_rows() -> None:
    lines = target_table([Target("2 peak RSS 1M", 180.0, 250.0, " MiB")], markdown=True)
    assert lines[0] == "| target | measured | limit | ratio | verdict |"
    assert lines[1] == "|---|---|---|---|---|"
    assert lines[2] == "| 2 peak RSS 1M | 180 MiB | <= 250 MiB | 0.72 | met |"


def test_a_zero_limit_has_no_ratio_and_is_met_only_at_zero() -> None:
    assert Target("4 429s after back-off", 0.0, 0.0, "").cells()[1:] == ["0.00", "<= 0.00", "-", "met"]
    assert Target("4 429s after back-off", 3.0, 0.0, "").cells()[1:] == ["3.00", "<= 0.00", "-", "NOT MET"]


def test_rate_use_counts_admitted_calls_per_window_over_the_whole_span() -> None:
    # 41 calls over 4 s (two windows of 2 s), one of them a 429: 40 admitted / 2 windows / R=20 = 1.0
    times = [i * 0.1 for i in range(41)]
    statuses = [200] * 41
    statuses[5] = 429
    assert rate_use(times, statuses, limit=20, window=2.0) == (1.0, 0)


def test_429s_in_flight_with_the_first_are_the_first_back_off_later_ones_count() -> None:
    times = [0.0, 1.0, 1.05, 1.5, 3.0, 4.0]
    statuses = [200, 429, 429, 200, 429, 200]
    use, later = rate_use(times, statuses, limit=1, window=2.0)
    assert later == 1  # 1.05 is within 100 ms of the first 429; 3.0 is a rejection after the back-off
    assert use == 3 / 2


def test_rate_use_of_no_calls_is_zero() -> None:
    assert rate_use([], [], limit=20, window=2.0) == (0.0, 0)


def test_state_scale_lines_become_targets() -> None:
    text = "\n".join([
        "id-map lookup of one page of 1,000 keys (median of 15)",
        "  target 5, query: 1,000,000 vs 10,000 links (x)         8.70 x  target <= 1.50  ratio  5.80  NOT MET",
        "  target 5, diff: 1,000,000 vs 10,000 links (x)   1.10 x  target <= 1.50  ratio  0.73  met",
        "  target 6: status   120.00 ms  target <= 1000.00  ratio  0.12  met",
        "   10,000 links: plain query (get_many)                                3.10 ms",
    ])
    targets = parse_state_scale(text)
    assert [(t.name, t.measured, t.limit, t.unit, t.met) for t in targets] == [
        ("5 query: 1,000,000 vs 10,000 links", 8.70, 1.5, "x", False),
        ("5 diff: 1,000,000 vs 10,000 links", 1.10, 1.5, "x", True),
        ("6 status", 120.0, 1000.0, " ms", True),
    ]
