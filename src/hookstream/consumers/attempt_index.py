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

from redis.asyncio import Redis

from hookstream.config import Settings
from hookstream.consumers.soft_index import Batch, SoftIndex
from hookstream.producers.routed import ROUTED_HEADER
from hookstream.redis_keys import RedisKeys
from hookstream.topics import TopicNames

log = logging.getLogger(__name__)

KEEP_PER_ENDPOINT = 1000
MESSAGE_TTL_S = 7 * 24 * 3600

# One call per fetched batch, and the records go to it as they are: the script
# decodes them (cjson), so the worker neither decodes an attempt nor packs four
# arguments per message. A pipeline of the same commands cost the worker 16% of
# its CPU in redis-py's packing and reply parsing (decision 025); four
# arguments per message cost it 2-3% more (decision 032). ARGV: routed-key
# prefix, endpoint-attempts prefix, message-attempts prefix, keep, ttl, n
# notices, then n routed notices, then attempt records. Returns the unreadable
# notices and attempt records it skipped.
INDEX = """
local routed_p, endpoint_p, message_p = ARGV[1], ARGV[2], ARGV[3]
local keep, ttl, n = tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6])
local bad_notices, bad_attempts = 0, 0
for i = 7, 6 + n do
  local ok, notice = pcall(cjson.decode, ARGV[i])
  if ok and type(notice) == 'table' and type(notice.routed) == 'table'
      and type(notice.at) == 'number' then
    local at = string.format('%.17g', notice.at)
    for _, m in ipairs(notice.routed) do
      if type(m) == 'table' and type(m[1]) == 'string' then
        local key = routed_p .. m[1]
        redis.call('HSETNX', key, 'routed_at', at)
        redis.call('HSET', key, 'event_id', tostring(m[2]), 'endpoint_id', tostring(m[3]))
        redis.call('EXPIRE', key, ttl)
      end
    end
  else
    bad_notices = bad_notices + 1
  end
end
local trimmed = {}
for i = 7 + n, #ARGV do
  local ok, a = pcall(cjson.decode, ARGV[i])
  local started = ok and type(a) == 'table' and tonumber(a.started_at)
  if started and type(a.endpoint_id) == 'string' and type(a.message_id) == 'string' then
    -- The same double arithmetic as score() below, printed as an integer.
    local score = string.format('%.0f', math.floor(started * 1000000))
    local endpoint = endpoint_p .. a.endpoint_id
    local message = message_p .. a.message_id
    redis.call('ZADD', endpoint, score, ARGV[i])
    redis.call('ZADD', message, score, ARGV[i])
    redis.call('EXPIRE', message, ttl)
    trimmed[endpoint] = true
  else
    bad_attempts = bad_attempts + 1
  end
end
for endpoint in pairs(trimmed) do
  redis.call('ZREMRANGEBYRANK', endpoint, 0, -keep - 1)
end
return {bad_notices, bad_attempts}
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
        """One script call for the batch's routed notices and attempt records."""
        notices: list[bytes] = []
        attempts: list[bytes] = []
        for records in batch.values():
            for r in records:
                if r.value:
                    (notices if r.headers and ROUTED_HEADER in r.headers else attempts).append(
                        r.value
                    )
        if not notices and not attempts:
            return 0
        keys = self._keys
        skipped = await self._index(
            args=[
                keys.routed(""),
                keys.endpoint_attempts(""),
                keys.message_attempts(""),
                KEEP_PER_ENDPOINT,
                MESSAGE_TTL_S,
                len(notices),
                *notices,
                *attempts,
            ]
        )
        bad_notices, bad_attempts = (int(n) for n in skipped)
        if bad_notices or bad_attempts:
            # Soft state: such a message shows once attempted, such an attempt not at all.
            log.warning(
                "unreadable records skipped by the attempt index",
                extra={"notices": bad_notices, "attempts": bad_attempts},
            )
        return len(attempts) - bad_attempts
