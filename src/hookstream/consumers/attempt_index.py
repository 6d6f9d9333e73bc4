"""The recent-attempt index: the `attempts` topic, indexed in Redis for the API.

Soft state. It is built by its own consumer group from the `attempts` topic,
one Redis pipeline per fetched batch, and committed only after Redis accepted
the batch; so Redis being down stalls the index (offsets stop advancing) and
never delivery, and a FLUSHALL empties it until new attempts arrive. To
rebuild it from the topic (the retention window), reset the
`<prefix>attempt-index` group's offsets to the earliest and restart a worker.

It also reads the `deliveries` topic (headers only) to know which messages
were routed, so a message not yet attempted shows as pending.

Keys (prefix = topic prefix):
  <prefix>attempts:endpoint:<id>  sorted set, score = started_at in µs, newest 1,000 kept
  <prefix>attempts:message:<id>   the same per message (webhook-id), kept 7 days
  <prefix>messages:<id>           hash: event_id, endpoint_id, routed_at; kept 7 days
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer
from aiokafka.errors import CommitFailedError, IllegalStateError, KafkaError
from redis.asyncio import Redis
from redis.exceptions import RedisError

from hookstream.config import Settings
from hookstream.kafka import LogEndGuard, consumer_options, stop_client
from hookstream.redis_keys import RedisKeys
from hookstream.stacks import suspended_at
from hookstream.topics import TopicNames

log = logging.getLogger(__name__)

STOP_S = 10.0  # longest wait for the indexing task after its cancel

KEEP_PER_ENDPOINT = 1000
MESSAGE_TTL_S = 7 * 24 * 3600


def score(attempt: dict[str, Any]) -> int:
    """Sort key: start time in microseconds (unique per endpoint in practice)."""
    return int(float(attempt["started_at"]) * 1_000_000)


class AttemptIndex:
    """Consumes `attempts` and keeps the Redis index current."""

    def __init__(self, settings: Settings, redis: Redis) -> None:
        self._settings = settings
        self._redis = redis
        self._names = TopicNames(settings)
        self._keys = RedisKeys(settings)
        self._consumer: AIOKafkaConsumer | None = None
        self._task: asyncio.Task[None] | None = None
        self.indexed = 0

    async def start(self) -> None:
        """Join the index group and start indexing."""
        self._consumer = AIOKafkaConsumer(
            self._names.attempts,
            self._names.deliveries,
            **consumer_options(self._settings, client_id="attempt-index"),
            group_id=f"{self._settings.topic_prefix}attempt-index",
        )
        await self._consumer.start()
        self._task = asyncio.create_task(self._run(), name="attempt-index")

    @property
    def failure(self) -> BaseException | None:
        """Why the indexing task died, or None while it runs."""
        task = self._task
        if task is None or not task.done() or task.cancelled():
            return None
        return task.exception()

    async def stop(self) -> None:
        """Stop indexing and leave the group."""
        if self._task is not None:
            self._task.cancel()
            # Bounded: the index is soft state, and a worker's stop must not hang on it.
            # A task that outlives its cancel names the await that held it.
            await asyncio.wait({self._task}, timeout=STOP_S)
            if not self._task.done():
                log.error(
                    "attempt index did not stop when cancelled; leaving it",
                    extra={"waiting_in": suspended_at(self._task)},
                )
        if self._consumer is not None:
            await stop_client(self._consumer)

    async def _run(self) -> None:
        consumer = self._consumer
        assert consumer is not None
        guard = LogEndGuard("attempt-index", self._settings)
        while True:
            await guard.check(consumer)
            batch = await consumer.getmany(timeout_ms=1000, max_records=500)
            guard.saw(batch)
            records: list[dict[str, Any]] = []
            routed: list[dict[str, Any]] = []
            for tp, rs in batch.items():
                if tp.topic == self._names.deliveries:
                    routed.extend(_routed(r.headers, r.timestamp) for r in rs)
                else:
                    records.extend(orjson.loads(r.value) for r in rs if r.value)
            if not records and not routed:
                continue
            backoff = 0.1
            while True:
                try:
                    await self._write(records, routed)
                    break
                except RedisError as exc:
                    log.warning("attempt index paused: Redis down", extra={"error": str(exc)})
                    await asyncio.sleep(backoff)
                    backoff = min(backoff * 2, 5.0)
            await _commit(consumer)
            self.indexed += len(records)

    async def _write(self, records: list[dict[str, Any]], routed: list[dict[str, Any]]) -> None:
        pipe = self._redis.pipeline(transaction=False)
        for message in routed:
            if not message:
                continue
            key = self._keys.routed(message["message_id"])
            pipe.hsetnx(key, "routed_at", message["routed_at"])
            pipe.hset(
                key,
                mapping={"event_id": message["event_id"], "endpoint_id": message["endpoint_id"]},
            )
            pipe.expire(key, MESSAGE_TTL_S)
        endpoints = set()
        for attempt in records:
            member = orjson.dumps(attempt)
            ep_key = self._keys.endpoint_attempts(attempt["endpoint_id"])
            msg_key = self._keys.message_attempts(attempt["message_id"])
            pipe.zadd(ep_key, {member: score(attempt)})
            pipe.zadd(msg_key, {member: score(attempt)})
            pipe.expire(msg_key, MESSAGE_TTL_S)
            endpoints.add(ep_key)
        for key in endpoints:
            pipe.zremrangebyrank(key, 0, -KEEP_PER_ENDPOINT - 1)
        await pipe.execute()


async def _commit(consumer: AIOKafkaConsumer) -> None:
    """Commit what was indexed; a rebalance that took the partitions is not an error.

    The index is idempotent (sorted-set members, HSETNX), so whatever the next
    owner re-reads from the last commit is written again harmlessly.
    """
    try:
        await consumer.commit()
    except (CommitFailedError, IllegalStateError) as exc:
        log.info("attempt index commit skipped during rebalance", extra={"error": str(exc)})
    except KafkaError as exc:
        log.warning("attempt index commit failed; will retry", extra={"error": str(exc)})


def _routed(headers: Sequence[tuple[str, bytes]], timestamp_ms: int) -> dict[str, Any]:
    found = dict(headers)
    try:
        return {
            "message_id": found["message_id"].decode(),
            "event_id": found["event_id"].decode(),
            "endpoint_id": found["endpoint_id"].decode(),
            "routed_at": timestamp_ms / 1000,
        }
    except (KeyError, UnicodeDecodeError):
        return {}  # a poison delivery record: the courier dead-letters it
