"""Dead letters: deliveries that will not be attempted again, with why and their last attempts.

A dead letter is the delivery record itself (body as value, task headers,
including the attempt history) plus a `reason` header, keyed by endpoint id.
Writing one is awaited: only once the broker has it may the source offset be
committed.
"""

from __future__ import annotations

import logging

from aiokafka import AIOKafkaProducer

from hookstream.engine.delivery import DeliveryTask

log = logging.getLogger(__name__)


class DeadLetters:
    """Writes dead letters to the `dlq` topic."""

    def __init__(self, producer: AIOKafkaProducer, topic: str) -> None:
        self._producer = producer
        self._topic = topic
        self.written = 0

    async def write(self, task: DeliveryTask, reason: str) -> None:
        """Park `task` with `reason`; returns once the broker acknowledged it."""
        headers = [*task.headers(), ("reason", reason.encode())]
        await self._producer.send_and_wait(
            self._topic, value=task.body, key=task.endpoint_id.encode(), headers=headers
        )
        self.written += 1
        log.warning("delivery dead-lettered", extra={**task.log_fields(), "reason": reason})
