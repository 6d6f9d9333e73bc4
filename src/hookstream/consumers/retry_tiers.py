"""Retry tiers: deliveries wait in Kafka, not in memory, until they are due.

`RetryTiers` only writes tier records: a retry (the next attempt, due after
the settled wait), a park (the same attempt, held back unsent by its gate),
and a hop (a record that came back ready but not due, placed again for the
rest of its wait). Every record carries its due time and attempt history in
headers, and a `ready_at` for when the dispatcher may read it; each write is
acknowledged before the source offset may be committed, so a crash at any
point re-delivers rather than loses.

Reading tiers back is the dispatcher's job: it consumes every tier in the same
group as `deliveries` (same partitions, same key), pausing a tier partition
until its head record is ready (`ready_at`, decision 036), and hands back a record that is
ready but not yet due, to hop on (engine/retry.py, `placement`).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

from aiokafka import AIOKafkaProducer

from hookstream.engine.delivery import DeliveryTask
from hookstream.engine.retry import placement
from hookstream.producers.durable import until_written


class RetryTiers:
    """Writes deliveries to the tier topic that fits their wait."""

    def __init__(
        self,
        tier_topics: dict[float, str],
        producer: AIOKafkaProducer,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._tiers = tuple(sorted(tier_topics))
        self._topics = tier_topics
        self._producer = producer
        self._clock = clock
        self.scheduled = 0
        self.hops = 0
        self.held = 0

    async def schedule(self, task: DeliveryTask, wait_s: float) -> None:
        """The next attempt of a failed delivery, due in `wait_s`."""
        due_at_ms = int((self._clock() + wait_s) * 1000)
        await self._write(wait_s, task.next_attempt(due_at_ms=due_at_ms))
        self.scheduled += 1

    async def park(self, task: DeliveryTask, wait_s: float, *, reserved: bool) -> None:
        """Hold back an attempt that was not sent (circuit open, endpoint saturated).

        It keeps its attempt number: parking is not an attempt.
        """
        due_at_ms = int((self._clock() + wait_s) * 1000)
        await self._write(wait_s, task.parked(due_at_ms=due_at_ms, reserved=reserved))

    async def hold(self, task: DeliveryTask, wait_s: float) -> None:
        """Hold back an ordered message behind its subject's unfinished one
        (consumers/sequencer.py); like a park, it is not an attempt."""
        due_at_ms = int((self._clock() + wait_s) * 1000)
        await self._write(wait_s, task.parked(due_at_ms=due_at_ms, reserved=False))
        self.held += 1

    async def hop(self, task: DeliveryTask) -> None:
        """Place a record that is ready but not due again, for the rest of its wait."""
        await self._write(task.due_at_ms / 1000 - self._clock(), task)
        self.hops += 1

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
