"""How late this process's event loop runs what is due: the worker's own delay.

A timer asks to wake every `INTERVAL_S`. How much later than asked it wakes is
the time the loop spent on everything else first. A delivery's answer waits
the same way before the courier sees it, so under a backlog that saturates the
worker, every endpoint's measured latency includes it. The gates subtract it,
so that only an endpoint slower than the worker's own delay counts as slow
(decision 024).

`delay_s` is the median of the last `SAMPLES` wakes: a single long callback
does not move it, and a saturated second does. It is also a gauge,
`hookstream_worker_loop_delay_seconds`.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from statistics import median

from prometheus_client import CollectorRegistry, Gauge

from hookstream.stacks import cancel_until_done

INTERVAL_S = 0.05
SAMPLES = 20  # one second of wakes


class LoopDelay:
    """Samples the event loop's delay while started."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.delay_s = 0.0
        self._samples: deque[float] = deque(maxlen=SAMPLES)
        self._task: asyncio.Task[None] | None = None
        self._gauge = (
            Gauge(
                "hookstream_worker_loop_delay_seconds",
                "How late the worker's event loop runs a due timer (median of 1 s)",
                registry=registry,
            )
            if registry is not None
            else None
        )

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="loop-delay")

    async def stop(self) -> None:
        if self._task is not None:
            await cancel_until_done(self._task)
            self._task = None

    def sample(self, late_s: float) -> None:
        """One wake, `late_s` after it was due."""
        self._samples.append(max(0.0, late_s))
        self.delay_s = median(self._samples)
        if self._gauge is not None:
            self._gauge.set(self.delay_s)

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        with contextlib.suppress(asyncio.CancelledError):
            while True:
                due = loop.time() + INTERVAL_S
                await asyncio.sleep(INTERVAL_S)
                self.sample(loop.time() - due)
