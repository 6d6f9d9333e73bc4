"""The dead-letter index: the `dlq` and `dlq-state` topics, indexed in Redis for the API.

Kept by the loop every index shares (`soft_index.py`), in the
`<prefix>dlq-index` group. A letter of `dlq` is indexed whole (headers and
body: the API shows it and a redrive sends it from Redis); a record of
`dlq-state` marks its letter redriven. Either may arrive first while the index
is rebuilt, and the result is the same. Records that are not delivery records
(poison dead-lettered as it was) are not redrivable and are left out.
Once a minute it forgets letters older than `dlq_retention_days`, as the
topic does.
"""

from __future__ import annotations

import time

import orjson
from redis.asyncio import Redis

from hookstream.config import Settings
from hookstream.consumers.soft_index import Batch, SoftIndex
from hookstream.engine.delivery import DeliveryTask
from hookstream.engine.letters import dead_at_ms, is_letter_id, letter_id
from hookstream.errors import InvalidInput
from hookstream.redis_keys import RedisKeys
from hookstream.topics import DAY_MS, TopicNames
from hookstream.views.dlq_index import DeadLetterIndex


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
