"""Records built into produce batches by the caller land where `producer.send` puts
them, in the order added, each once, acknowledged (the embedded broker)."""

from __future__ import annotations

import asyncio
from collections import defaultdict

from aiokafka import AIOKafkaProducer

from hookstream.config import Settings
from hookstream.kafka import KeyedPartitioner, key_partition, producer_options
from hookstream.producers.batches import PartitionBatches
from hookstream.topics import TopicNames
from tests.conftest import read_to_end

KEYS = [f"ep_{n}".encode() for n in range(13)]


async def _producer(settings: Settings, **overrides: object) -> AIOKafkaProducer:
    producer = AIOKafkaProducer(**{**producer_options(settings, client_id="t"), **overrides})
    await producer.start()
    return producer


async def test_records_land_in_their_keys_partition_in_order_with_headers(
    settings: Settings,
) -> None:
    topic = TopicNames(settings).deliveries
    producer = await _producer(settings)
    try:
        batches = PartitionBatches(producer, topic, KeyedPartitioner())
        await batches.start()
        for n in range(600):
            key = KEYS[n % len(KEYS)]
            await batches.add(key, b'{"n":%d}' % n, [("message_id", b"m%d" % n)])
        acks = await batches.send()
        assert 0 < len(acks) <= settings.partitions  # a batch per partition, not per record
        await asyncio.wait_for(asyncio.gather(*acks), timeout=30)
        assert await batches.send() == []  # nothing left open
    finally:
        await producer.stop()

    records = await read_to_end(settings, topic)
    assert len(records) == 600
    seen: dict[bytes, list[int]] = defaultdict(list)
    for record in records:
        assert record.key is not None
        assert record.value is not None
        assert record.partition == key_partition(record.key.decode(), settings.partitions)
        n = int(record.value[5:-1])
        assert dict(record.headers)["message_id"] == b"m%d" % n
        assert record.timestamp > 0
        seen[record.key].append(n)
    for key, numbers in seen.items():
        assert numbers == sorted(numbers), key  # a key's records in the order added
    assert sorted(n for numbers in seen.values() for n in numbers) == list(range(600))


async def test_a_full_batch_is_sent_and_a_new_one_opened(settings: Settings) -> None:
    topic = TopicNames(settings).deliveries
    producer = await _producer(settings, max_batch_size=1024)
    body = b"x" * 300  # three to a 1 KiB batch
    try:
        batches = PartitionBatches(producer, topic, KeyedPartitioner())
        await batches.start()
        for n in range(10):
            await batches.add(b"one-key", body + b"%d" % n, [])
        await batches.add(b"big", b"y" * 5000, [])  # larger than a batch: sent on its own
        acks = await batches.send()
        assert len(acks) >= 4 + 1
        await asyncio.wait_for(asyncio.gather(*acks), timeout=30)
    finally:
        await producer.stop()

    records = await read_to_end(settings, topic)
    ones = [r.value for r in records if r.key == b"one-key"]
    assert ones == [body + b"%d" % n for n in range(10)]
    assert [r.value for r in records if r.key == b"big"] == [b"y" * 5000]
