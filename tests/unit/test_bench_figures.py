"""The steady scenario's figures from its samples: flatness and the tail."""

from __future__ import annotations

from bench.scenarios import _sustained, _tail, flatness


def test_flatness_is_the_last_quarters_median_over_the_middle_halfs() -> None:
    series = [(s, rate) for s, rate in enumerate([900, 1000, 1000, 1000, 1000, 1000, 800, 800])]
    assert flatness(series) == 0.8


def test_flatness_of_a_run_too_short_for_a_quarter_of_two_seconds_is_none() -> None:
    assert flatness([(s, 1000) for s in range(7)]) is None


def test_two_seconds_of_stragglers_sink_a_short_runs_flatness_not_a_long_ones() -> None:
    # The same drain's end, 1,279 then 45 in its last two seconds, after 3,900/s.
    short = [(s, 3900) for s in range(14)] + [(14, 1279), (15, 45)]
    long = [(s, 3900) for s in range(48)] + [(48, 1279), (49, 45)]
    assert flatness(short) == 0.664
    assert flatness(long) == 1.0


def test_the_tail_is_the_seconds_from_99_percent_delivered_to_the_last() -> None:
    samples = [(0.0, 0), (1.0, 500), (2.0, 989), (2.25, 990), (2.5, 995), (4.75, 1000)]
    assert _tail(samples, 1000) == 2.5


def test_the_sustained_rate_counts_only_what_was_delivered_between_its_samples() -> None:
    # A quarter was delivered while the backlog was published, before the first sample.
    samples = [(0.0, 50_000), (10.0, 100_000), (20.0, 150_000), (26.0, 180_000), (30.0, 200_000)]
    assert _sustained(samples, 200_000) == 5_000.0


def test_the_sustained_rate_leaves_out_a_slow_start() -> None:
    # 100/s for 10 s, then 1,000/s: the first tenth is not in the rate.
    samples = [(float(t), 100 * t if t <= 10 else 1000 + 1000 * (t - 10)) for t in range(110)]
    assert _sustained(samples, 100_000) == 1000.0
