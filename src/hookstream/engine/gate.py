"""One endpoint's gate: may this delivery start, wait a moment, or be parked?

Pure; the dispatcher keeps one gate per endpoint it owns and acts on what the
gate returns. A gate combines the circuit breaker, the rate limit, the
adaptive concurrency cap and the health window, and remembers when the
endpoint last succeeded (for auto-disable).

Admission estimates how long a new delivery would wait before it can start:
until the circuit lets it through, until its rate slot, and until a
concurrency slot frees (the queue ahead of it × latency ÷ cap). Latency is
the endpoint's baseline, but never less than the age of its oldest request
still in flight while it holds every slot: an endpoint that has not answered
yet is not assumed fast. With a slot free, deliveries wait for the worker to
start them, not for the endpoint, and its old request is not held against it
(decision 038).
Before its first answer an endpoint has no baseline, and the estimate is the
floor, `COLD_LATENCY_S`: a burst to a new endpoint is admitted, not parked
on a guess (decision 020). Up to `hold_max_s` it waits in memory; beyond
that it is parked in a retry tier, due when its turn is expected, and behind
the deliveries parked for a slot before it: a backlog comes back spread over
the time the endpoint needs for it, each delivery once (decision 033). An
estimate can be wrong, so it is made again where the wait happens: a
delivery still without a concurrency slot after `hold_max_s` is evicted and
parked when the endpoint now shows that its turn is still further off
(`overdue`, `evicted`). So a slow or saturated endpoint holds about what it
can start within `hold_max_s` of the in-flight window.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any

from hookstream.engine.circuit import CircuitBreaker, CircuitSettings, CircuitState
from hookstream.engine.clock import rfc3339
from hookstream.engine.health import HealthState, HealthWindow, state_for, stats_dict
from hookstream.engine.outcome import AttemptResult
from hookstream.engine.throttle import AdaptiveConcurrency, RateLimit
from hookstream.engine.values import direct_init

# Answer time assumed before an endpoint has answered: low, so a new endpoint's
# first burst is admitted; the eviction after `hold_max_s` bounds a wrong guess.
COLD_LATENCY_S = 0.005


@dataclass(frozen=True, slots=True)
class GateSettings:
    """Deployment-wide knobs for every gate."""

    hold_max_s: float = 1.0
    initial_concurrency: int = 16
    max_concurrency: int = 64
    window_s: float = 300.0
    auto_disable_after_s: float = 5 * 24 * 3600.0
    request_timeout_s: float = 15.0  # no attempt lasts longer: caps the in-flight age bound
    circuit: CircuitSettings = field(default_factory=CircuitSettings)


@direct_init
@dataclass(frozen=True, slots=True)
class Admission:
    """What to do with one delivery now."""

    wait_s: float = 0.0  # wait this long in memory, then take a concurrency slot
    park_s: float | None = None  # or: park it, due this many seconds from now
    reason: str = ""
    reserved: bool = False  # a rate slot is already held for it (carried when parked)
    probe: bool = False  # it is the half-open circuit's probe


class EndpointGate:
    """Admission, outcome bookkeeping and health for one endpoint."""

    def __init__(
        self,
        endpoint_id: str,
        settings: GateSettings,
        *,
        rate_limit: float | None = None,
        max_concurrency: int | None = None,
        failing_since: float | None = None,
    ) -> None:
        self.endpoint_id = endpoint_id
        self.settings = settings
        self.circuit = CircuitBreaker(settings.circuit)
        self.window = HealthWindow(window_s=settings.window_s)
        cap = max_concurrency or settings.max_concurrency
        self.concurrency = AdaptiveConcurrency(
            limit=float(min(settings.initial_concurrency, cap)), maximum=cap
        )
        self.rate: RateLimit | None = None
        self._pacer: RateLimit | None = None
        self._rate_value: float | None = None
        self.configure(rate_limit, max_concurrency)
        self.in_flight = 0
        # Start times of the newest `in_flight` starts: its head is no older than
        # the oldest request really in flight, so its age is a safe lower bound.
        self._starts: deque[float] = deque()
        self.waiting = 0  # admitted, holding the window, not started yet
        self.last_success_at: float | None = None
        self.failing_since = failing_since  # first failure since the last success
        self.parked = 0
        # When the deliveries parked for a concurrency slot are expected to have
        # started: each one parked is due a start's share later than the last.
        self._parked_until = 0.0

    def configure(self, rate_limit: float | None, max_concurrency: int | None) -> None:
        """Apply the endpoint's own limits (they may change while it runs)."""
        if rate_limit != self._rate_value:
            self._rate_value = rate_limit
            burst = max(1, int(rate_limit * 0.05)) if rate_limit else 1
            self.rate = RateLimit(rate_limit, burst) if rate_limit else None
            self._pacer = RateLimit(rate_limit, burst) if rate_limit else None
        cap = max_concurrency or self.settings.max_concurrency
        if cap != self.concurrency.maximum:
            self.concurrency.maximum = cap
            self.concurrency.limit = min(self.concurrency.limit, float(cap))

    # -- admit -------------------------------------------------------------

    def admit(self, now: float, *, reserved: bool = False, delay_s: float = 0.0) -> Admission:
        """Decide for one delivery that wants to start now; `delay_s` is how late the
        worker's own loop runs (consumers/loop_delay.py), which no endpoint is to blame for."""
        hold = self.circuit.allow(now)
        if hold > 0:
            self.parked += 1
            return Admission(park_s=hold, reason="circuit open")
        probe = self.circuit.state is CircuitState.HALF_OPEN
        rate_wait = 0.0
        if self.rate is not None and not reserved:
            rate_wait = self.rate.reserve(now)
            reserved = True
        wait = max(rate_wait, self._queue_wait(now, delay_s))
        if wait > self.settings.hold_max_s:
            if probe:
                self.circuit.abandon()
            self.parked += 1
            if rate_wait >= wait:  # its rate slot is reserved: already in line
                return Admission(park_s=wait, reason="rate limit", reserved=reserved)
            park_s = self._in_line(now, wait, delay_s)
            return Admission(park_s=park_s, reason="concurrency limit", reserved=reserved)
        self.waiting += 1
        return Admission(wait_s=rate_wait, reserved=reserved, probe=probe)

    def _queue_wait(self, now: float, delay_s: float) -> float:
        ahead = self.in_flight + self.waiting + 1 - self.concurrency.cap
        return self._wait_behind(ahead, now, delay_s)

    def _wait_behind(self, ahead: int, now: float, delay_s: float) -> float:
        """Seconds until `ahead` more deliveries have started, on the endpoint's own
        time: its latency and its oldest request's age, less the worker's delay in
        both (a busy worker makes every endpoint look slow, and parking would only
        add work to it; decision 024)."""
        if ahead <= 0:
            return 0.0
        return ahead * self._start_every(now, delay_s)

    def _start_every(self, now: float, delay_s: float) -> float:
        """Seconds between starts while the endpoint is at its cap: latency ÷ cap.
        The oldest request's age counts only while every slot has a request out:
        with one free, or taken by a waiter that has not run yet, the next start
        waits for the worker, not the endpoint (decision 038)."""
        latency_s = (self.window.baseline_ms or COLD_LATENCY_S * 1000) / 1000
        if self._starts and len(self._starts) >= self.concurrency.cap:
            age_s = min(now - self._starts[0], self.settings.request_timeout_s)
            latency_s = max(latency_s, age_s)
        latency_s = max(latency_s - delay_s, COLD_LATENCY_S)
        return latency_s / self.concurrency.cap

    def _in_line(self, now: float, wait_s: float, delay_s: float) -> float:
        """Park one delivery for a concurrency slot: due at its expected turn, and behind
        those parked before it, so a backlog comes back spread over the time the
        endpoint needs for it, each delivery once, not all of it at every hold
        (decision 033). Returns seconds from now."""
        due = max(now + wait_s, self._parked_until)
        self._parked_until = due + self._start_every(now, delay_s)
        return due - now

    def overdue(self, now: float, position: int, *, delay_s: float = 0.0) -> bool:
        """A delivery has waited `hold_max_s` for a slot, `position` others ahead of it in
        the queue: True when what the endpoint shows now (its latency, its oldest
        request in flight) says its turn is still more than `hold_max_s` away.

        A delivery that waits because the worker is busy, not the endpoint, is not
        overdue: parking it would only add work where there is too much already."""
        ahead = self.in_flight - self.concurrency.cap + position + 1
        return self._wait_behind(ahead, now, delay_s) > self.settings.hold_max_s

    def can_start(self) -> bool:
        """A concurrency slot is free."""
        return self.in_flight < self.concurrency.cap

    def pace(self, now: float) -> float:
        """Seconds the delivery about to start must still wait for the rate limit.

        Slots are reserved at admission, but a delivery can reach its start
        late (a parked one back from its tier, a busy loop) and meet others on
        time; the limit holds for actual starts too, so late ones are spaced
        out rather than sent in a bunch. Usually 0."""
        return self._pacer.reserve(now) if self._pacer is not None else 0.0

    def started(self, now: float) -> None:
        """An admitted delivery took a free concurrency slot and goes at `now`."""
        self.taken()
        self.going(now)

    def taken(self) -> None:
        """A concurrency slot was taken in a waiting delivery's name, as it was freed."""
        self.waiting -= 1
        self.in_flight += 1

    def going(self, now: float) -> None:
        """The delivery holding a taken slot goes at `now`: from then on its request
        is out, and its age counts."""
        self._starts.append(now)

    def handed_back(self) -> None:
        """A slot taken in a waiting delivery's name was never used: the delivery was
        cancelled before it ran. It is free again, and the delivery counts as
        waiting, for `abandoned` to settle."""
        self.in_flight -= 1
        self.waiting += 1

    def recheck(self, now: float, *, probe: bool = False) -> float | None:
        """An admitted delivery just took its slot: if the circuit opened while it waited,
        it is not sent. Its slot is freed and it is parked; returns when it is due
        (None: send it). The probe itself is always sent."""
        if probe or self.circuit.state is CircuitState.CLOSED:
            return None
        self.in_flight -= 1
        if self._starts:
            self._starts.pop()
        self.parked += 1
        if self.circuit.state is CircuitState.OPEN:
            return max(self.circuit.open_until - now, 0.05)
        return max(self.settings.circuit.open_s, 0.05)  # half open: after the probe's answer

    def abandoned(self, *, started: bool, probe: bool = False) -> None:
        """An admitted delivery was cancelled (the worker is stopping) before it was sent."""
        if started:
            self.in_flight -= 1
            if self._starts:
                self._starts.pop()
        else:
            self.waiting -= 1
        if probe:
            self.circuit.abandon()

    def evicted(self, now: float, *, probe: bool = False, delay_s: float = 0.0) -> float:
        """An admitted delivery is `overdue`: it is parked instead. Returns when it is
        due (its expected turn, at least the hold)."""
        self.waiting -= 1
        self.parked += 1
        if probe:
            self.circuit.abandon()
        wait_s = max(self.settings.hold_max_s, self._queue_wait(now, delay_s))
        return self._in_line(now, wait_s, delay_s)

    # -- settle ------------------------------------------------------------

    def finished(self, result: AttemptResult, now: float, *, probe: bool = False) -> None:
        """Count a sent delivery's outcome (`probe`: it was admitted as the circuit's
        probe); frees its concurrency slot."""
        saturated = self.in_flight >= self.concurrency.cap
        self.in_flight -= 1
        if self._starts:
            self._starts.popleft()
        timeout = result.error_class == "timeout"
        self.window.record(now, ok=result.ok, latency_ms=result.duration_ms, timeout=timeout)
        if result.ok:
            self.last_success_at = now
            self.failing_since = None
            self.concurrency.on_success(
                result.duration_ms, self.window.trusted_baseline_ms, saturated
            )
        else:
            if self.failing_since is None:
                self.failing_since = now
            if result.status in (429, 503) or timeout:
                self.concurrency.on_overload(now)
        # A 429 or an abort request means the receiver is there and answering.
        alive = result.ok or result.status == 429 or result.abort_requested
        self.circuit.record(alive, now, probe=probe)

    def should_disable(self, now: float) -> bool:
        """No success for the auto-disable period."""
        return (
            self.failing_since is not None
            and now - self.failing_since >= self.settings.auto_disable_after_s
        )

    def reset(self) -> None:
        """An operator re-enabled the endpoint: close the circuit, restart the clock."""
        self.circuit.reset()
        self.failing_since = None

    # -- report ------------------------------------------------------------

    def state(self, now: float, *, disabled: bool = False) -> HealthState:
        """healthy / degraded / failing / disabled."""
        return state_for(
            self.window.score(now),
            disabled=disabled,
            circuit_open=self.circuit.state is not CircuitState.CLOSED,
        )

    def snapshot(self, now: float, *, disabled: bool = False) -> dict[str, Any]:
        """Everything the health API shows about this endpoint."""
        stats = self.window.stats(now)
        circuit = self.circuit
        baseline = self.window.baseline_ms
        return {
            "endpoint_id": self.endpoint_id,
            "score": self.window.score(now),
            "state": self.state(now, disabled=disabled).value,
            "window": {
                "seconds": self.settings.window_s,
                **stats_dict(stats),
                "baseline_latency_ms": None if baseline is None else round(baseline, 1),
            },
            "circuit": {
                "state": circuit.state.value,
                "consecutive_failures": circuit.consecutive_failures,
                "opened_at": _when(circuit.opened_at),
                "open_until": _when(circuit.open_until if circuit.opened_at is not None else None),
            },
            "concurrency": {
                "limit": self.concurrency.cap,
                "maximum": self.concurrency.maximum,
                "in_flight": self.in_flight,
                "waiting": self.waiting,
            },
            "rate_limit": self._rate_value,
            "parked": self.parked,
            "last_success_at": _when(self.last_success_at),
            "failing_since": _when(self.failing_since),
            "observed_at": _when(now),
        }


def _when(ts: float | None) -> str | None:
    return None if ts is None else rfc3339(ts)
