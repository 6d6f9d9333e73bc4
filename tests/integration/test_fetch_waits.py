"""How long a running worker's fetches wait, idle and reading.

On the embedded broker a consumer asks 1,000 / wait times a second whether
there is anything new, idle or not (decision 006). The readers off the
delivery path always wait the idle setting; the delivery path and the config
views wait briefly while they read, and the idle setting after a second with
nothing to read (decision 037).
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from hookstream.config import Settings
from hookstream.consumers.worker import Worker
from hookstream.kafka import FetchWait, admin_options, consumer_options, producer_options
from hookstream.producers import EventPublisher
from tests.conftest import EndpointFactory, SinkFactory, eventually

pytestmark = pytest.mark.integration


def _wait_ms(consumer: AIOKafkaConsumer | None) -> int:
    assert consumer is not None, "a consumer that should be running is not"
    return FetchWait(consumer, Settings()).ms


async def test_a_consumer_waits_long_once_idle_and_short_again_at_its_next_record(
    fast: Settings,
) -> None:
    topic = f"{fast.topic_prefix}wait-{uuid.uuid4().hex[:8]}"
    admin = AIOKafkaAdminClient(**admin_options(fast, client_id="t"))
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, 1, 1)])
    finally:
        await admin.close()
    tp = TopicPartition(topic, 0)
    consumer = AIOKafkaConsumer(**consumer_options(fast, client_id="t"), group_id=None)
    producer = AIOKafkaProducer(**producer_options(fast, client_id="t"))
    await consumer.start()
    await producer.start()
    try:
        consumer.assign([tp])
        wait = FetchWait(consumer, fast)
        assert wait.ms == fast.fetch_max_wait_ms  # as configured, until a fetch says otherwise

        nothing = await consumer.getmany(timeout_ms=300)
        assert not any(nothing.values())
        wait.saw(nothing)
        assert wait.ms == fast.idle_fetch_max_wait_ms

        wait.saw(nothing, holding=True)  # records held for a timer: not idle
        assert wait.ms == fast.fetch_max_wait_ms
        wait.saw(nothing)

        await producer.send_and_wait(topic, b"x")
        batch: dict[TopicPartition, list[object]] = {}
        for _ in range(20):  # the fetch in flight still asks for the long wait
            batch = dict(await consumer.getmany(timeout_ms=1000))
            if batch:
                break
        assert [r.value for r in batch[tp]] == [b"x"]  # type: ignore[attr-defined]
        wait.saw(batch)
        assert wait.ms == fast.fetch_max_wait_ms
    finally:
        await consumer.stop()
        await producer.stop()


async def test_an_idle_worker_fetches_at_the_idle_wait_and_a_busy_one_at_the_short_one(
    worker: Worker, fast: Settings, sink_factory: SinkFactory, endpoint_factory: EndpointFactory
) -> None:
    short, idle = fast.fetch_max_wait_ms, fast.idle_fetch_max_wait_ms
    assert short < idle  # the embedded stack's: 20 against 500
    assert worker.dispatcher is not None
    assert worker.health is not None
    assert worker.attempt_index is not None
    assert worker.dlq_index is not None
    assert worker.lag is not None

    off_the_path = {
        "health": worker.health._consumer,
        "attempt index": worker.attempt_index._consumer,
        "dead-letter index": worker.dlq_index._consumer,
        "lag (dead letters)": worker.lag._dlq,
        **{f"lag ({group})": c for group, c in worker.lag._groups.items()},
    }
    assert {name: _wait_ms(c) for name, c in off_the_path.items()} == dict.fromkeys(
        off_the_path, idle
    )

    delivery_path = {
        "router": worker.router._consumer,
        "dispatcher": worker.dispatcher._consumer,
        "registry": worker.registry._consumer,
        "catalog": worker.catalog._consumer,
    }

    def waits() -> dict[str, int]:
        return {name: _wait_ms(c) for name, c in delivery_path.items()}

    await eventually(
        lambda: waits() == dict.fromkeys(delivery_path, idle),
        timeout=30,
        message=lambda: f"an idle worker's delivery path still polls: {waits()}",
    )

    # Events a tenth of a second apart: the router and the dispatcher read, and
    # ask at the short wait again; every event is delivered.
    sink = await sink_factory()
    await endpoint_factory(sink.url, tenant="acme", event_types=["tick.*"])
    seen: set[str] = set()

    async def trickle() -> None:
        async with EventPublisher(fast) as publisher:
            while True:
                await publisher.publish_many([{"type": "tick.tock", "tenant": "acme", "data": {}}])
                await asyncio.sleep(0.1)

    def reading() -> bool:
        now = waits()
        seen.update(name for name in ("router", "dispatcher") if now[name] == short)
        return seen == {"router", "dispatcher"}

    publishing = asyncio.create_task(trickle())
    try:
        await eventually(reading, timeout=30, message=lambda: f"a busy worker's waits: {waits()}")
        await eventually(lambda: len(sink.recorder.received) >= 3, timeout=30)
    finally:
        publishing.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await publishing
