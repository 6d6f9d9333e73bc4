"""The circuit breaker's states: closed → open → half-open → closed (or open again)."""

from __future__ import annotations

import pytest

from hookstream.engine.circuit import CircuitBreaker, CircuitSettings, CircuitState


def state(cb: CircuitBreaker) -> CircuitState:
    """The breaker's state (a call, so mypy does not narrow it across mutations)."""
    return cb.state


def breaker(**changes: float) -> CircuitBreaker:
    return CircuitBreaker(CircuitSettings(**changes))  # type: ignore[arg-type]


def test_opens_after_consecutive_failures() -> None:
    cb = breaker(consecutive=3, open_s=5.0)
    for t in range(2):
        cb.record(False, float(t))
    assert state(cb) is CircuitState.CLOSED
    cb.record(False, 2.0)
    assert state(cb) is CircuitState.OPEN
    assert cb.allow(3.0) == pytest.approx(4.0)


def test_a_success_resets_the_consecutive_count() -> None:
    cb = breaker(consecutive=3, min_volume=1000)
    for ok in (False, False, True, False, False):
        cb.record(ok, 1.0)
    assert state(cb) is CircuitState.CLOSED


def test_opens_on_failure_ratio_with_minimum_volume() -> None:
    cb = breaker(consecutive=100, failure_ratio=0.5, min_volume=10, window_s=60.0)
    for i in range(9):
        cb.record(i % 2 == 0, float(i))  # 4 failures of 9: under the volume anyway
    assert state(cb) is CircuitState.CLOSED
    cb.record(False, 9.0)  # 5 of 10 failed
    assert state(cb) is CircuitState.OPEN


def test_old_outcomes_leave_the_ratio_window() -> None:
    cb = breaker(consecutive=100, failure_ratio=0.5, min_volume=4, window_s=10.0)
    for t in range(3):
        cb.record(False, float(t))
    for t in range(3):
        cb.record(True, 100.0 + t)
    cb.record(False, 104.0)  # 1 failure of 4 in the window
    assert state(cb) is CircuitState.CLOSED


def test_half_open_lets_exactly_one_probe_through() -> None:
    cb = breaker(consecutive=1, open_s=5.0)
    cb.record(False, 0.0)
    assert cb.allow(5.0) == 0.0
    assert state(cb) is CircuitState.HALF_OPEN
    assert cb.allow(5.0) > 0  # the probe is out: everyone else waits


def test_a_successful_probe_closes() -> None:
    cb = breaker(consecutive=1, open_s=5.0)
    cb.record(False, 0.0)
    cb.allow(6.0)
    cb.record(True, 6.1, probe=True)
    assert state(cb) is CircuitState.CLOSED
    assert cb.allow(6.2) == 0.0
    assert cb.allow(6.2) == 0.0


def test_a_failed_probe_reopens_for_twice_as_long_up_to_the_maximum() -> None:
    cb = breaker(consecutive=1, open_s=5.0, max_open_s=15.0)
    cb.record(False, 0.0)
    cb.allow(5.0)
    cb.record(False, 5.0, probe=True)
    assert cb.open_until == pytest.approx(15.0)
    cb.allow(15.0)
    cb.record(False, 15.0, probe=True)
    assert cb.open_until == pytest.approx(30.0)  # 20 s capped at 15 s


def test_an_abandoned_probe_frees_the_slot() -> None:
    cb = breaker(consecutive=1, open_s=1.0)
    cb.record(False, 0.0)
    assert cb.allow(1.0) == 0.0
    cb.abandon()
    assert cb.allow(1.0) == 0.0


def test_sends_in_flight_when_it_opened_do_not_lengthen_the_open_period() -> None:
    """16 concurrent sends fail in one outage: the circuit opens once, for open_s."""
    cb = breaker(consecutive=5, open_s=5.0, max_open_s=300.0)
    for _ in range(16):  # all let through while closed, all answering 500
        assert cb.allow(0.0) == 0.0
    for i in range(16):
        cb.record(False, 0.1 + i * 0.01)
    assert state(cb) is CircuitState.OPEN
    assert cb.open_until == pytest.approx(0.14 + 5.0)  # opened by the 5th failure, once
    assert cb.allow(5.2) == 0.0  # the probe
    cb.record(True, 5.3, probe=True)
    assert state(cb) is CircuitState.CLOSED


def test_a_late_success_does_not_close_and_a_late_failure_does_not_reopen() -> None:
    cb = breaker(consecutive=1, open_s=5.0)
    cb.record(False, 0.0)
    cb.record(True, 0.5)  # started before it opened
    assert state(cb) is CircuitState.OPEN
    assert cb.allow(5.0) == 0.0  # half-open: the probe is out
    cb.record(False, 5.1)  # another late one, not the probe
    assert state(cb) is CircuitState.HALF_OPEN
    assert cb.allow(5.1) > 0  # still waiting for the probe's answer
    cb.record(False, 5.2, probe=True)
    assert cb.open_until == pytest.approx(5.2 + 10.0)  # only the probe doubled it


@pytest.mark.parametrize("failures", [5, 16, 64, 500])
def test_however_many_concurrent_failures_the_first_open_period_is_open_s(failures: int) -> None:
    cb = breaker(consecutive=5, open_s=5.0, max_open_s=300.0)
    for i in range(failures):
        cb.record(False, i * 0.001)
    assert cb.open_until - (cb.opened_at or 0.0) == pytest.approx(5.0)
