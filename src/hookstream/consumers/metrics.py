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
from bisect import bisect_left
from collections import defaultdict
from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, Counter
from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString
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
# A router batch's stages, each once per batch: how long its newest event waited
# from its publish to the batch's start, the registry barrier, routing, and the
# broker's acknowledgements of its delivery records (consumers/router.py).
ROUTER_STAGES = ("waited", "barrier", "route", "acks")
ROUTER_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
ROLLUP_STEP_S = 10  # the dashboard's resolution
ROLLUP_TTL_S = 2 * 3600


class WorkerMetrics:
    """Counters and histograms the router and dispatcher update.

    Per delivery, the outcome and the two histograms are plain counts, read
    into Prometheus's families when /metrics is scraped. Through
    prometheus_client's own `labels().inc()` and `observe()`, each a lock and a
    lookup, one attempt cost 11.8 µs, about 3% of a steady worker (decision 043).
    """

    def __init__(self, registry: CollectorRegistry, *, clock: Callable[[], float] = time.time):
        self.registry = registry
        self._clock = clock
        self.events = Counter("hookstream_events", "Events routed", registry=registry)  # per batch
        self.outcomes = dict.fromkeys(OUTCOMES, 0)
        self.attempt_duration = Buckets(ATTEMPT_BUCKETS)
        self.delivery_latency = Buckets(LATENCY_BUCKETS)
        self.attempt_batches_lost = 0
        self.router_batch = {stage: Buckets(ROUTER_BUCKETS) for stage in ROUTER_STAGES}
        registry.register(_Families(self))
        # step start → field → count, flushed to Redis by `RollupFlusher`
        self.pending: dict[int, dict[str, int]] = defaultdict(lambda: defaultdict(int))

    def attempted(self, verdict: Verdict, duration_ms: float, occurred_at_ms: int) -> None:
        """Count one attempt's outcome (retry or dead for failures)."""
        now = self._clock()
        self.attempt_duration.observe(duration_ms / 1000)
        step = self.pending[int(now) // ROLLUP_STEP_S * ROLLUP_STEP_S]
        if verdict is Verdict.DELIVERED:  # an enum's `.value` is a descriptor call
            self.outcomes["delivered"] += 1
            step["delivered"] += 1
            if occurred_at_ms:
                latency = max(0.0, now - occurred_at_ms / 1000)
                step[_LATENCY_FIELDS[self.delivery_latency.observe(latency)]] += 1
        else:
            self.outcomes[verdict.value] += 1
            step["failed"] += 1

    def parked(self) -> None:
        """A delivery was held back in a retry tier (not an attempt)."""
        self.outcomes["parked"] += 1

    def dropped(self) -> None:
        """A delivery whose endpoint was deleted, or an undecodable record."""
        self.outcomes["dropped"] += 1

    def routed_batch(
        self, waited_s: float, barrier_s: float, route_s: float, acks_s: float
    ) -> None:
        """One router batch's stages, in seconds (`ROUTER_STAGES`)."""
        stages = self.router_batch
        stages["waited"].observe(max(0.0, waited_s))  # a producer's clock may be ahead
        stages["barrier"].observe(barrier_s)
        stages["route"].observe(route_s)
        stages["acks"].observe(acks_s)

    def attempt_batch_lost(self) -> None:
        """The broker answered a batch of attempt records with an error that may
        pass: those records are not in the attempt log (consumers/attempts.py)."""
        self.attempt_batches_lost += 1


class Buckets:
    """A histogram's counts as Prometheus buckets them (a value goes in the first
    bucket whose upper bound it does not exceed), without a lock: one event loop
    updates it and the same loop serves the scrape."""

    __slots__ = ("bounds", "counts", "sum")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)  # the last: above every bound (+Inf)
        self.sum = 0.0

    def observe(self, value: float) -> int:
        """Count `value`; the index of its bucket."""
        index = bisect_left(self.bounds, value)
        self.counts[index] += 1
        self.sum += value
        return index

    def family(self, name: str, documentation: str) -> HistogramMetricFamily:
        """The histogram's exposition: cumulative buckets, sum and count."""
        return HistogramMetricFamily(
            name, documentation, buckets=self.cumulative(), sum_value=self.sum
        )

    def cumulative(self) -> list[tuple[str, float]]:
        """Prometheus's buckets: (upper bound, count of values at most it)."""
        cumulative: list[tuple[str, float]] = []
        total = 0
        for bound, count in zip((*self.bounds, float("inf")), self.counts, strict=True):
            total += count
            cumulative.append((floatToGoString(bound), total))  # type: ignore[no-untyped-call]
        return cumulative


class _Families(Collector):
    """What a scrape reads of `WorkerMetrics`' plain counts."""

    def __init__(self, metrics: WorkerMetrics) -> None:
        self._metrics = metrics

    def collect(self) -> Iterator[Metric]:
        metrics = self._metrics
        outcomes = CounterMetricFamily(
            "hookstream_deliveries", "Delivery outcomes", labels=["outcome"]
        )
        for outcome, count in metrics.outcomes.items():
            outcomes.add_metric([outcome], count)
        yield outcomes
        yield metrics.attempt_duration.family(
            "hookstream_attempt_duration_seconds", "One HTTP attempt, connect to response head"
        )
        yield metrics.delivery_latency.family(
            "hookstream_delivery_latency_seconds", "Event occurred → delivered (2xx)"
        )
        router = HistogramMetricFamily(
            "hookstream_router_batch_seconds",
            "A router batch's stages: its newest event's wait, barrier, routing, acknowledgements",
            labels=["stage"],
        )
        for stage, buckets in metrics.router_batch.items():
            router.add_metric([stage], buckets.cumulative(), buckets.sum)
        yield router
        yield CounterMetricFamily(
            "hookstream_attempt_batches_lost",
            "Batches of attempt records the broker did not take (the attempt log is soft state)",
            value=metrics.attempt_batches_lost,
        )


_LATENCY_FIELDS = tuple(f"lat:{i}" for i in range(len(LATENCY_BUCKETS) + 1))  # the rollup's


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
