"""The last N events of the `events` topic, for filter dry-runs.

Reads at most N records from the end of each partition, then keeps the N
newest by broker timestamp: the last N events published, whatever their key.
Poison records are skipped.
"""

from __future__ import annotations

import asyncio
import contextlib

from aiokafka import AIOKafkaConsumer, TopicPartition

from hookstream.config import Settings
from hookstream.engine.event import Event, decode_event
from hookstream.errors import InvalidInput
from hookstream.kafka import consumer_options, start_whole
from hookstream.topics import TopicNames

READ_TIMEOUT_S = 20.0


async def recent_events(settings: Settings, last: int) -> list[Event]:
    """The newest `last` events, oldest first."""
    topic = TopicNames(settings).events
    consumer = AIOKafkaConsumer(
        **consumer_options(settings, client_id="recent-events"), group_id=None
    )
    try:
        await start_whole(consumer)
        partitions = consumer.partitions_for_topic(topic) or set()
        if not partitions:
            await consumer.force_metadata_update()
            partitions = consumer.partitions_for_topic(topic) or set()
        tps = [TopicPartition(topic, p) for p in sorted(partitions)]
        if not tps:
            return []
        consumer.assign(tps)
        starts = await consumer.beginning_offsets(tps)
        ends = await consumer.end_offsets(tps)
        for tp in tps:
            consumer.seek(tp, max(starts[tp], ends[tp] - last))
        found: list[tuple[int, Event]] = []
        async with asyncio.timeout(READ_TIMEOUT_S):
            pending = {tp for tp in tps if ends[tp] > max(starts[tp], ends[tp] - last)}
            while pending:
                batch = await consumer.getmany(*pending, timeout_ms=500)
                for records in batch.values():
                    for record in records:
                        with contextlib.suppress(InvalidInput):  # poison: not an event
                            found.append((record.timestamp, decode_event(record.value)))
                for tp in list(pending):
                    if await consumer.position(tp) >= ends[tp]:
                        pending.discard(tp)
    finally:
        await consumer.stop()
    found.sort(key=lambda pair: pair[0])
    return [event for _, event in found[-last:]]
