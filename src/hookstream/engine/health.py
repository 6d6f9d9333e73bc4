"""An endpoint's health: sliding-window attempt stats, a 0..1 score and a state.

Pure. `HealthWindow` keeps per-bucket counts over the last `window_s` seconds
(success, failure, timeout, summed latency), plus a slow-moving latency
baseline of the endpoint's own successful answers. The score multiplies three
factors, each 1.0 when all is well:

* success ratio in the window;
* latency: 1.0 up to twice the baseline, then falling to 0.5 at six times it;
* timeouts: 1 - half the share of attempts that timed out.

No attempts in the window score 1.0: silence is not sickness.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any

HEALTHY_AT = 0.9  # score at or above: healthy
FAILING_BELOW = 0.5  # score below: failing (between the two: degraded)
BASELINE_ALPHA = 0.05  # weight of one success in the latency baseline (about 20 answers)
BASELINE_SAMPLES = 10  # successes before the baseline is trusted


class HealthState(enum.Enum):
    """What the dashboard and the API say about an endpoint."""

    HEALTHY = "healthy"
    DEGRADED = "degraded"
    FAILING = "failing"
    DISABLED = "disabled"


@dataclass(slots=True)
class _Bucket:
    start: float
    successes: int = 0
    failures: int = 0
    timeouts: int = 0
    latency_ms: float = 0.0  # summed over successes


@dataclass(slots=True)
class WindowStats:
    """Totals over the window."""

    attempts: int
    successes: int
    failures: int
    timeouts: int
    latency_ms: float | None  # mean over successes

    @property
    def success_ratio(self) -> float | None:
        """Successes / attempts, or None without attempts."""
        return self.successes / self.attempts if self.attempts else None


@dataclass(slots=True)
class HealthWindow:
    """Attempt outcomes over the last `window_s` seconds in `buckets` slices."""

    window_s: float = 300.0
    buckets: int = 10
    baseline_ms: float | None = None
    _samples: int = 0
    _slices: list[_Bucket] = field(default_factory=list)

    def record(self, now: float, *, ok: bool, latency_ms: float, timeout: bool = False) -> None:
        """Count one attempt's outcome."""
        bucket = self._bucket(now)
        if ok:
            bucket.successes += 1
            bucket.latency_ms += latency_ms
            self._samples += 1
            if self.baseline_ms is None:
                self.baseline_ms = latency_ms
            else:
                self.baseline_ms += BASELINE_ALPHA * (latency_ms - self.baseline_ms)
        else:
            bucket.failures += 1
            bucket.timeouts += int(timeout)

    @property
    def trusted_baseline_ms(self) -> float | None:
        """The latency baseline once enough successes back it, else None."""
        return self.baseline_ms if self._samples >= BASELINE_SAMPLES else None

    def stats(self, now: float) -> WindowStats:
        """Totals over the buckets still inside the window."""
        self._expire(now)
        successes = sum(b.successes for b in self._slices)
        failures = sum(b.failures for b in self._slices)
        latency = sum(b.latency_ms for b in self._slices)
        return WindowStats(
            attempts=successes + failures,
            successes=successes,
            failures=failures,
            timeouts=sum(b.timeouts for b in self._slices),
            latency_ms=latency / successes if successes else None,
        )

    def score(self, now: float) -> float:
        """0..1, see the module doc."""
        return score(self.stats(now), self.trusted_baseline_ms)

    def _bucket(self, now: float) -> _Bucket:
        width = self.window_s / self.buckets
        start = now - now % width
        if not self._slices or self._slices[-1].start < start:
            self._expire(now)
            self._slices.append(_Bucket(start))
        return self._slices[-1]

    def _expire(self, now: float) -> None:
        horizon = now - self.window_s
        width = self.window_s / self.buckets
        while self._slices and self._slices[0].start + width <= horizon:
            self._slices.pop(0)


def score(stats: WindowStats, baseline_ms: float | None) -> float:
    """The health score for window totals against a latency baseline."""
    if not stats.attempts:
        return 1.0
    ratio = stats.successes / stats.attempts
    latency = 1.0
    if baseline_ms and stats.latency_ms is not None:
        rise = stats.latency_ms / max(baseline_ms, 1.0)
        if rise > 2.0:
            latency = max(0.5, 1.0 - (rise - 2.0) / 8.0)
    timeouts = 1.0 - 0.5 * stats.timeouts / stats.attempts
    return round(ratio * latency * timeouts, 4)


def state_for(score_value: float, *, disabled: bool, circuit_open: bool) -> HealthState:
    """The state an endpoint is in for its score and circuit."""
    if disabled:
        return HealthState.DISABLED
    if circuit_open or score_value < FAILING_BELOW:
        return HealthState.FAILING
    if score_value < HEALTHY_AT:
        return HealthState.DEGRADED
    return HealthState.HEALTHY


def stats_dict(stats: WindowStats) -> dict[str, Any]:
    """Window totals as the API shows them."""
    ratio = stats.success_ratio
    return {
        "attempts": stats.attempts,
        "successes": stats.successes,
        "failures": stats.failures,
        "timeouts": stats.timeouts,
        "success_ratio": None if ratio is None else round(ratio, 4),
        "latency_ms": None if stats.latency_ms is None else round(stats.latency_ms, 1),
    }
