"""The health book: every owned endpoint's gate, its concurrency slots, its snapshots.

The dispatcher asks the book for an endpoint's gate before each delivery and
reports each outcome back; the gate (engine/gate.py) decides and scores, the
book does the I/O around it:

* concurrency slots: deliveries wait here, in arrival order, for the
  endpoint's adaptive cap;
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
from collections import deque
from collections.abc import Callable
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from redis.asyncio import Redis
from redis.exceptions import RedisError

from hookstream.config import Settings
from hookstream.engine.clock import parse_rfc3339
from hookstream.engine.endpoint import Endpoint
from hookstream.engine.gate import EndpointGate
from hookstream.engine.outcome import AttemptResult
from hookstream.kafka import LogEndGuard, consumer_options, stop_client
from hookstream.topics import TopicNames

log = logging.getLogger(__name__)

SNAPSHOT_TTL_S = 7 * 24 * 3600
CATCH_UP_S = 5.0


def _epoch(timestamp: str) -> float:
    try:
        return parse_rfc3339(timestamp).timestamp()
    except ValueError:
        return 0.0


def health_key(settings: Settings, endpoint_id: str) -> str:
    """Redis key of an endpoint's latest health snapshot."""
    return f"{settings.topic_prefix}health:{endpoint_id}"


def health_index_key(settings: Settings) -> str:
    """Redis sorted set of every observed endpoint, by `rank(snapshot)`, worst first."""
    return f"{settings.topic_prefix}health-index"


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
    """Gates of the endpoints this worker delivers to, and their published health."""

    def __init__(
        self,
        settings: Settings,
        producer: AIOKafkaProducer,
        redis: Redis | None,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._settings = settings
        self._gate_settings = settings.gate_settings
        self._topic = TopicNames(settings).health
        self._producer = producer
        self._redis = redis
        self._clock = clock
        self._gates: dict[str, EndpointGate] = {}
        self._partition: dict[str, TopicPartition] = {}
        self._disabled: dict[str, bool] = {}
        self._versions: dict[str, str] = {}  # updated_at of the config each gate follows
        self._waiters: dict[str, deque[asyncio.Future[None]]] = {}
        self._dirty: set[str] = set()
        self._published: dict[str, tuple[Any, ...]] = {}
        self._seeds: dict[str, float] = {}  # failing-since times read from the topic
        self._consumer: AIOKafkaConsumer | None = None
        self._loops: list[asyncio.Task[None]] = []

    # -- lifecycle ---------------------------------------------------------

    async def start(self) -> None:
        """Read the health topic (bounded wait), then tail it and publish periodically."""
        consumer = AIOKafkaConsumer(
            **consumer_options(self._settings, client_id="health"), group_id=None
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
        for task in self._loops:
            task.cancel()
        for task in self._loops:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        with contextlib.suppress(Exception):
            await self.publish()
        if self._consumer is not None:
            await stop_client(self._consumer)

    # -- gates -------------------------------------------------------------

    def gate(self, endpoint: Endpoint, tp: TopicPartition | None = None) -> EndpointGate:
        """The gate for `endpoint`, created on first use, updated to its current config.

        Any change to an enabled endpoint (an enable, a new URL) closes its
        circuit and restarts its auto-disable clock: it gets a fresh chance.
        """
        gate = self._gates.get(endpoint.id)
        if gate is None:
            seed = self._seeds.get(endpoint.id)
            if seed is not None and seed < _epoch(endpoint.updated_at):
                seed = None  # changed since it started failing
            gate = self._gates[endpoint.id] = EndpointGate(
                endpoint.id,
                self._gate_settings,
                rate_limit=endpoint.rate_limit,
                max_concurrency=endpoint.max_concurrency,
                failing_since=seed,
            )
            self._versions[endpoint.id] = endpoint.updated_at
        elif self._versions.get(endpoint.id) != endpoint.updated_at:
            self._versions[endpoint.id] = endpoint.updated_at
            gate.configure(endpoint.rate_limit, endpoint.max_concurrency)
            if not endpoint.disabled:
                gate.reset()
        if self._disabled.get(endpoint.id) != endpoint.disabled:
            self._disabled[endpoint.id] = endpoint.disabled
            self._dirty.add(endpoint.id)
        if tp is not None:
            self._partition[endpoint.id] = tp
        return gate

    def get(self, endpoint_id: str) -> EndpointGate | None:
        """The gate of an endpoint this worker has delivered to, if any."""
        return self._gates.get(endpoint_id)

    def gates(self) -> list[EndpointGate]:
        """Every gate this worker holds."""
        return list(self._gates.values())

    def is_disabled(self, endpoint_id: str) -> bool:
        """Whether the endpoint was disabled when last seen."""
        return self._disabled.get(endpoint_id, False)

    def forget(self, revoked: set[TopicPartition]) -> None:
        """Drop the gates of endpoints whose partitions moved to another worker."""
        for endpoint_id, tp in list(self._partition.items()):
            gate = self._gates.get(endpoint_id)
            if tp in revoked and gate is not None and not gate.in_flight and not gate.waiting:
                if gate.failing_since is not None:
                    self._seeds[endpoint_id] = gate.failing_since
                del self._gates[endpoint_id]
                del self._partition[endpoint_id]
                self._versions.pop(endpoint_id, None)

    # -- concurrency slots -----------------------------------------------------

    async def take_slot(self, gate: EndpointGate) -> None:
        """Wait, in arrival order, until the endpoint's cap lets one more delivery start."""
        if gate.can_start() and gate.endpoint_id not in self._waiters:
            gate.started(self._clock())
            return
        while True:
            waiters = self._waiters.setdefault(gate.endpoint_id, deque())
            future = asyncio.get_running_loop().create_future()
            waiters.append(future)
            try:
                await future
            except asyncio.CancelledError:
                with contextlib.suppress(ValueError):
                    waiters.remove(future)
                self._wake(gate)
                raise
            if gate.can_start():
                break
        gate.started(self._clock())

    def settle(self, gate: EndpointGate, result: AttemptResult, *, probe: bool = False) -> None:
        """Count a sent delivery's outcome and hand its slot on."""
        gate.finished(result, self._clock(), probe=probe)
        self._dirty.add(gate.endpoint_id)
        self._wake(gate)

    def _wake(self, gate: EndpointGate) -> None:
        waiters = self._waiters.get(gate.endpoint_id)
        free = gate.concurrency.cap - gate.in_flight
        while waiters and free > 0:
            future = waiters.popleft()
            if not future.done():
                future.set_result(None)
                free -= 1
        if waiters is not None and not waiters:
            del self._waiters[gate.endpoint_id]

    def touched(self, gate: EndpointGate) -> None:
        """Mark a gate's snapshot as changed (it parked or admitted something)."""
        self._dirty.add(gate.endpoint_id)

    # -- publishing --------------------------------------------------------

    async def publish(self) -> None:
        """Write the snapshots of changed endpoints to Redis and, on a state change, Kafka."""
        if not self._dirty:
            return
        now = self._clock()
        dirty, self._dirty = self._dirty, set()
        snapshots: dict[str, dict[str, Any]] = {}
        for endpoint_id in dirty:
            gate = self._gates.get(endpoint_id)
            if gate is not None:
                snapshots[endpoint_id] = gate.snapshot(now, disabled=self.is_disabled(endpoint_id))
        sends = []
        for endpoint_id, snap in snapshots.items():
            gate = self._gates[endpoint_id]
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
                    index = health_index_key(self._settings)
                    for endpoint_id, snap in snapshots.items():
                        pipe.set(
                            health_key(self._settings, endpoint_id),
                            orjson.dumps(snap),
                            ex=SNAPSHOT_TTL_S,
                        )
                        pipe.zadd(index, {endpoint_id: rank(snap)})
                    await pipe.execute()
            except RedisError as exc:
                # Soft state: the next change publishes again.
                self._dirty |= set(snapshots)
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
        guard = LogEndGuard("health", self._settings.bootstrap)
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
                endpoint_id = record.key.decode()
                if endpoint_id in self._gates:
                    continue  # we own it: our own state is the newest
                try:
                    since = orjson.loads(record.value)["failing_since_ts"] if record.value else None
                except (orjson.JSONDecodeError, KeyError, TypeError):
                    continue
                if since is None:
                    self._seeds.pop(endpoint_id, None)
                else:
                    self._seeds[endpoint_id] = float(since)
