"""The worker's delivery metrics: Prometheus series and the dashboard's rollup.

Every process builds its own `CollectorRegistry` (passed in, never the
global default), so several workers or APIs in one process (tests, `dev`)
never share series, and each process is its own scrape target: nothing is
shared between processes that could need locking (Prometheus sums them).

Label sets are fixed: `outcome` has five values, and per-endpoint series
live only in the bounded health collector (consumers/health_metrics.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import defaultdict
from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Histogram
from redis.asyncio import Redis
from redis.exceptions import RedisError

from hookstream.engine.outcome import Verdict
from hookstream.redis_keys import RedisKeys
from hookstream.stacks import cancel_until_done

log = logging.getLogger(__name__)

OUTCOMES = ("delivered", "retry", "dead", "parked", "dropped")
ATTEMPT_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 15.0, 30.0)
# Event occurred → delivered: milliseconds on the first attempt, up to a day on retries.
LATENCY_BUCKETS = (
    0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
    10.0, 30.0, 60.0, 300.0, 1800.0, 7200.0, 86400.0,
)  # fmt: skip
ROLLUP_STEP_S = 10  # the dashboard's resolution
ROLLUP_TTL_S = 2 * 3600


class WorkerMetrics:
    """Counters and histograms the router and dispatcher update."""

    def __init__(self, registry: CollectorRegistry, *, clock: Callable[[], float] = time.time):
        self.registry = registry
        self._clock = clock
        self.events = Counter("hookstream_events", "Events routed", registry=registry)
        self.deliveries = Counter(
            "hookstream_deliveries", "Delivery outcomes", ["outcome"], registry=registry
        )
        for outcome in OUTCOMES:
            self.deliveries.labels(outcome)
        self.attempt_duration = Histogram(
            "hookstream_attempt_duration_seconds",
            "One HTTP attempt, connect to response head",
            buckets=ATTEMPT_BUCKETS,
            registry=registry,
        )
        self.delivery_latency = Histogram(
            "hookstream_delivery_latency_seconds",
            "Event occurred → delivered (2xx)",
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        # step start → field → count, flushed to Redis by `RollupFlusher`
        self.pending: dict[int, dict[str, int]] = defaultdict(lambda: defaultdict(int))

    def attempted(self, verdict: Verdict, duration_ms: float, occurred_at_ms: int) -> None:
        """Count one attempt's outcome (retry or dead for failures)."""
        now = self._clock()
        self.deliveries.labels(verdict.value).inc()
        self.attempt_duration.observe(duration_ms / 1000)
        step = self.pending[int(now) // ROLLUP_STEP_S * ROLLUP_STEP_S]
        if verdict is Verdict.DELIVERED:
            step["delivered"] += 1
            if occurred_at_ms:
                latency = max(0.0, now - occurred_at_ms / 1000)
                self.delivery_latency.observe(latency)
                step[f"lat:{_bucket_index(latency)}"] += 1
        else:
            step["failed"] += 1

    def parked(self) -> None:
        """A delivery was held back in a retry tier (not an attempt)."""
        self.deliveries.labels("parked").inc()

    def dropped(self) -> None:
        """A delivery whose endpoint was deleted, or an undecodable record."""
        self.deliveries.labels("dropped").inc()


def _bucket_index(latency_s: float) -> int:
    for i, bound in enumerate(LATENCY_BUCKETS):
        if latency_s <= bound:
            return i
    return len(LATENCY_BUCKETS)


class RollupFlusher:
    """Adds the worker's per-step counts into Redis every second (soft state)."""

    def __init__(self, metrics: WorkerMetrics, redis: Redis, keys: RedisKeys) -> None:
        self._metrics = metrics
        self._redis = redis
        self._keys = keys
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Start flushing in the background."""
        self._task = asyncio.create_task(self._loop(), name="rollup-flush")

    async def stop(self) -> None:
        """Flush once more and stop."""
        if self._task is not None:
            await cancel_until_done(self._task)  # it awaits Redis (stacks.py)
        with contextlib.suppress(RedisError, OSError):
            await self.flush()

    async def flush(self) -> None:
        """Write and forget what was counted since the last flush."""
        pending, self._metrics.pending = (
            self._metrics.pending,
            defaultdict(lambda: defaultdict(int)),
        )
        if not pending:
            return
        async with self._redis.pipeline(transaction=False) as pipe:
            for start, fields in pending.items():
                key = self._keys.rollup(start)
                for name, count in fields.items():
                    pipe.hincrby(key, name, count)
                pipe.expire(key, ROLLUP_TTL_S)
            await pipe.execute()

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(1.0)
            try:
                await self.flush()
            except (RedisError, OSError) as exc:
                # The dashboard loses these counts; Prometheus still has them.
                log.warning("dashboard rollup not stored", extra={"error": str(exc)})
