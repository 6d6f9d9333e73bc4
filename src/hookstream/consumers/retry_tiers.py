"""Retry tiers: failed deliveries wait in Kafka, not in memory, until they are due.

`RetryTiers` is the dispatcher's failure handler. A retryable failure is
written to the tier topic for its wait, with its due time and attempt history
in headers; an exhausted or final one goes to the dead letters; a 410 also
disables the endpoint. Each write is acknowledged before the source offset may
be committed, so a crash at any point re-delivers rather than loses.

Reading tiers back is the dispatcher's job: it consumes every tier in the same
group as `deliveries` (same partitions, same key), pausing a tier partition
until its head record is ready (`ready_at`), and hands back a record that is
ready but not yet due, to hop on (engine/retry.py, `placement`).
"""

from __future__ import annotations

import logging
import math
import random
import time
from collections.abc import Callable

from aiokafka import AIOKafkaProducer
from aiokafka.structs import ConsumerRecord

from hookstream.consumers.dlq import DeadLetters
from hookstream.consumers.ops import OpsEvents
from hookstream.consumers.registry import EndpointRegistry
from hookstream.engine.delivery import DeliveryTask
from hookstream.engine.endpoint import Endpoint
from hookstream.engine.outcome import AttemptResult, Verdict
from hookstream.engine.retry import RetryPolicy, next_wait, placement
from hookstream.producers.durable import until_written

log = logging.getLogger(__name__)


class RetryTiers:
    """Puts failed attempts where they belong: a retry tier or the dead letters."""

    def __init__(
        self,
        policy: RetryPolicy,
        tier_topics: dict[float, str],
        producer: AIOKafkaProducer,
        dead_letters: DeadLetters,
        registry: EndpointRegistry,
        ops: OpsEvents,
        *,
        clock: Callable[[], float] = time.time,
        rng: random.Random | None = None,
    ) -> None:
        self._policy = policy
        self._tiers = tuple(sorted(tier_topics))
        self._topics = tier_topics
        self._producer = producer
        self._dead = dead_letters
        self._registry = registry
        self._ops = ops
        self._disabling: set[str] = set()
        self._clock = clock
        self._rng = rng or random.Random()
        self.scheduled = 0
        self.parked = 0
        self.hops = 0

    def wait_for(
        self, task: DeliveryTask, endpoint: Endpoint, result: AttemptResult
    ) -> float | None:
        """Seconds until the next attempt of `task` after `result`, or None when exhausted."""
        policy = self._policy.for_endpoint(endpoint.retry_policy, endpoint.max_attempts)
        return next_wait(policy, task.attempt, result, now=self._clock(), rng=self._rng)

    async def handle(
        self,
        task: DeliveryTask,
        result: AttemptResult,
        verdict: Verdict,
        reason: str,
        wait_s: float | None,
    ) -> None:
        """Make the failure durable: a tier record, or a dead letter (and a disable on 410)."""
        if verdict is Verdict.RETRY and wait_s is not None:
            await self._schedule(task, wait_s)
            return
        if verdict is Verdict.RETRY:
            reason = f"attempts exhausted ({task.attempt}); last: {reason}"
        if result.status == 410:
            await self.disable(task.endpoint_id, "it answered 410 Gone")
        await self._dead.write(task, reason)
        if verdict is Verdict.RETRY:
            await self._ops.attempts_exhausted(task, self._registry.get(task.endpoint_id), reason)

    async def dead(self, task: DeliveryTask, reason: str) -> None:
        """Park a task that will not be attempted (its endpoint is disabled)."""
        await self._dead.write(task, reason)

    async def poison(self, record: ConsumerRecord[bytes, bytes], reason: str, source: str) -> None:
        """Park an unreadable record (bad headers or body) so its offset can pass."""
        await self._dead.write_poison(record, reason, source)

    async def park(self, task: DeliveryTask, wait_s: float, *, reserved: bool) -> None:
        """Hold back an attempt that was not sent (circuit open, endpoint saturated).

        It keeps its attempt number: parking is not an attempt.
        """
        due_at_ms = int((self._clock() + wait_s) * 1000)
        await self._write(wait_s, task.parked(due_at_ms=due_at_ms, reserved=reserved))
        self.parked += 1

    async def hop(self, task: DeliveryTask) -> None:
        """Place a record that is ready but not due again, for the rest of its wait."""
        await self._write(task.due_at_ms / 1000 - self._clock(), task)
        self.hops += 1

    async def disable(self, endpoint_id: str, why: str) -> None:
        """Disable an endpoint (once) and tell its tenant through an operational event."""
        endpoint = self._registry.get(endpoint_id)
        # Concurrent failures of one endpoint all ask; the first one disables it.
        if endpoint is None or endpoint.disabled or endpoint_id in self._disabling:
            return
        self._disabling.add(endpoint_id)
        try:
            disabled = endpoint.with_changes(disabled=True, disabled_reason=why)
            await self._registry.put(disabled)
            log.warning(
                f"endpoint disabled: {why}",
                extra={"endpoint_id": endpoint_id, "tenant": endpoint.tenant},
            )
            await self._ops.endpoint_disabled(disabled, why)
        finally:
            self._disabling.discard(endpoint_id)

    async def _schedule(self, task: DeliveryTask, wait_s: float) -> None:
        due_at_ms = int((self._clock() + wait_s) * 1000)
        await self._write(wait_s, task.next_attempt(due_at_ms=due_at_ms))
        self.scheduled += 1

    async def _write(self, wait_s: float, task: DeliveryTask) -> None:
        tier, ready_in_s = placement(self._tiers, wait_s)
        topic = self._topics[tier]
        ready_at_ms = b"%d" % math.ceil((self._clock() + ready_in_s) * 1000)
        headers = [*task.headers(), ("ready_at", ready_at_ms)]
        await until_written(
            lambda: self._producer.send_and_wait(
                topic, value=task.body, key=task.endpoint_id.encode(), headers=headers
            ),
            topic,
        )
