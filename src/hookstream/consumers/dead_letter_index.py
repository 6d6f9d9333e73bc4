"""The dead-letter index: the `dlq` and `dlq-state` topics, indexed in Redis for the API.

Kept by the loop every index shares (`soft_index.py`), in the
`<prefix>dlq-index` group. A letter of `dlq` is indexed whole (headers and
body: the API shows it and a redrive sends it from Redis); a record of
`dlq-state` marks its letter redriven. Either may arrive first while the index
is rebuilt, and the result is the same. Records that are not delivery records
(poison dead-lettered as it was) are not redrivable and are left out.
Once a minute it forgets letters older than `dlq_retention_days`, as the
topic does.

It rebuilds itself. Each partition it owns has a marker key in Redis, set
when the partition was read from its start; a partition whose marker is gone
(Redis restarted empty, FLUSHALL) is read again from its start.
"""

from __future__ import annotations

import logging
import time

import orjson
from aiokafka import AIOKafkaConsumer
from aiokafka.errors import IllegalStateError
from redis.asyncio import Redis

from hookstream.config import Settings
from hookstream.consumers.soft_index import Batch, SoftIndex
from hookstream.engine.delivery import DeliveryTask
from hookstream.engine.letters import dead_at_ms, is_letter_id, letter_id
from hookstream.errors import InvalidInput
from hookstream.redis_keys import RedisKeys
from hookstream.topics import DAY_MS, TopicNames
from hookstream.views.dlq_index import DeadLetterIndex

log = logging.getLogger(__name__)


class DeadLetterIndexer(SoftIndex):
    """Consumes `dlq` and `dlq-state` and keeps the DLQ index current."""

    name = "dlq-index"

    def __init__(self, settings: Settings, redis: Redis) -> None:
        names = TopicNames(settings)
        super().__init__(
            settings, redis, (names.dlq, names.dlq_state), group=f"{settings.topic_prefix}dlq-index"
        )
        self._names = names
        self._index = DeadLetterIndex(redis, RedisKeys(settings))
        self._retention_ms = int(settings.dlq_retention_days * DAY_MS)
        self._keys = RedisKeys(settings)

    async def check(self, consumer: AIOKafkaConsumer) -> None:
        """Read again from its start every owned partition whose marker is gone."""
        owned = sorted(consumer.assignment())
        if not owned:
            return
        markers = [self._keys.dlq_built(tp.topic, tp.partition) for tp in owned]
        async with self._redis.pipeline(transaction=False) as pipe:
            for marker in markers:
                pipe.exists(marker)
            present = await pipe.execute()
        missing = [(tp, m) for tp, m, here in zip(owned, markers, present, strict=True) if not here]
        if not missing:
            return
        # A group that committed before had indexed these: Redis lost them. Otherwise
        # this is the index's first start, which reads from the start anyway.
        lost = [tp for tp, _ in missing if await consumer.committed(tp) is not None]
        (log.warning if lost else log.info)(
            "DLQ index missing in Redis: reading the partitions again from their start",
            extra={"partitions": [f"{tp.topic}:{tp.partition}" for tp, _ in missing]},
        )
        try:
            await consumer.seek_to_beginning(*(tp for tp, _ in missing))
        except IllegalStateError:
            return  # a rebalance took one meanwhile: the next check sees the new owner's
        async with self._redis.pipeline(transaction=False) as pipe:
            for _, marker in missing:
                pipe.set(marker, int(time.time()))
            await pipe.execute()

    async def write(self, batch: Batch) -> int:
        """Index the batch's letters, then its redrives."""
        letters = []
        redrives = []
        now_ms = int(time.time() * 1000)
        for tp, records in batch.items():
            for record in records:
                if tp.topic == self._names.dlq_state:
                    key = (record.key or b"").decode(errors="replace")
                    if is_letter_id(key) and record.value:
                        state = orjson.loads(record.value)
                        ttl_ms = dead_at_ms(key) + self._retention_ms - now_ms
                        if ttl_ms > 0:
                            redrives.append(
                                (key, float(state["redriven_at"]), str(state["task_id"]), ttl_ms)
                            )
                    continue
                headers = list(record.headers or ())
                try:
                    DeliveryTask.from_record(headers, record.value)
                except InvalidInput:
                    continue
                assert record.value is not None
                at = letter_id(record.timestamp, record.partition, record.offset)
                letters.append((at, headers, record.value))
        added = await self._index.add(letters)
        await self._index.mark(redrives)
        return added

    async def tick(self) -> None:
        """Forget letters past their retention."""
        cutoff = int(time.time() * 1000) - self._retention_ms
        while await self._index.prune(cutoff) > 0:
            pass
