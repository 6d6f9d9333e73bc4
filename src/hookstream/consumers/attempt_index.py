"""The recent-attempt index: the `attempts` topic, indexed in Redis for the API.

Soft state, kept by the loop every index shares (`soft_index.py`): its own
consumer group, one Redis pipeline per fetched batch, committed after Redis
accepted it. A FLUSHALL empties it until new attempts arrive; to rebuild it,
reset the `<prefix>attempt-index` group's offsets to the earliest.

It also reads the `deliveries` topic (headers only) to know which messages
were routed, so a message not yet attempted shows as pending.

Keys (prefix = topic prefix):
  <prefix>attempts:endpoint:<id>  sorted set, score = started_at in µs, newest 1,000 kept
  <prefix>attempts:message:<id>   the same per message (webhook-id), kept 7 days
  <prefix>messages:<id>           hash: event_id, endpoint_id, routed_at; kept 7 days
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import orjson
from redis.asyncio import Redis

from hookstream.config import Settings
from hookstream.consumers.soft_index import Batch, SoftIndex
from hookstream.redis_keys import RedisKeys
from hookstream.topics import TopicNames

KEEP_PER_ENDPOINT = 1000
MESSAGE_TTL_S = 7 * 24 * 3600


def score(attempt: dict[str, Any]) -> int:
    """Sort key: start time in microseconds (unique per endpoint in practice)."""
    return int(float(attempt["started_at"]) * 1_000_000)


class AttemptIndex(SoftIndex):
    """Consumes `attempts` (and `deliveries`' headers) and keeps the Redis index current."""

    name = "attempt-index"

    def __init__(self, settings: Settings, redis: Redis) -> None:
        names = TopicNames(settings)
        super().__init__(
            settings,
            redis,
            (names.attempts, names.deliveries),
            group=f"{settings.topic_prefix}attempt-index",
        )
        self._names = names
        self._keys = RedisKeys(settings)

    async def write(self, batch: Batch) -> int:
        """One pipeline for the batch's attempts and routed messages."""
        records: list[dict[str, Any]] = []
        routed: list[dict[str, Any]] = []
        for tp, rs in batch.items():
            if tp.topic == self._names.deliveries:
                routed.extend(_routed(r.headers, r.timestamp) for r in rs)
            else:
                records.extend(orjson.loads(r.value) for r in rs if r.value)
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
        return len(records)


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
