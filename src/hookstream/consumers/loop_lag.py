"""How late this worker's event loop runs: the part of a measured answer time
that is the worker's own, not the endpoint's.

With the CPU saturated, a response that has arrived waits for its turn of the
loop, and the attempt's measured duration grows by that wait. The gates
(consumers/gates.py) take the loop's lateness off a duration before an
endpoint's latency is learnt from it, and a delivery waiting for a slot is
not called overdue for a delay the loop explains (decision 021).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import Callable

from prometheus_client import CollectorRegistry, Gauge

TICK_S = 0.02  # how often the loop is asked to wake
HALF_LIFE_S = 1.0  # of the mean lateness
RECENT_S = 1.0  # the window of the worst lateness


class LoopLag:
    """Samples the loop's lateness: `mean_s` (smoothed) and `recent_s` (worst, last second)."""

    def __init__(
        self,
        registry: CollectorRegistry | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._clock = clock
        self._alpha = 1 - 0.5 ** (TICK_S / HALF_LIFE_S)
        self.mean_s = 0.0
        self._recent: deque[tuple[float, float]] = deque()  # (when, lateness), worst kept
        self._task: asyncio.Task[None] | None = None
        self._gauge = (
            None
            if registry is None
            else Gauge(
                "hookstream_worker_loop_lag_seconds",
                "How late the worker's event loop ran, smoothed (the CPU is short when high)",
                registry=registry,
            )
        )

    @property
    def recent_s(self) -> float:
        """The worst lateness of the last second."""
        return self._recent[0][1] if self._recent else 0.0

    def start(self) -> None:
        """Begin sampling in the running loop."""
        self._task = asyncio.create_task(self._run(), name="loop-lag")

    async def stop(self) -> None:
        """Stop sampling."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    def note(self, late_s: float) -> None:
        """Take one sample: the loop woke `late_s` after it was due."""
        now = self._clock()
        late_s = max(late_s, 0.0)
        self.mean_s += self._alpha * (late_s - self.mean_s)
        recent = self._recent
        while recent and recent[-1][1] <= late_s:
            recent.pop()  # a later, worse sample replaces it as the window's worst
        recent.append((now, late_s))
        while recent[0][0] < now - RECENT_S:
            recent.popleft()
        if self._gauge is not None:
            self._gauge.set(self.mean_s)

    async def _run(self) -> None:
        while True:
            due = self._clock() + TICK_S
            await asyncio.sleep(TICK_S)
            self.note(self._clock() - due)
