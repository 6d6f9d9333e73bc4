"""The circuit breaker: stop sending to an endpoint that keeps failing, probe, resume.

Pure. Closed, it counts outcomes: it opens after `consecutive` failures in a
row, or when at least `min_volume` attempts within `window_s` failed at
`failure_ratio` or more. Open, nothing is sent until `open_until`; then it is
half-open and lets exactly one probe through. A successful probe closes it
(with fresh counts); a failed one opens it again for twice as long, up to
`max_open_s`.

Only the probe's own outcome moves an open or half-open circuit. Sends that
were already in flight when it opened finish afterwards, often as failures
of the same outage; counting each as a failed probe would double the open
period once per send (16 concurrent failures: 5 s to 300 s at once).
"""

from __future__ import annotations

import enum
from collections import deque
from dataclasses import dataclass, field


class CircuitState(enum.Enum):
    """Where the breaker is."""

    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


@dataclass(frozen=True, slots=True)
class CircuitSettings:
    """When a circuit opens and for how long."""

    consecutive: int = 5
    failure_ratio: float = 0.5
    min_volume: int = 20
    window_s: float = 60.0
    open_s: float = 5.0
    max_open_s: float = 300.0


@dataclass(slots=True)
class CircuitBreaker:
    """One endpoint's breaker; `allow(now)` before a send, `record(ok, now)` after."""

    settings: CircuitSettings = field(default_factory=CircuitSettings)
    state: CircuitState = CircuitState.CLOSED
    consecutive_failures: int = 0
    opened_at: float | None = None
    open_until: float = 0.0
    probe_in_flight: bool = False
    _open_for: float = 0.0
    _recent: deque[tuple[float, bool]] = field(default_factory=deque)

    def allow(self, now: float) -> float:
        """0 when a send may start now (it may be the probe), else seconds to hold it back."""
        if self.state is CircuitState.CLOSED:
            return 0.0
        if self.state is CircuitState.OPEN:
            if now < self.open_until:
                return self.open_until - now
            self.state = CircuitState.HALF_OPEN
        if self.probe_in_flight:
            # Others wait for the probe's answer: about one open period at most.
            return max(self.settings.open_s, 0.05)
        self.probe_in_flight = True
        return 0.0

    def record(self, ok: bool, now: float, *, probe: bool = False) -> None:
        """Count one outcome of a send that `allow` let through; `probe` when it was the
        half-open circuit's probe. Other outcomes are ignored while the circuit is not
        closed: they started before it opened and say nothing new."""
        if self.state is not CircuitState.CLOSED:
            if not probe:
                return
            self.probe_in_flight = False
            if ok:
                self._close()
            else:
                self._open(now, self._open_for * 2)
            return
        self._recent.append((now, ok))
        horizon = now - self.settings.window_s
        while self._recent and self._recent[0][0] < horizon:
            self._recent.popleft()
        if ok:
            self.consecutive_failures = 0
            return
        self.consecutive_failures += 1
        if self.consecutive_failures >= self.settings.consecutive or self._ratio_tripped():
            self._open(now, self.settings.open_s)

    def abandon(self) -> None:
        """The send `allow` let through never happened: free the probe slot."""
        self.probe_in_flight = False

    def reset(self) -> None:
        """Closed with fresh counts (an operator re-enabled the endpoint)."""
        self._close()

    def _ratio_tripped(self) -> bool:
        volume = len(self._recent)
        if volume < self.settings.min_volume:
            return False
        failures = sum(1 for _, ok in self._recent if not ok)
        return failures / volume >= self.settings.failure_ratio

    def _open(self, now: float, seconds: float) -> None:
        self._open_for = min(self.settings.max_open_s, max(self.settings.open_s, seconds))
        self.state = CircuitState.OPEN
        self.opened_at = now
        self.open_until = now + self._open_for

    def _close(self) -> None:
        self.state = CircuitState.CLOSED
        self.consecutive_failures = 0
        self.opened_at = None
        self.open_until = 0.0
        self.probe_in_flight = False
        self._open_for = 0.0
        self._recent.clear()
