"""The loop every Redis index shares: consume topics in a group, write a batch, commit.

Soft state (DESIGN.md, principle 1). One Redis round trip (pipeline or
script) per fetched batch, committed only after Redis accepted it; so Redis
being down stalls the index (offsets stop advancing) and never delivery. To
rebuild an index from its topics (their retention), reset its group's
offsets to the earliest and restart a worker. Writes are idempotent, so what
a new owner re-reads after a rebalance is written again harmlessly.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import CommitFailedError, IllegalStateError, KafkaError
from aiokafka.structs import ConsumerRecord
from redis.asyncio import Redis
from redis.exceptions import RedisError

from hookstream.commits import Commits
from hookstream.config import Settings
from hookstream.kafka import LogEndGuard, consumer_options, stop_client
from hookstream.stacks import cancel_until_done, suspended_at

log = logging.getLogger(__name__)

STOP_S = 10.0  # longest wait for the indexing task after its cancel

Batch = dict[TopicPartition, list[ConsumerRecord[bytes, bytes]]]


class SoftIndex:
    """Consumes `topics` in `group` and hands each batch to `write`; subclasses index."""

    name = "index"
    tick_s = 60.0  # how often `tick` runs (housekeeping such as pruning)

    def __init__(self, settings: Settings, redis: Redis, topics: Sequence[str], group: str) -> None:
        self._settings = settings
        self._redis = redis
        self._topics = tuple(topics)
        self._group = group
        self._consumer: AIOKafkaConsumer | None = None
        self._task: asyncio.Task[None] | None = None
        self._commits = Commits()
        self.indexed = 0

    async def write(self, batch: Batch) -> int:
        """Index one fetched batch in Redis; return how many records it indexed."""
        raise NotImplementedError

    async def tick(self) -> None:
        """Periodic housekeeping; RedisError is logged and tried again next time."""

    async def check(self, consumer: AIOKafkaConsumer) -> None:
        """Runs before each fetch (a RedisError is logged): an index may rewind here."""

    async def start(self) -> None:
        """Join the group and start indexing."""
        self._consumer = AIOKafkaConsumer(
            *self._topics,
            **consumer_options(self._settings, client_id=self.name, background=True),
            group_id=self._group,
        )
        await self._consumer.start()
        self._task = asyncio.create_task(self._run(), name=self.name)

    @property
    def failure(self) -> BaseException | None:
        """Why the indexing task died, or None while it runs."""
        task = self._task
        if task is None or not task.done() or task.cancelled():
            return None
        return task.exception()

    async def stop(self) -> None:
        """Stop indexing and leave the group."""
        # Bounded: the index is soft state, and a worker's stop must not hang on it.
        # A task that outlives its cancels names the await that held it.
        if self._task is not None and not await cancel_until_done(self._task, within_s=STOP_S):
            log.error(
                "index did not stop when cancelled; leaving it",
                extra={"index": self.name, "waiting_in": suspended_at(self._task)},
            )
        if self._consumer is not None:
            await self._commits.settle()  # what was indexed is committed, not lost to the stop
            await stop_client(self._consumer)

    async def _run(self) -> None:
        consumer = self._consumer
        assert consumer is not None
        guard = LogEndGuard(self.name, self._settings)
        ticked = time.monotonic()
        while True:
            await guard.check(consumer)
            try:
                await self.check(consumer)
            except RedisError as exc:
                log.warning("index check failed", extra={"index": self.name, "error": str(exc)})
            batch = await consumer.getmany(timeout_ms=1000, max_records=500)
            guard.saw(batch)
            if time.monotonic() - ticked >= self.tick_s:
                ticked = time.monotonic()
                try:
                    await self.tick()
                except RedisError as exc:
                    log.warning("index housekeeping failed", extra={"error": str(exc)})
            if not any(batch.values()):
                continue
            backoff = 0.1
            while True:
                try:
                    self.indexed += await self.write(batch)
                    break
                except RedisError as exc:
                    log.warning(
                        "index paused: Redis down", extra={"index": self.name, "error": str(exc)}
                    )
                    await asyncio.sleep(backoff)
                    backoff = min(backoff * 2, 5.0)
            await _commit(self._commits, consumer, self.name)


async def _commit(commits: Commits, consumer: AIOKafkaConsumer, name: str) -> None:
    """Commit what was indexed; a rebalance that took the partitions is not an error."""
    try:
        await commits.commit(consumer)
    except (CommitFailedError, IllegalStateError) as exc:
        log.info("index commit skipped during rebalance", extra={"index": name, "error": str(exc)})
    except KafkaError as exc:
        log.warning("index commit failed; will retry", extra={"index": name, "error": str(exc)})
