"""Ingest idempotency: an event id published within the window is not published again.

Each id is claimed with one `SET key pending NX EX window GET` before the
publish and marked `done` after the broker acknowledged it; a failed publish
releases its claims, so a retry of a request that failed is published. A
second request for an id still `pending` gets a 409 (retry shortly): telling
it "duplicate" would be a lie if the first publish then failed.
"""

from __future__ import annotations

from collections.abc import Sequence
from enum import Enum

from redis.asyncio import Redis

from hookstream.redis_keys import RedisKeys


class Claim(Enum):
    """What a claim found."""

    NEW = "new"  # ours: publish it
    DONE = "done"  # published before: a duplicate
    PENDING = "pending"  # another request is publishing it right now


class IdempotencyStore:
    """Claims on (tenant, event id) in Redis for `window_s` seconds."""

    def __init__(self, redis: Redis, keys: RedisKeys, window_s: int) -> None:
        self._redis = redis
        self._keys = keys
        self._window_s = window_s

    def _key(self, tenant: str, event_id: str) -> str:
        return self._keys.idempotency(tenant, event_id)

    async def claim(self, items: Sequence[tuple[str, str]]) -> list[Claim]:
        """Claim each (tenant, id); one round trip for all."""
        async with self._redis.pipeline(transaction=False) as pipe:
            for tenant, event_id in items:
                pipe.set(
                    self._key(tenant, event_id), "pending", nx=True, ex=self._window_s, get=True
                )
            found = await pipe.execute()
        return [
            Claim.NEW if old is None else Claim.DONE if old == b"done" else Claim.PENDING
            for old in found
        ]

    async def confirm(self, items: Sequence[tuple[str, str]]) -> None:
        """Mark claims published."""
        if not items:
            return
        async with self._redis.pipeline(transaction=False) as pipe:
            for tenant, event_id in items:
                pipe.set(self._key(tenant, event_id), "done", ex=self._window_s)
            await pipe.execute()

    async def release(self, items: Sequence[tuple[str, str]]) -> None:
        """Drop claims whose publish failed."""
        if items:
            await self._redis.delete(*(self._key(t, i) for t, i in items))
