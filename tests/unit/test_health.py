"""Health windows, scores and states."""

from __future__ import annotations

import pytest

from hookstream.engine.health import HealthState, HealthWindow, WindowStats, score, state_for


def test_no_attempts_score_full_health() -> None:
    assert HealthWindow().score(0.0) == 1.0


def test_score_is_the_success_ratio_at_steady_latency() -> None:
    window = HealthWindow()
    for i in range(10):
        window.record(float(i), ok=i < 7, latency_ms=50.0)
    assert window.score(10.0) == pytest.approx(0.7)


def test_outcomes_leave_the_window() -> None:
    window = HealthWindow(window_s=100.0, buckets=10)
    window.record(0.0, ok=False, latency_ms=5.0)
    window.record(150.0, ok=True, latency_ms=5.0)
    stats = window.stats(150.0)
    assert (stats.attempts, stats.successes) == (1, 1)


def test_latency_far_above_the_baseline_lowers_the_score() -> None:
    stats = WindowStats(attempts=10, successes=10, failures=0, timeouts=0, latency_ms=600.0)
    assert score(stats, 100.0) == pytest.approx(0.5)
    assert score(stats, 300.0) == 1.0  # within twice the baseline


def test_timeouts_cost_half_their_share() -> None:
    stats = WindowStats(attempts=10, successes=5, failures=5, timeouts=5, latency_ms=10.0)
    assert score(stats, 10.0) == pytest.approx(0.5 * 0.75)


def test_baseline_is_untrusted_until_enough_successes() -> None:
    window = HealthWindow()
    for i in range(9):
        window.record(float(i), ok=True, latency_ms=20.0)
    assert window.trusted_baseline_ms is None
    window.record(9.0, ok=True, latency_ms=20.0)
    assert window.trusted_baseline_ms == pytest.approx(20.0)


@pytest.mark.parametrize(
    ("value", "disabled", "circuit_open", "expected"),
    [
        (1.0, False, False, HealthState.HEALTHY),
        (0.9, False, False, HealthState.HEALTHY),
        (0.7, False, False, HealthState.DEGRADED),
        (0.4, False, False, HealthState.FAILING),
        (1.0, False, True, HealthState.FAILING),
        (1.0, True, True, HealthState.DISABLED),
    ],
)
def test_states(value: float, disabled: bool, circuit_open: bool, expected: HealthState) -> None:
    assert state_for(value, disabled=disabled, circuit_open=circuit_open) is expected
