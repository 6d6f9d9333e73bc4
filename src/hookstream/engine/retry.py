"""When to try a failed delivery again, and through which retry tier.

Pure: takes the attempt's result, the policy and a clock value, returns a
decision. Retry tiers are Kafka topics with a fixed delay each; a record goes
to the tier whose delay is the largest not above the wait it needs, carries its
exact due time, and is read when its `ready_at` comes: a tier partition is
paused until its head is ready.

A record whose wait is close to a tier's delay (within `landing_slack`)
"lands" there: it is ready when due. Any other record "hops": it is ready
sooner than its due time, and is then placed again for the rest of its wait.
Every record in a tier is ready within the slack of the tier's delay after it
was written, so no mix of schedules, Retry-After and parks in a tier holds a
record past its due time by more than max(1 s, 10% of its wait) (decision 018).
"""

from __future__ import annotations

import random
from dataclasses import dataclass, replace
from email.utils import parsedate_to_datetime

from hookstream.engine.outcome import AttemptResult

RETRY_POLICY_KINDS = ("exponential", "linear", "none")
MAX_ATTEMPTS_LIMIT = 50

# Hop tiers, added where the schedule leaves a gap (RetryPolicy.tiers): each is
# 4x the one below, so a wait crosses a few hops, and the smallest bounds how
# late a short wait can be.
HOP_LADDER = tuple(0.25 * 4**k for k in range(9))  # 0.25 s .. 16384 s (4.5 h)

# Statuses whose Retry-After header is honoured.
RETRY_AFTER_STATUSES = frozenset({429, 503})


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """The schedule: `delays[i]` is the wait before attempt i + 2 (the first is immediate)."""

    delays: tuple[float, ...]
    jitter: float = 0.2
    floor_s: float = 60.0  # least wait after a 429 or a timeout

    @property
    def max_attempts(self) -> int:
        """Attempts in all: the immediate one plus one per delay."""
        return len(self.delays) + 1

    linear_interval_s: float = 300.0  # the wait between attempts of a `linear` endpoint

    def tiers(self) -> tuple[float, ...]:
        """The tier delays: the schedule's, the linear interval and the floor, plus
        each hop-ladder delay below the longest with no tier within a factor of 2."""
        base = {*self.delays, self.linear_interval_s, self.floor_s}
        hops = {
            v for v in HOP_LADDER if v < max(base) and not any(v / 2 <= t <= v * 2 for t in base)
        }
        return tuple(sorted(base | hops))

    def for_endpoint(self, kind: str, max_attempts: int | None) -> RetryPolicy:
        """This policy as an endpoint asks for it.

        `exponential` follows the schedule, `linear` waits `linear_interval_s`
        every time, `none` never retries; `max_attempts` cuts the schedule short
        or extends it with its last delay.
        """
        if kind == "none":
            return replace(self, delays=())
        if kind == "linear":
            count = (max_attempts or self.max_attempts) - 1
            return replace(self, delays=(self.linear_interval_s,) * count)
        if max_attempts is None:
            return self
        wanted = max_attempts - 1
        delays = self.delays[:wanted]
        if len(delays) < wanted:
            last = self.delays[-1] if self.delays else self.linear_interval_s
            delays += (last,) * (wanted - len(delays))
        return replace(self, delays=delays)


def parse_schedule(text: str) -> tuple[float, ...]:
    """ "5,300,1800" → (5.0, 300.0, 1800.0); ValueError naming what is wrong."""
    try:
        delays = tuple(float(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise ValueError("expected comma-separated seconds, for example 5,300,1800") from None
    if any(d <= 0 for d in delays):
        raise ValueError("every delay must be greater than 0")
    return delays


def tier_name(delay_s: float) -> str:
    """A topic-safe name for a tier: 200ms, 5s, 300s."""
    if delay_s < 1:
        return f"{round(delay_s * 1000)}ms"
    if delay_s == int(delay_s):
        return f"{int(delay_s)}s"
    return f"{round(delay_s * 1000)}ms"


def tier_for(tiers: tuple[float, ...], wait_s: float) -> float:
    """The tier a record needing `wait_s` waits in: the largest tier delay not above it."""
    fitting = [t for t in tiers if t <= wait_s]
    return fitting[-1] if fitting else tiers[0]


def landing_slack(tier_s: float) -> float:
    """Half the width of a tier's landing band: a wait within this of the tier's
    delay lands in it. Twice this is the most a record behind is held back."""
    return max(0.2, 0.03 * tier_s)


def placement(tiers: tuple[float, ...], wait_s: float) -> tuple[float, float]:
    """(tier, ready_in_s) for a record that must wait `wait_s`.

    It lands (ready when due) in the largest tier whose band holds its wait,
    or in the first tier if it is shorter than every band. Otherwise it hops
    in the largest tier it outlasts by the slack: ready after the part of its
    wait above that tier's delay (at most the delay plus the slack), so that
    what is left lands in the same tier on the next write.
    """
    landing = [t for t in tiers if abs(wait_s - t) <= landing_slack(t)]
    if landing:
        return landing[-1], wait_s
    if wait_s < tiers[0]:
        return tiers[0], wait_s
    tier = [t for t in tiers if t + landing_slack(t) <= wait_s][-1]
    return tier, min(tier + landing_slack(tier), wait_s - tier)


def parse_retry_after(value: str | None, now: float) -> float | None:
    """Seconds from a Retry-After header (delta-seconds or HTTP-date); None if absent or bad."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        return None
    return max(0.0, when.timestamp() - now)


def next_wait(
    policy: RetryPolicy,
    attempt: int,
    result: AttemptResult,
    *,
    now: float,
    rng: random.Random,
) -> float | None:
    """Seconds to wait before the next attempt after `attempt` failed; None when exhausted.

    The scheduled delay gets ±jitter. A 429/503 Retry-After raises it, up to
    twice the scheduled delay. After a 429 or a timeout the wait is at least
    the policy's floor.
    """
    if attempt >= policy.max_attempts:
        return None
    scheduled = policy.delays[attempt - 1]
    wait = scheduled * (1 + rng.uniform(-policy.jitter, policy.jitter))
    if result.status in RETRY_AFTER_STATUSES:
        asked = parse_retry_after(result.retry_after, now)
        if asked is not None:
            wait = min(max(wait, asked), 2 * scheduled)
    if result.status == 429 or result.error_class == "timeout":
        wait = max(wait, policy.floor_s)
    return wait
