"""How fast and how wide one endpoint may be sent to: a rate limit and an adaptive cap.

Pure: each takes observations and a clock value and returns numbers; the
dispatcher acts on them.

`RateLimit` is GCRA (a token bucket kept as one timestamp): every request
reserves the next slot, so a flood gets exact start times 1/rate apart instead
of polling for tokens. `AdaptiveConcurrency` is AIMD: while answers come back
2xx at a steady latency and the cap is what limits the endpoint, it grows by
one per cap's worth of successes; a 429, a 503, a timeout or a latency surge
halves it (at most once per `cooldown_s`, so one burst of failures counts once).
"""

from __future__ import annotations


class RateLimit:
    """A requests-per-second limit with a burst allowance, as reservations (GCRA)."""

    __slots__ = ("_interval", "_tat", "_tolerance", "rate")

    def __init__(self, rate: float, burst: int = 1) -> None:
        if rate <= 0:
            raise ValueError("rate must be greater than 0")
        self.rate = rate
        self._interval = 1.0 / rate
        # `burst` requests may start back to back after an idle period.
        self._tolerance = self._interval * max(0, burst - 1)
        self._tat = float("-inf")  # theoretical arrival time of the next request

    def reserve(self, now: float) -> float:
        """Reserve the next slot; seconds from `now` until it (0 = go now)."""
        start = max(now, self._tat - self._tolerance)
        self._tat = max(self._tat, now) + self._interval
        return start - now

    def delay(self, now: float) -> float:
        """Seconds until a request could start, without reserving."""
        return max(0.0, self._tat - self._tolerance - now)


class AdaptiveConcurrency:
    """An AIMD cap on requests in flight to one endpoint.

    `cap` is stored, and set again whenever `limit` changes: the gate reads it
    several times per delivery, and as a property it cost 1% of a worker."""

    __slots__ = ("_last_cut", "_limit", "cap", "cooldown_s", "maximum", "minimum", "surge_factor")

    def __init__(
        self,
        limit: float,
        minimum: int = 1,
        maximum: int = 64,
        cooldown_s: float = 1.0,
        surge_factor: float = 3.0,  # a latency this many times the baseline counts as overload
    ) -> None:
        self.minimum = minimum
        self.maximum = maximum
        self.cooldown_s = cooldown_s
        self.surge_factor = surge_factor
        self._last_cut = float("-inf")
        self.limit = limit

    @property
    def limit(self) -> float:
        """The cap before rounding down: it grows by fractions."""
        return self._limit

    @limit.setter
    def limit(self, value: float) -> None:
        self._limit = value
        self.cap = max(self.minimum, int(value))  # requests allowed in flight now

    def on_success(self, latency_ms: float, baseline_ms: float | None, saturated: bool) -> None:
        """A 2xx: grow when the cap was the limit and latency is steady; shrink on a surge."""
        if baseline_ms is not None and latency_ms > self.surge_factor * baseline_ms:
            self._cut(0.9, None)
            return
        if saturated and self._limit < self.maximum:
            limit = self._limit
            self.limit = min(float(self.maximum), limit + 1.0 / max(1.0, limit))

    def on_overload(self, now: float) -> None:
        """A 429, 503 or timeout: halve the cap (once per cooldown)."""
        self._cut(0.5, now)

    def _cut(self, factor: float, now: float | None) -> None:
        if now is not None:
            if now - self._last_cut < self.cooldown_s:
                return
            self._last_cut = now
        self.limit = max(float(self.minimum), self._limit * factor)
