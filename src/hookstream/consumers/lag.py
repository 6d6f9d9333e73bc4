"""Consumer lag, pending retries and dead letters, as gauges refreshed every few seconds.

Lag is the classic exporter's: log end offset minus the group's committed
offset, per topic. The router group's lag on `events`, the dispatcher
group's on `deliveries`; on a retry tier the same figure is the number of
retries waiting (`hookstream_retry_pending{tier}`); `hookstream_dlq_messages`
counts the dead-letter topic's records. Every worker reports the same
cluster-wide figures (take max, not sum, across workers).

On the embedded broker, log end offsets can undercount multi-record batches
(decision 008), so lag and pending retries read low there (exact on Kafka);
the dead-letter count also follows fetch high watermarks, exact on both.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError
from prometheus_client import CollectorRegistry, Gauge
from redis.asyncio import Redis
from redis.exceptions import RedisError

from hookstream.config import Settings
from hookstream.kafka import consumer_options
from hookstream.redis_keys import RedisKeys
from hookstream.stacks import cancel_until_done
from hookstream.topics import TopicNames

log = logging.getLogger(__name__)


class LagMonitor:
    """Refreshes the lag gauges every `interval_s` while started."""

    def __init__(
        self,
        settings: Settings,
        registry: CollectorRegistry,
        *,
        redis: Redis | None = None,
        interval_s: float = 5.0,
    ) -> None:
        self._redis = redis
        self._settings = settings
        self._names = TopicNames(settings)
        self._interval_s = interval_s
        self.lag = Gauge(
            "hookstream_consumer_lag", "Records not yet consumed", ["topic"], registry=registry
        )
        self.retry_pending = Gauge(
            "hookstream_retry_pending", "Retries waiting in a tier", ["tier"], registry=registry
        )
        self.dlq = Gauge(
            "hookstream_dlq_messages", "Records in the dead-letter topic", registry=registry
        )
        self.refreshed_at: float | None = None  # monotonic time of the last success
        # One idle member per group (never subscribes, so never joins or
        # rebalances it) to read the group's committed offsets.
        self._groups: dict[str, AIOKafkaConsumer] = {}
        # Follows the dead-letter topic's end (few records): its fetches carry
        # the high watermark, which is exact where ListOffsets is not (008).
        self._dlq: AIOKafkaConsumer | None = None
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Connect and refresh in the background."""
        for group in (self._names.router_group, self._names.dispatcher_group):
            consumer = AIOKafkaConsumer(
                **consumer_options(self._settings, client_id="lag", background=True),
                group_id=group,
            )
            await consumer.start()
            self._groups[group] = consumer
        self._dlq = AIOKafkaConsumer(
            **consumer_options(self._settings, client_id="lag-dlq", background=True), group_id=None
        )
        await self._dlq.start()
        dlq_tps = [TopicPartition(self._names.dlq, p) for p in range(self._settings.partitions)]
        self._dlq.assign(dlq_tps)
        await self._dlq.seek_to_end(*dlq_tps)
        self._task = asyncio.create_task(self._loop(), name="lag-monitor")

    async def stop(self) -> None:
        """Stop refreshing, disconnect."""
        if self._task is not None:
            await cancel_until_done(self._task)  # it awaits Redis (stacks.py)
        for consumer in [*self._groups.values(), *([self._dlq] if self._dlq else [])]:
            await consumer.stop()

    async def refresh(self) -> None:
        """Read end offsets and committed offsets once; update the gauges."""
        names = self._names
        n = self._settings.partitions
        tiers = {topic: delay for delay, topic in names.retry_tiers.items()}
        topics = [names.events, names.deliveries, *tiers, names.dlq]
        tps = [TopicPartition(topic, p) for topic in topics for p in range(n)]
        router = self._groups[names.router_group]
        dispatcher = self._groups[names.dispatcher_group]
        ends = await router.end_offsets(tps)
        starts = await router.beginning_offsets([tp for tp in tps if tp.topic == names.dlq])
        owners = [(router if tp.topic == names.events else dispatcher, tp) for tp in tps]
        offsets = await asyncio.gather(
            *(group.committed(tp) for group, tp in owners if tp.topic != names.dlq)
        )
        committed = dict(
            zip([tp for _, tp in owners if tp.topic != names.dlq], offsets, strict=True)
        )

        def behind(topic: str) -> int:
            total = 0
            for p in range(n):
                tp = TopicPartition(topic, p)
                total += max(0, ends.get(tp, 0) - (committed.get(tp) or 0))
            return total

        self.lag.labels(names.events).set(behind(names.events))
        self.lag.labels(names.deliveries).set(behind(names.deliveries))
        for topic, _delay in tiers.items():
            self.retry_pending.labels(
                topic.removeprefix(f"{self._settings.topic_prefix}retry.")
            ).set(behind(topic))
        assert self._dlq is not None
        await self._dlq.getmany(timeout_ms=50)  # records dropped: only the watermark counts
        dlq = sum(
            max(0, max(ends.get(tp, 0), self._dlq.highwater(tp) or 0) - off)
            for tp, off in starts.items()
        )
        self.dlq.set(dlq)
        self.refreshed_at = time.monotonic()
        if self._redis is not None:
            # For the dashboard, which has no Prometheus to ask.
            pending = sum(behind(topic) for topic in tiers)
            with contextlib.suppress(RedisError, OSError):
                await self._redis.hset(
                    RedisKeys(self._settings).gauges,
                    mapping={"dlq": dlq, "retry_pending": pending, "at": time.time()},
                )

    async def _loop(self) -> None:
        while True:
            try:
                await self.refresh()
            except (TimeoutError, KafkaError, OSError) as exc:
                log.warning("lag not refreshed", extra={"error": str(exc)})
            await asyncio.sleep(self._interval_s)
