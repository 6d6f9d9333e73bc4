"""The health book: publishes the health of every endpoint this worker owns.

The gates (consumers/gates.py) score each endpoint as its deliveries finish
and mark what changed; the book does the I/O around them:

* snapshots: every `health_publish_interval_s`, the endpoints that changed
  go to Redis (`<prefix>health:<id>`, for the API and dashboard) and, when
  their state, circuit or failing-since time changed, to the compacted
  `health` topic;
* the `health` topic is read back at start and tailed, so the auto-disable
  clock (failing since) survives restarts and moves with an endpoint when its
  partition moves to another worker.

Health is scored here, in the endpoint's owner, from the same outcomes that
are written to the `attempts` topic: the circuit breaker and the adaptive cap
need it synchronously, and one owner per endpoint means no other process
would see the full stream anyway (decision 009).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from redis.asyncio import Redis
from redis.exceptions import RedisError

from hookstream.config import Settings
from hookstream.consumers.gates import EndpointGates
from hookstream.kafka import LogEndGuard, consumer_options, stop_client
from hookstream.redis_keys import RedisKeys
from hookstream.stacks import cancel_until_done
from hookstream.topics import TopicNames

log = logging.getLogger(__name__)

SNAPSHOT_TTL_S = 7 * 24 * 3600
CATCH_UP_S = 5.0


def rank(snapshot: dict[str, Any]) -> float:
    """Sort score: the health score, below 0.5 when failing, -1 when disabled.

    So ZCOUNT ranges give the state counts: [-1] disabled, [0, 0.5) failing,
    [0.5, 0.9) degraded, [0.9, 1] healthy.
    """
    state = snapshot["state"]
    if state == "disabled":
        return -1.0
    score = float(snapshot["score"])
    return min(score, 0.49) if state == "failing" else score


class HealthBook:
    """The published health of the endpoints whose gates this worker holds."""

    def __init__(
        self,
        settings: Settings,
        gates: EndpointGates,
        producer: AIOKafkaProducer,
        redis: Redis | None,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._settings = settings
        self._gates = gates
        self._topic = TopicNames(settings).health
        self._producer = producer
        self._redis = redis
        self._clock = clock
        self._published: dict[str, tuple[Any, ...]] = {}
        self._consumer: AIOKafkaConsumer | None = None
        self._loops: list[asyncio.Task[None]] = []

    # -- lifecycle ---------------------------------------------------------

    async def start(self) -> None:
        """Read the health topic (bounded wait), then tail it and publish periodically."""
        consumer = AIOKafkaConsumer(
            **consumer_options(self._settings, client_id="health", background=True), group_id=None
        )
        await consumer.start()
        self._consumer = consumer
        tp = TopicPartition(self._topic, 0)
        consumer.assign([tp])
        await consumer.seek_to_beginning(tp)
        end = (await consumer.end_offsets([tp]))[tp]
        deadline = time.monotonic() + CATCH_UP_S
        while await consumer.position(tp) < end and time.monotonic() < deadline:
            self._apply(await consumer.getmany(tp, timeout_ms=200))
        for name, loop in (("tail", self._tail), ("publish", self._publish_loop)):
            self._loops.append(asyncio.create_task(loop(), name=f"health-{name}"))

    async def stop(self) -> None:
        """Publish what changed one last time, stop tailing."""
        # The publish loop awaits Redis (stacks.py).
        await asyncio.gather(*(cancel_until_done(task) for task in self._loops))
        with contextlib.suppress(Exception):
            await self.publish()
        if self._consumer is not None:
            await stop_client(self._consumer)

    # -- publishing --------------------------------------------------------

    async def publish(self) -> None:
        """Write the snapshots of changed endpoints to Redis and, on a state change, Kafka."""
        dirty = self._gates.changed()
        if not dirty:
            return
        now = self._clock()
        gates = {i: g for i in dirty if (g := self._gates.get(i)) is not None}
        snapshots = {
            i: gate.snapshot(now, disabled=self._gates.is_disabled(i)) for i, gate in gates.items()
        }
        sends = []
        for endpoint_id, snap in snapshots.items():
            gate = gates[endpoint_id]
            marker = (snap["state"], snap["circuit"]["state"], gate.failing_since)
            if self._published.get(endpoint_id) != marker:
                self._published[endpoint_id] = marker
                record = {**snap, "failing_since_ts": gate.failing_since}
                sends.append(
                    await self._producer.send(
                        self._topic, key=endpoint_id.encode(), value=orjson.dumps(record)
                    )
                )
        if self._redis is not None and snapshots:
            try:
                async with self._redis.pipeline(transaction=False) as pipe:
                    keys = RedisKeys(self._settings)
                    index = keys.health_index
                    for endpoint_id, snap in snapshots.items():
                        pipe.set(
                            keys.health(endpoint_id),
                            orjson.dumps(snap),
                            ex=SNAPSHOT_TTL_S,
                        )
                        pipe.zadd(index, {endpoint_id: rank(snap)})
                    await pipe.execute()
            except RedisError as exc:
                # Soft state: the next change publishes again.
                self._gates.unpublished(snapshots)
                log.warning("health snapshot not stored", extra={"error": str(exc)})
        if sends:
            await asyncio.gather(*sends)

    async def _publish_loop(self) -> None:
        while True:
            await asyncio.sleep(self._settings.health_publish_interval_s)
            try:
                await self.publish()
            except Exception:
                log.exception("health publishing failed; will retry")

    # -- the health topic ------------------------------------------------------

    async def _tail(self) -> None:
        consumer = self._consumer
        assert consumer is not None
        guard = LogEndGuard("health", self._settings)
        while True:
            await guard.check(consumer)
            batch = await consumer.getmany(timeout_ms=1000)
            guard.saw(batch)
            self._apply(batch)

    def _apply(self, batch: dict[TopicPartition, list[Any]]) -> None:
        for records in batch.values():
            for record in records:
                if record.key is None:
                    continue
                try:
                    since = orjson.loads(record.value)["failing_since_ts"] if record.value else None
                    self._gates.seed(record.key.decode(), None if since is None else float(since))
                except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
                    continue
