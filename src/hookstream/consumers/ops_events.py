"""Operational events: what hookstream itself tells a tenant about its endpoints.

`endpoint.disabled` and `message.attempt.exhausted` are written to the `ops`
topic as ordinary event envelopes (tenant = the endpoint's tenant). The router
reads that topic too and delivers each one to the tenant's operational
endpoints, signed and retried like any webhook. Failures of an operational
endpoint raise no operational events of their own, so a broken one cannot
feed itself.
"""

from __future__ import annotations

import logging
from typing import Any

from aiokafka import AIOKafkaProducer

from hookstream.engine.clock import rfc3339, system_clock
from hookstream.engine.delivery import DeliveryTask, message_id_for
from hookstream.engine.endpoint import Endpoint
from hookstream.engine.event import Event
from hookstream.producers.durable import until_written

log = logging.getLogger(__name__)

ENDPOINT_DISABLED = "endpoint.disabled"
ATTEMPTS_EXHAUSTED = "message.attempt.exhausted"
ORDER_BROKEN = "message.order.broken"


class OpsEvents:
    """Publishes operational events; each write is acknowledged before it returns."""

    def __init__(self, producer: AIOKafkaProducer, topic: str) -> None:
        self._producer = producer
        self._topic = topic

    async def endpoint_disabled(self, endpoint: Endpoint, reason: str) -> None:
        """An endpoint was disabled (410 Gone, or no success for the auto-disable period)."""
        if endpoint.operational:
            log.warning(
                "operational endpoint disabled",
                extra={"endpoint_id": endpoint.id, "tenant": endpoint.tenant},
            )
            return
        now = system_clock()
        data = {"endpoint_id": endpoint.id, "url": endpoint.url, "reason": reason}
        # One event per disable: the same endpoint may be disabled again after an enable.
        event_id = message_id_for(f"disabled:{endpoint.updated_at}", endpoint.id)
        await self._publish(event_id, ENDPOINT_DISABLED, endpoint.tenant, endpoint.id, now, data)

    async def attempts_exhausted(
        self, task: DeliveryTask, endpoint: Endpoint | None, reason: str
    ) -> None:
        """A message used its last attempt and went to the dead letters."""
        await self._message_event(
            ATTEMPTS_EXHAUSTED, "exhausted", task, endpoint, reason, attempts=task.attempt
        )

    async def order_broken(
        self, task: DeliveryTask, endpoint: Endpoint | None, reason: str
    ) -> None:
        """An ordered endpoint's subject moved on past a message that was not delivered."""
        await self._message_event(
            ORDER_BROKEN, "order-broken", task, endpoint, reason, subject=task.subject
        )

    async def _message_event(
        self,
        kind: str,
        once_per: str,
        task: DeliveryTask,
        endpoint: Endpoint | None,
        reason: str,
        **extra: Any,
    ) -> None:
        """One event about one message, at most once per (`once_per`, message); none
        about an operational endpoint's own messages."""
        if endpoint is not None and endpoint.operational:
            return
        data = {
            "message_id": task.message_id,
            "event_id": task.event_id,
            "event_type": task.event_type,
            "endpoint_id": task.endpoint_id,
            **extra,
            "reason": reason,
        }
        event_id = message_id_for(f"{once_per}:{task.message_id}", task.endpoint_id)
        await self._publish(event_id, kind, task.tenant, task.endpoint_id, system_clock(), data)

    async def _publish(
        self, event_id: str, kind: str, tenant: str, subject: str, now: float, data: dict[str, Any]
    ) -> None:
        event = Event(
            id=event_id.replace("msg_", "ops_"),
            type=kind,
            tenant=tenant,
            occurred_at=rfc3339(now),
            data=data,
            subject=subject,
        )
        value = event.to_json()
        await until_written(
            lambda: self._producer.send_and_wait(self._topic, value=value, key=event.key),
            self._topic,
        )
        log.info("operational event", extra={"type": kind, "tenant": tenant, "subject": subject})
