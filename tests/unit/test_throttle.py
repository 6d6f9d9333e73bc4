"""Rate limit (GCRA reservations) and adaptive concurrency (AIMD)."""

from __future__ import annotations

import pytest

from hookstream.engine.throttle import AdaptiveConcurrency, RateLimit


def test_a_flood_gets_slots_exactly_one_interval_apart() -> None:
    limit = RateLimit(50)
    waits = [limit.reserve(100.0) for _ in range(5)]
    assert waits == pytest.approx([0.0, 0.02, 0.04, 0.06, 0.08])


def test_burst_requests_start_together_after_idle() -> None:
    limit = RateLimit(10, burst=3)
    waits = [limit.reserve(0.0) for _ in range(4)]
    assert waits == pytest.approx([0.0, 0.0, 0.0, 0.1])


def test_an_idle_limit_does_not_bank_more_than_its_burst() -> None:
    limit = RateLimit(10, burst=2)
    limit.reserve(0.0)
    waits = [limit.reserve(60.0) for _ in range(3)]
    assert waits == pytest.approx([0.0, 0.0, 0.1])


def test_delay_peeks_without_reserving() -> None:
    limit = RateLimit(4)
    limit.reserve(0.0)
    assert limit.delay(0.0) == pytest.approx(0.25)
    assert limit.delay(0.0) == pytest.approx(0.25)


def test_rate_must_be_positive() -> None:
    with pytest.raises(ValueError, match="greater than 0"):
        RateLimit(0)


def test_concurrency_grows_only_while_saturated() -> None:
    cap = AdaptiveConcurrency(limit=4.0, maximum=8)
    for _ in range(4):
        cap.on_success(10.0, 10.0, saturated=False)
    assert cap.cap == 4
    for _ in range(5):  # about one cap's worth of successes grows it by one
        cap.on_success(10.0, 10.0, saturated=True)
    assert cap.cap == 5


def test_concurrency_never_exceeds_its_maximum() -> None:
    cap = AdaptiveConcurrency(limit=7.9, maximum=8)
    for _ in range(100):
        cap.on_success(10.0, 10.0, saturated=True)
    assert cap.cap == 8


def test_overload_halves_once_per_cooldown() -> None:
    cap = AdaptiveConcurrency(limit=16.0, cooldown_s=1.0)
    cap.on_overload(10.0)
    cap.on_overload(10.5)
    assert cap.cap == 8
    cap.on_overload(11.1)
    assert cap.cap == 4


def test_overload_stops_at_the_minimum() -> None:
    cap = AdaptiveConcurrency(limit=2.0, minimum=1, cooldown_s=0.0)
    for t in range(10):
        cap.on_overload(float(t))
    assert cap.cap == 1


def test_a_latency_surge_shrinks_the_cap() -> None:
    cap = AdaptiveConcurrency(limit=20.0)
    cap.on_success(400.0, 100.0, saturated=True)
    assert cap.cap == 18


def test_the_cap_follows_every_change_of_the_limit() -> None:
    cap = AdaptiveConcurrency(limit=5.5, minimum=2)
    assert cap.cap == 5
    cap.limit = 3.99  # as a gate does when an endpoint's maximum is lowered
    assert (cap.limit, cap.cap) == (3.99, 3)
    cap.limit = 0.5
    assert cap.cap == 2  # never below the minimum
    cap.limit = 9.0
    cap.on_success(400.0, 100.0, saturated=True)  # a surge: 9 × 0.9
    assert cap.limit == pytest.approx(8.1)
    assert cap.cap == 8
    cap.on_overload(0.0)
    assert cap.cap == 4
