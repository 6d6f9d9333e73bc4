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
    placement,
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


def test_tiers_are_the_distinct_delays_plus_the_floor_plus_hops_in_the_gaps() -> None:
    policy = RetryPolicy(delays=(5, 300, 300, 1800), floor_s=60)
    # 0.25, 1 and 16 fill gaps; 4, 64, 256 and 1024 have a delay within a factor of 2.
    assert policy.tiers() == (0.25, 1, 5, 16, 60, 300, 1800)
    # No hop tier above the longest delay, none where a short one exists.
    assert RetryPolicy(delays=(0.2,), floor_s=0.5, linear_interval_s=0.6).tiers() == (
        0.2,
        0.5,
        0.6,
    )


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
    assert RetryPolicy(delays=(5,), linear_interval_s=42, floor_s=60).tiers() == (
        0.25,
        1,
        5,
        16,
        42,
        60,
    )


def test_a_wait_near_a_tier_lands_and_any_other_hops_to_land_next() -> None:
    tiers = (0.25, 1.0, 5.0, 60.0)
    assert placement(tiers, 5.15) == (5.0, 5.15)  # within 0.2 s: ready when due
    assert placement(tiers, 4.85) == (5.0, 4.85)  # on either side
    assert placement(tiers, 61.7) == (60.0, 61.7)  # within 3% of 60 s
    assert placement(tiers, 0.1) == (0.25, 0.1)  # shorter than every tier: lands in the first
    # Hops: ready after the part above the tier, so the rest lands there next.
    assert placement(tiers, 7.5) == (5.0, 2.5)
    assert placement(tiers, 5.0 + 2.5) == placement(tiers, 7.5)
    # Far above a tier: at most its delay plus its slack per hop.
    assert placement(tiers, 59) == (60.0, 59)  # lands below its tier, within the band
    assert placement(tiers, 40) == (5.0, 5.2)
    assert placement(tiers, 10_000) == (60.0, 61.8)


def _writes(tiers: tuple[float, ...], wait_s: float) -> int:
    writes, left = 1, wait_s
    while (ready_in := placement(tiers, left)[1]) < left:
        writes, left = writes + 1, left - ready_in
    return writes


def test_a_jittered_or_doubled_wait_takes_few_writes_with_the_default_tiers() -> None:
    policy = RetryPolicy(delays=(5, 300, 1800, 7200, 18000, 36000), floor_s=60)
    tiers = policy.tiers()
    rng = random.Random(3)
    for delay in policy.delays:
        jittered = [_writes(tiers, delay * rng.uniform(0.8, 1.2)) for _ in range(500)]
        doubled = [_writes(tiers, delay * rng.uniform(1, 2)) for _ in range(500)]
        assert max(jittered) <= 6, delay
        assert max(doubled) <= 6, delay
        assert sum(jittered) / len(jittered) <= 3.5, delay


def _simulate(tiers: tuple[float, ...], writes: list[tuple[float, float]]) -> list[float]:
    """Lateness of each record when tiers are FIFO queues read at their head's
    ready time, and a record read before it is due is placed again."""
    queues: dict[float, list[tuple[float, float, float]]] = {t: [] for t in tiers}
    heads = dict.fromkeys(tiers, 0)
    pending = sorted(writes)
    late: list[float] = []
    now = 0.0
    next_write = 0

    def place(at: float, due: float, wait: float) -> None:
        tier, ready_in = placement(tiers, due - at)
        queues[tier].append((at + ready_in, due, wait))

    while True:
        ready = [(q[heads[t]][0], t) for t, q in queues.items() if heads[t] < len(q)]
        head = min(ready, default=None)
        if next_write < len(pending) and (head is None or pending[next_write][0] <= head[0]):
            at, wait = pending[next_write]
            next_write += 1
            now = max(now, at)
            place(at, at + wait, wait)
            continue
        if head is None:
            return late
        now = max(now, head[0])
        _, due, wait = queues[head[1]][heads[head[1]]]
        heads[head[1]] += 1
        if due > now:
            place(now, due, wait)
        else:
            late.append((now - due) / max(1.0, 0.1 * wait))


def test_no_mix_in_a_tier_holds_a_record_past_its_due_time_by_the_bound() -> None:
    policy = RetryPolicy(delays=(5, 300, 1800, 7200, 18000), floor_s=60, linear_interval_s=300)
    rng = random.Random(7)
    writes = []
    for _ in range(20_000):
        at = rng.uniform(0, 6 * 3600)
        kind = rng.random()
        scheduled = rng.choice(policy.delays)
        if kind < 0.4:  # the schedule with jitter
            wait = scheduled * rng.uniform(0.8, 1.2)
        elif kind < 0.6:  # a Retry-After, up to twice the schedule
            wait = rng.uniform(scheduled, 2 * scheduled)
        elif kind < 0.8:  # parks: circuit open or saturated, any short wait
            wait = rng.uniform(0.01, 120)
        else:  # a linear endpoint, or the floor after a 429
            wait = rng.choice((300.0, 60.0))
        writes.append((at, wait))
    late = _simulate(policy.tiers(), writes)
    assert len(late) == len(writes)
    # As a share of each record's allowance, max(1 s, 10% of its wait): at most
    # two thirds of it, leaving the rest for polling and clocks.
    assert max(late) <= 0.67
