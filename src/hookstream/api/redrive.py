"""Background redrive tasks and their progress.

A task runs in the API process that accepted it; its progress lives in Redis
(`<prefix>tasks:<id>`, kept 7 days) so any API process answers
`GET /v1/tasks/{id}`. A task cut short by a shutdown is marked `interrupted`;
redriving again is safe (the same webhook-ids, at least once).
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from contextlib import aclosing
from typing import Any

from aiokafka import AIOKafkaProducer
from redis.asyncio import Redis

from hookstream.config import Settings
from hookstream.redis_keys import RedisKeys
from hookstream.topics import TopicNames
from hookstream.views.dlq import DeadLetterFilter, DeadLetterReader, redrive

log = logging.getLogger(__name__)
TASK_TTL_S = 7 * 24 * 3600


class RedriveTasks:
    """Starts redrive tasks and keeps their progress in Redis."""

    def __init__(self, settings: Settings, redis: Redis, producer: AIOKafkaProducer) -> None:
        self._settings = settings
        self._redis = redis
        self._producer = producer
        self._running: dict[str, asyncio.Task[None]] = {}

    async def start_redrive(self, where: DeadLetterFilter) -> str:
        """Record a new task and start it; return its id."""
        task_id = f"task_{secrets.token_hex(8)}"
        await self._save(
            task_id,
            state="running",
            redriven=0,
            started_at=time.time(),
            tenant=where.tenant or "",  # a tenant-bound key's tasks are its tenant's
        )
        job = asyncio.create_task(self._run(task_id, where), name=task_id)
        self._running[task_id] = job
        job.add_done_callback(lambda _: self._running.pop(task_id, None))
        return task_id

    async def stop(self) -> None:
        """Cancel running tasks; they are marked interrupted."""
        for job in list(self._running.values()):
            job.cancel()
        await asyncio.gather(*self._running.values(), return_exceptions=True)

    async def _run(self, task_id: str, where: DeadLetterFilter) -> None:
        reader = DeadLetterReader(self._settings)
        deliveries = TopicNames(self._settings).deliveries
        redriven = 0
        try:
            # Closed on cancel too: the scan's consumer stops with the task.
            async with aclosing(reader.scan(where)) as letters:
                async for letter in letters:
                    await redrive(self._producer, deliveries, letter)
                    redriven += 1
                    if redriven % 100 == 0:
                        await self._save(task_id, redriven=redriven)
        except asyncio.CancelledError:
            await self._save(task_id, state="interrupted", redriven=redriven)
            raise
        except Exception as exc:
            log.exception("redrive task failed", extra={"task_id": task_id})
            await self._save(task_id, state="failed", error=str(exc), redriven=redriven)
            return
        await self._save(task_id, state="done", redriven=redriven, finished_at=time.time())

    async def _save(self, task_id: str, **fields: Any) -> None:
        key = RedisKeys(self._settings).task(task_id)
        await self._redis.hset(key, mapping={k: str(v) for k, v in fields.items()})
        await self._redis.expire(key, TASK_TTL_S)
