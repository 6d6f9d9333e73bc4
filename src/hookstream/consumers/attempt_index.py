"""The recent-attempt index: the `attempts` topic, indexed in Redis for the API.

Soft state, kept by the loop every index shares (`soft_index.py`): its own
consumer group, one Redis script call per fetched batch, committed after Redis
accepted it. A FLUSHALL empties it until new attempts arrive; to rebuild it,
reset the `<prefix>attempt-index` group's offsets to the earliest.

Writers of `deliveries` also put routed notices on `attempts` (one record per
batch, producers/routed.py), so a message not yet attempted shows as pending
without the index reading every delivery record again (decision 030).

Keys (prefix = topic prefix):
  <prefix>attempts:endpoint:<id>  sorted set, score = started_at in µs, newest 1,000 kept
  <prefix>attempts:message:<id>   the same per message (webhook-id), kept 7 days
  <prefix>messages:<id>           hash: event_id, endpoint_id, routed_at; kept 7 days
"""

from __future__ import annotations

import logging
from typing import Any

import orjson
from redis.asyncio import Redis

from hookstream.config import Settings
from hookstream.consumers.soft_index import Batch, SoftIndex
from hookstream.producers.routed import ROUTED_HEADER, routed_of
from hookstream.redis_keys import RedisKeys
from hookstream.topics import TopicNames

log = logging.getLogger(__name__)

KEEP_PER_ENDPOINT = 1000
MESSAGE_TTL_S = 7 * 24 * 3600

# One call per fetched batch. A pipeline of the same commands cost the worker
# 16% of its CPU in redis-py's packing and reply parsing, six commands per
# delivery (decision 025). ARGV: routed-key prefix, endpoint-attempts prefix,
# message-attempts prefix, keep, ttl, n routed, then n × (message, event,
# endpoint, routed_at), then × (endpoint, message, score, attempt JSON).
INDEX = """
local routed_p, endpoint_p, message_p = ARGV[1], ARGV[2], ARGV[3]
local keep, ttl, n = tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6])
local i = 7
for _ = 1, n do
  local key = routed_p .. ARGV[i]
  redis.call('HSETNX', key, 'routed_at', ARGV[i + 3])
  redis.call('HSET', key, 'event_id', ARGV[i + 1], 'endpoint_id', ARGV[i + 2])
  redis.call('EXPIRE', key, ttl)
  i = i + 4
end
local trimmed = {}
while i <= #ARGV do
  local endpoint = endpoint_p .. ARGV[i]
  local message = message_p .. ARGV[i + 1]
  redis.call('ZADD', endpoint, ARGV[i + 2], ARGV[i + 3])
  redis.call('ZADD', message, ARGV[i + 2], ARGV[i + 3])
  redis.call('EXPIRE', message, ttl)
  trimmed[endpoint] = true
  i = i + 4
end
for endpoint in pairs(trimmed) do
  redis.call('ZREMRANGEBYRANK', endpoint, 0, -keep - 1)
end
return 0
"""


def score(attempt: dict[str, Any]) -> int:
    """Sort key: start time in microseconds (unique per endpoint in practice)."""
    return int(float(attempt["started_at"]) * 1_000_000)


class AttemptIndex(SoftIndex):
    """Consumes `attempts` (attempt records and routed notices) and keeps the Redis
    index current."""

    name = "attempt-index"

    def __init__(self, settings: Settings, redis: Redis) -> None:
        names = TopicNames(settings)
        super().__init__(
            settings,
            redis,
            (names.attempts,),
            group=f"{settings.topic_prefix}attempt-index",
        )
        self._names = names
        self._keys = RedisKeys(settings)
        self._index = redis.register_script(INDEX)

    async def write(self, batch: Batch) -> int:
        """One script call for the batch's attempts and routed messages."""
        routed: list[Any] = []
        attempts: list[Any] = []
        for rs in batch.values():
            for r in rs:
                if not r.value:
                    continue
                if r.headers and ROUTED_HEADER in r.headers:
                    routed += _routed(r.value)
                    continue
                attempt = orjson.loads(r.value)
                attempts += (
                    attempt["endpoint_id"],
                    attempt["message_id"],
                    score(attempt),
                    r.value,
                )
        if routed or attempts:
            keys = self._keys
            await self._index(
                args=[
                    keys.routed(""),
                    keys.endpoint_attempts(""),
                    keys.message_attempts(""),
                    KEEP_PER_ENDPOINT,
                    MESSAGE_TTL_S,
                    len(routed) // 4,
                    *routed,
                    *attempts,
                ]
            )
        return len(attempts) // 4


def _routed(value: bytes) -> list[Any]:
    """(message_id, event_id, endpoint_id, routed_at) × n from a routed notice; nothing
    from a notice that cannot be read (soft state: the message shows once attempted)."""
    try:
        entries, routed_at = routed_of(value)
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
        log.warning("unreadable routed notice skipped", extra={"bytes": len(value)})
        return []
    at = repr(routed_at)
    flat: list[Any] = []
    for message_id, event_id, endpoint_id in entries:
        flat += (message_id, event_id, endpoint_id, at)
    return flat
