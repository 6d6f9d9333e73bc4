"""Faults: Valkey restarted (and so emptied) mid-run; Valkey away for a while.

Redis holds only soft state: the attempt and DLQ indexes, health snapshots,
the operator page's rollup, lag gauges. Delivery never waits on it, so while it is
away deliveries go on, /readyz says Redis is missing, and what Redis should
have held is written once it returns: the attempt index's offsets stand
still meanwhile, and every attempt of the outage is indexed afterwards.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from redis.asyncio import Redis
from redis.exceptions import RedisError

from hookstream.config import Settings
from hookstream.consumers.worker import Worker
from hookstream.embedded import EmbeddedStack
from hookstream.engine.delivery import DeliveryTask, message_id_for
from hookstream.engine.endpoint import Endpoint
from hookstream.kafka import producer_options
from hookstream.producers import EventPublisher
from hookstream.redis_keys import RedisKeys
from hookstream.topics import TopicNames
from hookstream.views.dlq_index import DeadLetterIndex
from tests.conftest import RunningSink, SinkFactory, eventually, read_to_end
from tests.faults.conftest import LONG, register

pytestmark = pytest.mark.integration

# How long Valkey stays away in the outage test.
OUTAGE_S = 60.0 if LONG else 15.0


def delivered_count(sink: RunningSink, expected: set[str]) -> Callable[[], int]:
    """How many of the `expected` webhook-ids the sink has accepted so far."""
    return lambda: len(expected & {r.webhook_id for r in sink.recorder.received if r.status < 300})


async def _dead_letters(settings: Settings, count: int) -> None:
    """`count` dead letters in the `dlq` topic, as the courier writes them."""
    producer = AIOKafkaProducer(**producer_options(settings, client_id="test-letters"))
    await producer.start()
    try:
        for n in range(count):
            task = DeliveryTask(
                message_id=message_id_for(f"evt_dead_{n}", "ep_gone"),
                event_id=f"evt_dead_{n}",
                endpoint_id="ep_gone",
                tenant="acme",
                event_type="order.placed",
                body=b'{"n":%d}' % n,
            )
            await producer.send_and_wait(
                TopicNames(settings).dlq,
                value=task.body,
                key=b"ep_gone",
                headers=[*task.headers(), ("reason", b"attempts exhausted")],
            )
    finally:
        await producer.stop()


async def _count(settings: Settings, expected: int) -> bool:
    """The DLQ index holds `expected` open letters (a connection of its own, so none
    is left to die with Valkey)."""
    redis = Redis.from_url(settings.redis_url)
    try:
        return await DeadLetterIndex(redis, RedisKeys(settings)).count() == expected
    except (RedisError, OSError):
        return False  # Valkey on its way back
    finally:
        await redis.aclose()


def webhook_ids(event_ids: list[str], endpoints: list[Endpoint]) -> set[str]:
    """The webhook-id of every (event, endpoint) pair."""
    return {message_id_for(e, ep.id) for e in event_ids for ep in endpoints}


async def test_valkey_restarted_mid_run_loses_nothing_and_soft_state_comes_back(
    own_stack: EmbeddedStack, own_settings: Settings, sink_factory: SinkFactory
) -> None:
    sink = await sink_factory(latency_s=0.005)
    endpoints = await register(own_settings, sink.url, 2)
    async with EventPublisher(own_settings) as publisher:
        ids = await publisher.publish_many(
            {"type": "order.placed", "tenant": "acme", "subject": f"o-{i}", "data": {"i": i}}
            for i in range(1000)
        )
    expected = webhook_ids(ids, endpoints)
    delivered = delivered_count(sink, expected)
    worker = Worker(own_settings.replace(in_flight=20))
    await worker.start()
    redis = Redis.from_url(own_settings.redis_url)
    try:
        await _dead_letters(own_settings, 25)  # the DLQ index must come back with these
        await eventually(lambda: _count(own_settings, 25), timeout=60, message="not indexed")
        await eventually(lambda: delivered() >= 400, timeout=90, message="no progress")
        # A key of the test's own, to show Valkey came back empty: the worker goes on
        # writing soft state, so a count of keys after the restart would race it.
        sentinel = f"{own_settings.topic_prefix}test-sentinel"
        before = Redis.from_url(own_settings.redis_url)  # its connection dies with Valkey
        try:
            await before.set(sentinel, b"before the kill")
            assert await before.dbsize() > 1  # the worker's soft state is there too
        finally:
            await before.aclose()
        # SIGKILL: Valkey keeps nothing on disk here, so it comes back empty.
        own_stack.stop_server("valkey", kill=True)
        at_restart = delivered()
        own_stack.restart_server("valkey")
        restarted_at = time.time()
        assert at_restart < len(expected), "the restart came too late to prove anything"
        assert await redis.exists(sentinel) == 0

        await eventually(
            lambda: delivered() == len(expected),
            timeout=120,
            message=lambda: f"{len(expected) - delivered()} of {len(expected)} never delivered",
        )
        assert worker.failure() is None
        # Soft state is written again: health snapshots, and the attempt index for a
        # message first delivered after the restart (routing order across partitions
        # is not publish order, so the last event published may have gone before it).
        after = sorted(
            (r.received_at, r.webhook_id)
            for r in sink.recorder.received
            if r.status < 300 and r.received_at > restarted_at
        )
        assert after, "nothing was delivered after the restart"
        last = after[-1][1]

        async def rebuilt() -> bool:
            snapshots = [await redis.get(RedisKeys(own_settings).health(ep.id)) for ep in endpoints]
            return (
                all(snapshots)
                and await redis.zcard(RedisKeys(own_settings).message_attempts(last)) > 0
            )

        await eventually(rebuilt, timeout=60, message="soft state not rebuilt after the restart")
        # The DLQ index rebuilt itself from the dlq topic: every letter listed again.
        await eventually(lambda: _count(own_settings, 25), timeout=60, message="not rebuilt")
        assert (await worker.readiness())["redis"]
    finally:
        await redis.aclose()
        await worker.stop()


async def test_valkey_away_for_a_while_stops_no_delivery_and_drops_nothing(
    own_stack: EmbeddedStack, own_settings: Settings, sink_factory: SinkFactory
) -> None:
    sink = await sink_factory()
    endpoints = await register(own_settings, sink.url, 2)
    worker = Worker(own_settings)
    await worker.start()
    ids: list[str] = []
    redis = Redis.from_url(own_settings.redis_url)
    try:
        async with EventPublisher(own_settings) as publisher:
            ids += await publisher.publish_many(
                {"type": "order.placed", "tenant": "acme", "data": {"i": i}} for i in range(50)
            )
            before = webhook_ids(ids, endpoints)
            await eventually(lambda: delivered_count(sink, before)() == len(before), timeout=60)

            own_stack.stop_server("valkey")
            gone_at = time.monotonic()
            await eventually(
                lambda: _not_ready(worker), timeout=30, message="/readyz still says Redis is up"
            )
            # Events keep arriving while Valkey is away, and are delivered, all
            # of them before it returns.
            during: list[str] = []
            paused_at: dict[int, int | None] | None = None
            while time.monotonic() - gone_at < OUTAGE_S:
                during += await publisher.publish_many(
                    {"type": "order.placed", "tenant": "acme", "data": {"n": len(during) + i}}
                    for i in range(20)
                )
                await asyncio.sleep(0.5)
                if paused_at is None and time.monotonic() - gone_at > OUTAGE_S / 3:
                    paused_at = await _index_committed(own_settings)
            away = webhook_ids(during, endpoints)
            await eventually(
                lambda: delivered_count(sink, away)() == len(away),
                timeout=60,
                message="deliveries stalled while Redis was away",
            )
            assert worker.failure() is None
            # The attempt index paused: its offsets on `attempts` stood still
            # while the outage's attempts were written there.
            assert paused_at is not None
            assert await _index_committed(own_settings) == paused_at
            assert await _attempts_end(own_settings) > sum(o or 0 for o in paused_at.values())

            own_stack.restart_server("valkey")
            ids += during
            ids += await publisher.publish_many(
                {"type": "order.placed", "tenant": "acme", "data": {"after": i}} for i in range(50)
            )
        expected = webhook_ids(ids, endpoints)
        await eventually(
            lambda: delivered_count(sink, expected)() == len(expected),
            timeout=120,
            message=lambda: f"{len(expected) - delivered_count(sink, expected)()} never delivered",
        )

        async def ready() -> bool:
            return all((await worker.readiness()).values())

        await eventually(ready, timeout=60, message="not ready after Redis came back")

        # Then it indexed what happened while Redis was away: an attempt of
        # every delivery of the outage.
        async def indexed() -> bool:
            async with redis.pipeline(transaction=False) as pipe:
                for webhook_id in away:
                    pipe.zcard(RedisKeys(own_settings).message_attempts(webhook_id))
                counts = await pipe.execute()
            return all(counts)

        await eventually(indexed, timeout=60, message="attempts of the outage never indexed")
        assert worker.failure() is None
    finally:
        await redis.aclose()
        await worker.stop()


async def _not_ready(worker: Worker) -> bool:
    return not (await worker.readiness())["redis"]


async def _index_committed(settings: Settings) -> dict[int, int | None]:
    """The attempt index group's committed offset per `attempts` partition."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.bootstrap,
        group_id=f"{settings.topic_prefix}attempt-index",
        enable_auto_commit=False,
    )
    await consumer.start()
    try:
        topic = TopicNames(settings).attempts
        return {
            p: await consumer.committed(TopicPartition(topic, p))
            for p in range(settings.partitions)
        }
    finally:
        await consumer.stop()


async def _attempts_end(settings: Settings) -> int:
    """Records in `attempts` (every partition), read to the end."""
    return len(await read_to_end(settings, TopicNames(settings).attempts))
