"""The dispatcher under a rebalance, on the real broker, with a recording Sender.

A batch fetched before partitions are revoked must not go on being started
under the old assignment: the partitions' new owner reads them from the last
commit, and a later commit here could pass records nobody attempted.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.coordinator.assignors.range import RangePartitionAssignor

from hookstream.config import Settings
from hookstream.consumers.dispatcher import Dispatcher
from hookstream.consumers.health import HealthBook
from hookstream.consumers.registry import EndpointRegistry
from hookstream.engine.delivery import DeliveryTask
from hookstream.engine.outcome import AttemptResult, OutgoingRequest
from hookstream.kafka import stop_client
from hookstream.topics import TopicNames
from tests.conftest import EndpointFactory, eventually

pytestmark = pytest.mark.integration

PER_ENDPOINT = 50


@dataclass
class _SlowSender:
    """Answers 204 after `latency_s`, noting when each delivery started."""

    latency_s: float
    started: list[tuple[float, str]] = field(default_factory=list)  # (when, webhook-id)

    async def send(self, request: OutgoingRequest) -> AttemptResult:
        self.started.append((time.monotonic(), request.headers["webhook-id"]))
        await asyncio.sleep(self.latency_s)
        return AttemptResult(status=204, duration_ms=self.latency_s * 1000)


class _NoFailures:
    """Every send succeeds here: any call is a bug in the test or the dispatcher."""

    def __getattr__(self, name: str) -> object:
        raise AssertionError(f"failure handler called: {name}")


async def test_a_batch_fetched_before_a_rebalance_is_not_started_under_the_old_assignment(
    settings: Settings, registry: EndpointRegistry, endpoint_factory: EndpointFactory
) -> None:
    names = TopicNames(settings)
    endpoints = [await endpoint_factory("http://127.0.0.1:9/hook", "acme", ["*"]) for _ in range(8)]
    producer = AIOKafkaProducer(bootstrap_servers=settings.bootstrap)
    await producer.start()
    partition_of: dict[str, int] = {}  # webhook-id → deliveries partition
    try:
        for n, endpoint in enumerate(endpoints):
            for i in range(PER_ENDPOINT):
                task = DeliveryTask(
                    message_id=f"msg_{endpoint.id}_{i}",
                    event_id=f"evt_{i}",
                    endpoint_id=endpoint.id,
                    tenant="acme",
                    event_type="order.placed",
                    body=b'{"i": %d}' % i,
                )
                sent = await producer.send_and_wait(
                    names.deliveries,
                    task.body,
                    key=endpoint.id.encode(),
                    headers=task.headers(),
                    partition=n % settings.partitions,  # two endpoints per partition
                )
                partition_of[task.message_id] = sent.partition
    finally:
        await producer.stop()

    # Two in flight, 0.2 s each: the 400 records of the first batch take 40 s.
    slow = settings.replace(in_flight=2)
    sender = _SlowSender(latency_s=0.2)
    health_producer = AIOKafkaProducer(bootstrap_servers=settings.bootstrap)
    await health_producer.start()
    health = HealthBook(slow, health_producer, None)
    await health.start()
    dispatcher = Dispatcher(slow, registry, sender, _NoFailures(), health)  # type: ignore[arg-type]
    await dispatcher.start()
    other = AIOKafkaConsumer(
        bootstrap_servers=settings.bootstrap,
        group_id=names.dispatcher_group,
        enable_auto_commit=False,
        partition_assignment_strategy=(RangePartitionAssignor,),
        session_timeout_ms=settings.session_timeout_ms,
        heartbeat_interval_ms=settings.heartbeat_interval_ms,
    )
    try:
        await eventually(lambda: len(sender.started) >= 4, timeout=60, message="nothing sent")
        other.subscribe([names.deliveries, *names.retry_tiers.values()])
        await other.start()  # joins: the dispatcher's partitions are split with it
        await eventually(
            lambda: any(tp.topic == names.deliveries for tp in other.assignment()),
            timeout=60,
            message="the second member got no deliveries partition",
        )
        moved_at = time.monotonic()
        moved = {tp.partition for tp in other.assignment() if tp.topic == names.deliveries}
        # Still a quarter of the first batch to go when the partitions moved: at
        # most half a partition's records (100 each) left of the moved ones.
        assert len(sender.started) < len(partition_of) * 3 / 4
        await asyncio.sleep(3)  # the old batch would have gone on meanwhile
        late = [
            webhook_id
            for at, webhook_id in sender.started
            if at > moved_at and partition_of[webhook_id] in moved
        ]
        assert late == [], f"{len(late)} records of moved partitions started after the move"
        kept = [w for at, w in sender.started if at > moved_at and partition_of[w] not in moved]
        assert kept, "the partitions kept were not delivered on"
    finally:
        await stop_client(other)
        await dispatcher.stop()
        await health.stop()
        await health_producer.stop()
    assert dispatcher.failure is None
