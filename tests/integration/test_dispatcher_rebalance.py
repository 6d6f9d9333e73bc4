"""The dispatcher under a rebalance, on the real broker, with a recording Sender.

A batch fetched before partitions are revoked must not go on being started
under the old assignment: the partitions' new owner reads them from the last
commit, and a later commit here could pass records nobody attempted.
"""

from __future__ import annotations

import asyncio
import time

import pytest
from aiokafka import AIOKafkaProducer

from hookstream.config import Settings
from hookstream.consumers.dispatcher import Dispatcher
from hookstream.engine.outcome import AttemptResult, OutgoingRequest
from hookstream.kafka import stop_client
from hookstream.topics import TopicNames
from hookstream.views.registry import EndpointRegistry
from tests.conftest import EndpointFactory, dispatcher_group_member, eventually
from tests.couriers import ScriptedSender, courier_for, delivery_task

pytestmark = pytest.mark.integration

PER_ENDPOINT = 50


class _SlowSender(ScriptedSender):
    """Answers 204 after `latency_s`, noting when each delivery started."""

    def __init__(self, latency_s: float) -> None:
        super().__init__(latency_s=latency_s)
        self.started: list[tuple[float, str]] = []  # (when, webhook-id)

    async def send(self, request: OutgoingRequest) -> AttemptResult:
        self.started.append((time.monotonic(), request.headers["webhook-id"]))
        return await super().send(request)


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
                task = delivery_task(endpoint.id, i)
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
    dispatcher = Dispatcher(slow, courier_for(slow, registry, sender))
    await dispatcher.start()
    other = dispatcher_group_member(settings)
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
    assert dispatcher.failure is None


async def test_no_record_starts_before_the_assignment_listener_is_done(
    settings: Settings, registry: EndpointRegistry, endpoint_factory: EndpointFactory
) -> None:
    """aiokafka fetches for partitions as soon as it assigns them, while the listener's
    `on_partitions_assigned` still loads their ordered chains. Here that load takes
    2 s: every record waits for it, and then all are delivered."""
    names = TopicNames(settings)
    endpoint = await endpoint_factory("http://127.0.0.1:9/hook", "acme", ["*"])
    producer = AIOKafkaProducer(bootstrap_servers=settings.bootstrap)
    await producer.start()
    try:
        for i in range(20):
            task = delivery_task(endpoint.id, i)
            await producer.send_and_wait(
                names.deliveries, task.body, key=endpoint.id.encode(), headers=task.headers()
            )
    finally:
        await producer.stop()

    sender = _SlowSender(latency_s=0.0)
    courier = courier_for(settings, registry, sender)
    loaded_at: list[float] = []

    async def slow_load(assigned: set[object]) -> None:
        await asyncio.sleep(2)
        loaded_at.append(time.monotonic())

    courier.assigned = slow_load  # type: ignore[method-assign]
    dispatcher = Dispatcher(settings, courier)
    await dispatcher.start()
    try:
        await eventually(lambda: len(sender.started) == 20, timeout=60, message="not all sent")
    finally:
        await dispatcher.stop()
    assert dispatcher.failure is None
    assert len(loaded_at) == 1
    early = [w for at, w in sender.started if at < loaded_at[0]]
    assert early == [], f"{len(early)} records started while the partitions' chains loaded"
