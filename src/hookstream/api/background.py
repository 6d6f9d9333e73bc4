"""Background tasks of the API (redrives, replays): running them, their progress, cancels.

A task runs in an API process; its progress lives in Redis
(`<prefix>tasks:<id>`, kept 7 days) so any API process answers
`GET /v1/tasks/{id}`. `DELETE /v1/tasks/{id}` sets the task's `cancel` field:
whichever process runs it stops it at its next step (within about a second),
and the task ends `cancelled`.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Coroutine
from typing import Any

from redis.asyncio import Redis

from hookstream.config import Settings
from hookstream.redis_keys import RedisKeys
from hookstream.stacks import cancel_until_done

TASK_TTL_S = 7 * 24 * 3600


class Cancelled(Exception):
    """Raised inside a task whose cancel was asked for."""


class BackgroundTasks:
    """Runs tasks in this process and keeps their progress in Redis."""

    def __init__(self, settings: Settings, redis: Redis) -> None:
        self._settings = settings
        self._redis = redis
        self._keys = RedisKeys(settings)
        self._running: dict[str, asyncio.Task[None]] = {}

    @staticmethod
    def new_id() -> str:
        """A fresh task id."""
        return f"task_{secrets.token_hex(8)}"

    def launch(self, task_id: str, job: Coroutine[Any, Any, None]) -> None:
        """Run `job` as task `task_id` in this process."""
        task = asyncio.create_task(job, name=task_id)
        self._running[task_id] = task
        task.add_done_callback(lambda _: self._running.pop(task_id, None))

    def running_here(self, task_id: str) -> bool:
        """True when this process runs `task_id`."""
        return task_id in self._running

    async def stop(self) -> None:
        """Cancel the tasks running here and wait for them to record where they stopped
        (a cancel that Redis swallowed is repeated, after time to save)."""
        await asyncio.gather(
            *(cancel_until_done(job, within_s=30, every=5) for job in list(self._running.values()))
        )

    async def save(self, task_id: str, **fields: Any) -> None:
        """Write fields of a task's progress."""
        key = self._keys.task(task_id)
        await self._redis.hset(key, mapping={k: str(v) for k, v in fields.items()})
        await self._redis.expire(key, TASK_TTL_S)

    async def raise_if_cancelled(self, task_id: str) -> None:
        """Raise Cancelled when a cancel of `task_id` was asked for."""
        if await self._redis.hget(self._keys.task(task_id), "cancel") == b"1":
            raise Cancelled(task_id)
