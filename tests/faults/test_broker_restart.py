"""Fault: the broker goes away and comes back.

The embedded broker keeps nothing across a restart (memory only): it comes
back empty, as Kafka does when a topic is deleted and recreated. No stage dies
while the broker is gone, the worker reports not-ready meanwhile, it is ready
again once a broker answers on the same address, a consumer whose position is
past the new log end notices it and reads from the start, saying so in an
ERROR line, and every event published after the return is delivered
(kafka.py `LogEndGuard`).
"""

from __future__ import annotations

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition

from hookstream.config import Settings
from hookstream.consumers.worker import Worker
from hookstream.embedded import EmbeddedStack
from hookstream.kafka import LogEndGuard, stop_client
from hookstream.producers import EventPublisher
from hookstream.topics import TopicNames, ensure_topics
from tests.conftest import SinkFactory, eventually, write_raw
from tests.faults.conftest import register

pytestmark = pytest.mark.integration


async def test_the_worker_survives_the_broker_going_away_and_reports_not_ready(
    own_stack: EmbeddedStack,
    own_settings: Settings,
    sink_factory: SinkFactory,
    caplog: pytest.LogCaptureFixture,
) -> None:
    sink = await sink_factory()
    await register(own_settings, sink.url, 1)
    worker = Worker(own_settings)
    await worker.start()
    try:
        async with EventPublisher(own_settings) as publisher:
            before = await publisher.publish_many(
                {"type": "order.placed", "tenant": "acme", "data": {"i": i}} for i in range(10)
            )
        await eventually(lambda: set(before) <= sink.event_ids(), timeout=60)

        async def broker_ready() -> bool:
            return (await worker.readiness())["broker"]

        async def broker_gone() -> bool:
            return not await broker_ready()

        assert await broker_ready()
        own_stack.stop_server("broker")
        await eventually(broker_gone, timeout=60, message="/readyz still says the broker is up")
        assert worker.failure() is None, "a stage died while the broker was away"

        own_stack.restart_server("broker")
        await ensure_topics(own_settings)
        # The endpoint stays in the worker's registry (memory) meanwhile.
        await eventually(broker_ready, timeout=90, message="not ready after the broker returned")

        async def ready() -> bool:
            return all((await worker.readiness()).values())

        await eventually(ready, timeout=60, message="a readiness check still fails")
        assert worker.failure() is None

        # The worker notices that the broker lost the partitions it had read, in an ERROR
        # line, and reads them from their new start.
        def noticed() -> bool:
            return any("past the log end" in r.getMessage() for r in caplog.records)

        await eventually(noticed, timeout=60, message="no stage noticed the lost log")

        # Delivery resumes: everything published after the return arrives.
        async with EventPublisher(own_settings) as publisher:
            after = await publisher.publish_many(
                {"type": "order.placed", "tenant": "acme", "data": {"i": i}} for i in range(30)
            )
        await eventually(
            lambda: set(after) <= sink.event_ids(),
            timeout=60,
            message=lambda: f"{len(set(after) - sink.event_ids())} of 30 never delivered",
        )
        assert worker.failure() is None
    finally:
        await worker.stop()


async def test_a_log_refilled_past_the_old_position_is_found_by_its_fingerprint(
    own_stack: EmbeddedStack, own_settings: Settings
) -> None:
    """The case offsets cannot show: the new log grew past the consumer's position
    before its first fetch. Another stage's lost log makes the guard compare a
    record it read before with the broker's, and read the partition again."""
    names = TopicNames(own_settings)
    refilled = TopicPartition(names.events, 0)
    emptied = TopicPartition(names.endpoints, 0)
    before = [(b"k", b'{"before": %d}' % i) for i in range(10)]
    await write_raw(own_settings, names.events, before, partition=0)
    await write_raw(own_settings, names.endpoints, [(b"k", b"{}")])
    reader = AIOKafkaConsumer(bootstrap_servers=own_settings.bootstrap, enable_auto_commit=False)
    other = AIOKafkaConsumer(bootstrap_servers=own_settings.bootstrap, enable_auto_commit=False)
    await reader.start()
    await other.start()
    try:
        guard = LogEndGuard("reader", own_settings)
        other_guard = LogEndGuard("other", own_settings)
        for consumer, tp, count in ((reader, refilled, 10), (other, emptied, 1)):
            consumer.assign([tp])
            await consumer.seek_to_beginning(tp)
            seen: list[object] = []
            while len(seen) < count:
                batch = await consumer.getmany(tp, timeout_ms=500)
                (guard if consumer is reader else other_guard).saw(batch)
                seen += batch.get(tp, [])
        reader.pause(refilled)  # no fetch: its high watermark stays the old log's

        own_stack.stop_server("broker")
        own_stack.restart_server("broker")
        await ensure_topics(own_settings)
        after = [(b"k", b'{"after": %d}' % i) for i in range(30)]
        await write_raw(own_settings, names.events, after, partition=0)
        reader.resume(refilled)
        assert await guard.check(reader) == []  # position 10 is inside the new log: unseen

        async def other_noticed() -> bool:
            if await other_guard.check(other):
                return True
            await other.getmany(emptied, timeout_ms=200)
            return False

        await eventually(other_noticed, timeout=60, message="the emptied log went unnoticed")

        async def reader_rewound() -> bool:
            return await guard.check(reader) == [refilled]

        await eventually(reader_rewound, timeout=60, message="the refilled log went unnoticed")
        values: list[bytes] = []
        while len(values) < 30:
            batch = await reader.getmany(refilled, timeout_ms=500)
            values += [r.value for r in batch.get(refilled, [])]
        # The new log whole, from its first record: none of it skipped.
        assert values == [b'{"after": %d}' % i for i in range(30)]
    finally:
        await stop_client(reader)
        await stop_client(other)
