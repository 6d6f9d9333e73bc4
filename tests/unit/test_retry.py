"""The retry policy: schedule, jitter, Retry-After (clamped), the floor, tiers."""

from __future__ import annotations

import random
from datetime import UTC, datetime
from email.utils import format_datetime

import pytest

from hookstream.engine.outcome import AttemptResult
from hookstream.engine.retry import (
    RetryPolicy,
    next_wait,
    parse_retry_after,
    parse_schedule,
    tier_for,
    tier_name,
)

POLICY = RetryPolicy(delays=(5, 300, 1800), jitter=0.0, floor_s=60)
NOW = 1_800_000_000.0


def _wait(result: AttemptResult, attempt: int = 1, policy: RetryPolicy = POLICY) -> float | None:
    return next_wait(policy, attempt, result, now=NOW, rng=random.Random(1))


def _status(status: int, retry_after: str | None = None) -> AttemptResult:
    return AttemptResult(status=status, duration_ms=1, retry_after=retry_after)


def test_the_default_schedule_is_eight_attempts_over_about_a_day() -> None:
    policy = RetryPolicy(delays=parse_schedule("5,300,1800,7200,18000,36000,36000"))
    assert policy.max_attempts == 8
    assert 23 * 3600 < sum(policy.delays) < 28 * 3600


def test_the_schedule_is_followed_then_exhausted() -> None:
    assert [_wait(_status(500), attempt=a) for a in (1, 2, 3)] == [5, 300, 1800]
    assert _wait(_status(500), attempt=4) is None


def test_jitter_stays_within_its_fraction_and_varies() -> None:
    policy = RetryPolicy(delays=(100,), jitter=0.2)
    rng = random.Random(3)
    waits = [next_wait(policy, 1, _status(500), now=NOW, rng=rng) for _ in range(500)]
    assert all(w is not None and 80 <= w <= 120 for w in waits)
    assert len({round(w or 0) for w in waits}) > 20


def test_retry_after_raises_the_wait() -> None:
    assert _wait(_status(503, "8")) == 8


def test_retry_after_is_clamped_to_twice_the_schedule() -> None:
    assert _wait(_status(503, "3600")) == 10
    assert _wait(_status(503, "3600"), attempt=2) == 600


def test_retry_after_shorter_than_the_schedule_does_not_shorten_it() -> None:
    assert _wait(_status(503, "1"), attempt=2) == 300


def test_retry_after_as_an_http_date() -> None:
    when = format_datetime(datetime.fromtimestamp(NOW + 7, UTC), usegmt=True)
    assert _wait(_status(503, when)) == pytest.approx(7)


def test_retry_after_is_ignored_on_other_statuses() -> None:
    assert _wait(_status(500, "8")) == 5


def test_429_and_timeouts_wait_at_least_the_floor() -> None:
    assert _wait(_status(429)) == 60
    assert _wait(_status(429, "3600")) == 60  # clamp (10) then floor
    timeout = AttemptResult(status=None, duration_ms=1, error_class="timeout")
    assert _wait(timeout) == 60
    assert _wait(_status(429), attempt=3) == 1800


@pytest.mark.parametrize(
    ("value", "seconds"),
    [("120", 120.0), (" 5 ", 5.0), ("", None), (None, None), ("soon", None), ("-3", None)],
)
def test_parse_retry_after(value: str | None, seconds: float | None) -> None:
    assert parse_retry_after(value, NOW) == seconds


def test_a_past_http_date_means_now() -> None:
    past = format_datetime(datetime.fromtimestamp(NOW - 60, UTC), usegmt=True)
    assert parse_retry_after(past, NOW) == 0.0


def test_tiers_are_the_distinct_delays_plus_the_floor() -> None:
    policy = RetryPolicy(delays=(5, 300, 300, 1800), floor_s=60)
    assert policy.tiers() == (5, 60, 300, 1800)


def test_a_record_waits_in_the_largest_tier_not_above_its_wait() -> None:
    tiers = (5.0, 60.0, 300.0)
    assert tier_for(tiers, 4) == 5  # shorter than every tier: the first
    assert tier_for(tiers, 5) == 5
    assert tier_for(tiers, 59) == 5
    assert tier_for(tiers, 60) == 60
    assert tier_for(tiers, 10_000) == 300


def test_tier_names_are_topic_safe() -> None:
    assert [tier_name(d) for d in (0.2, 5, 300, 1.5)] == ["200ms", "5s", "300s", "1500ms"]


@pytest.mark.parametrize("text", ["5,x", "0", "5,-1"])
def test_bad_schedules_are_refused(text: str) -> None:
    with pytest.raises(ValueError, match=r"delay|seconds"):
        parse_schedule(text)


def test_an_endpoint_can_cut_extend_or_replace_the_schedule() -> None:
    policy = RetryPolicy(delays=(5, 300, 1800), linear_interval_s=60)
    assert policy.for_endpoint("exponential", None) == policy
    assert policy.for_endpoint("exponential", 2).delays == (5,)
    assert policy.for_endpoint("exponential", 6).delays == (5, 300, 1800, 1800, 1800)
    assert policy.for_endpoint("linear", 4).delays == (60, 60, 60)
    assert policy.for_endpoint("linear", None).delays == (60, 60, 60)
    assert policy.for_endpoint("none", 10).max_attempts == 1
    assert policy.for_endpoint("exponential", 1).max_attempts == 1


def test_the_linear_interval_is_a_tier() -> None:
    assert RetryPolicy(delays=(5,), linear_interval_s=42, floor_s=60).tiers() == (5, 42, 60)
