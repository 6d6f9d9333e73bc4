"""A stop that comes while a consumer commits lets the commit land (real broker).

The Redis indexes commit after each batch they wrote, and their stop cancels the
loop. Cancelled inside the commit, the commit was lost: the next start indexed the
batch again, and aiokafka's own request task failed under the closing consumer
with nobody to read it. Here the commit is held at its start until the stop has
cancelled the loop.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from redis.asyncio import Redis

from hookstream.config import Settings
from hookstream.consumers.soft_index import Batch, SoftIndex
from hookstream.kafka import consumer_options, producer_options
from hookstream.topics import TopicNames

pytestmark = pytest.mark.integration

RECORDS = 40


class CountingIndex(SoftIndex):
    """Counts what it reads; its consumer's first commit waits for `release`."""

    name = "counting-index"

    def __init__(self, settings: Settings, redis: Redis, topic: str) -> None:
        super().__init__(settings, redis, (topic,), group=f"{settings.topic_prefix}counting")
        self.committing = asyncio.Event()
        self.release = asyncio.Event()

    async def write(self, batch: Batch) -> int:
        return sum(len(records) for records in batch.values())

    async def start(self) -> None:
        await super().start()
        consumer = self._consumer
        assert consumer is not None
        commit = consumer.commit

        async def held_commit(offsets: Any = None) -> None:
            self.committing.set()
            await self.release.wait()
            await commit(offsets)

        consumer.commit = held_commit


async def committed(settings: Settings, group: str, topic: str) -> int:
    """The group's committed offsets on `topic`, summed over its partitions."""
    consumer = AIOKafkaConsumer(**consumer_options(settings, client_id="probe"), group_id=group)
    await consumer.start()
    try:
        parts = consumer.partitions_for_topic(topic) or set()
        total = 0
        for p in parts:
            total += await consumer.committed(TopicPartition(topic, p)) or 0
        return total
    finally:
        await consumer.stop()


async def test_an_index_stopped_while_it_commits_commits_what_it_indexed(
    settings: Settings,
) -> None:
    topic = TopicNames(settings).events
    producer = AIOKafkaProducer(**producer_options(settings, client_id="test"))
    await producer.start()
    try:
        for n in range(RECORDS):
            await producer.send(topic, b"%d" % n, key=b"k%d" % (n % 7))
        await producer.flush()
    finally:
        await producer.stop()

    redis = Redis.from_url(settings.redis_url)
    index = CountingIndex(settings, redis, topic)
    await index.start()
    try:
        # The first batch is indexed, and its commit held: the loop reads no further.
        await asyncio.wait_for(index.committing.wait(), timeout=60)
        # The stop cancels the loop while its commit is held; the commit goes on after.
        asyncio.get_running_loop().call_later(0.5, index.release.set)
        await index.stop()
    finally:
        index.release.set()
        await redis.aclose()

    assert 0 < index.indexed <= RECORDS
    assert await committed(settings, f"{settings.topic_prefix}counting", topic) == index.indexed
