"""Per-key rate limits: GCRA in Redis, one Lua call per request.

The script is sent once and then run by its SHA (EVALSHA). Each tier allows
`per_hour` requests an hour, at most `burst` at once (the
bucket refills one request every 3600/per_hour seconds). Every limited
response carries `RateLimit-Limit`, `RateLimit-Remaining`, `RateLimit-Reset`
and `RateLimit-Policy`; a refusal is a 429 problem with `Retry-After`. When
Redis is away the request is let through (logged): a control API that locks
everyone out because a cache is down is worse than a short unmetered window.
"""

from __future__ import annotations

import logging
import math

from aiohttp import web
from redis.asyncio import Redis
from redis.commands.core import AsyncScript
from redis.exceptions import RedisError

from hookstream.api.problems import Problem
from hookstream.api.state import SETTINGS
from hookstream.redis_keys import RedisKeys

log = logging.getLogger(__name__)

RATE_HEADERS = web.RequestKey("rate_headers", dict)
RATE_SCRIPT = web.AppKey("rate_script", AsyncScript)

# KEYS[1] the key's bucket. ARGV: emission interval (ms), burst.
# Returns {allowed, remaining, reset_ms, retry_after_ms}.
GCRA = """
local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
local emission = tonumber(ARGV[1])
local tolerance = emission * tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if tat < now then tat = now end
local new_tat = tat + emission
if new_tat - now > tolerance then
  return {0, 0, tat - now, new_tat - tolerance - now}
end
redis.call('SET', KEYS[1], new_tat, 'PX', math.ceil(new_tat - now))
return {1, math.floor((tolerance - (new_tat - now)) / emission), new_tat - now, 0}
"""


class TooManyRequests(Problem):
    """The key used up its tier's allowance for now."""

    status = 429
    title = "Too Many Requests"


async def charge(request: web.Request, key_id: str, tier_name: str) -> None:
    """Take one request from the key's bucket; raise TooManyRequests when empty."""
    settings = request.app[SETTINGS]
    tier = settings.rate_tiers.get(tier_name) or settings.rate_tiers[settings.api_default_tier]
    emission_ms = 3_600_000 / tier.per_hour
    bucket = RedisKeys(settings).rate_bucket(key_id)
    try:
        allowed, remaining, reset_ms, retry_ms = await request.app[RATE_SCRIPT](
            [bucket], [str(emission_ms), str(tier.burst)]
        )
    except RedisError as exc:
        log.warning("rate limit not checked: Redis unavailable", extra={"error": str(exc)})
        return
    headers = {
        "RateLimit-Limit": str(tier.per_hour),
        "RateLimit-Remaining": str(int(remaining)),
        "RateLimit-Reset": str(math.ceil(int(reset_ms) / 1000)),
        "RateLimit-Policy": f"{tier.per_hour};w=3600;burst={tier.burst}",
    }
    request[RATE_HEADERS] = headers
    if not allowed:
        retry_after = str(max(1, math.ceil(int(retry_ms) / 1000)))
        request[RATE_HEADERS] = {**headers, "Retry-After": retry_after}
        raise TooManyRequests(
            f"the {tier.name} tier allows {tier.per_hour} requests an hour; "
            f"retry in {retry_after} s"
        )


def register(app: web.Application, redis: Redis) -> None:
    """Prepare the limiter's script on the app's Redis client (no round trip)."""
    app[RATE_SCRIPT] = redis.register_script(GCRA)


async def add_rate_headers(request: web.Request, response: web.StreamResponse) -> None:
    """`on_response_prepare` hook: put the rate headers on every limited response."""
    response.headers.update(request.get(RATE_HEADERS) or {})
