"""Background redrive tasks and their progress.

A task runs in the API process that accepted it; its progress lives in Redis
(`<prefix>tasks:<id>`, kept 7 days) so any API process answers
`GET /v1/tasks/{id}`. It walks the DLQ index's open letters that match, a
thousand at a time, claims them (letters another redrive claimed first are
skipped) and redrives them (views/dlq.py). A task cut short by a shutdown is
marked `interrupted`; running it again sends only what it had not claimed.
"""

from __future__ import annotations

import asyncio
import logging
import time

from aiokafka import AIOKafkaProducer
from redis.asyncio import Redis

from hookstream.api.background import BackgroundTasks, Cancelled
from hookstream.config import Settings
from hookstream.engine.letters import DeadLetterFilter
from hookstream.redis_keys import RedisKeys
from hookstream.topics import TopicNames
from hookstream.views.dlq import claim_and_redrive
from hookstream.views.dlq_index import CHUNK, DeadLetterIndex

log = logging.getLogger(__name__)


class RedriveTasks(BackgroundTasks):
    """Starts redrive tasks and keeps their progress in Redis."""

    def __init__(self, settings: Settings, redis: Redis, producer: AIOKafkaProducer) -> None:
        super().__init__(settings, redis)
        self._producer = producer
        self.index = DeadLetterIndex(redis, RedisKeys(settings))

    async def start_redrive(self, where: DeadLetterFilter) -> str:
        """Record a new task and start it; return its id."""
        task_id = self.new_id()
        await self.save(
            task_id,
            kind="redrive",
            state="running",
            redriven=0,
            started_at=time.time(),
            tenant=where.tenant or "",  # a tenant-bound key's tasks are its tenant's
        )
        self.launch(task_id, self._run(task_id, where))
        return task_id

    async def _run(self, task_id: str, where: DeadLetterFilter) -> None:
        names = TopicNames(self._settings)
        redriven = skipped = 0
        after: str | None = None
        try:
            while True:
                scan = await self.index.scan(where, after=after, limit=CHUNK)
                # The chunk in hand is sent even if the task is cancelled meanwhile.
                chunk = asyncio.ensure_future(
                    claim_and_redrive(self._producer, names, self.index, scan.ids, task_id)
                )
                try:
                    await asyncio.shield(chunk)
                finally:
                    await asyncio.wait({chunk})
                    if not chunk.cancelled() and chunk.exception() is None:
                        redriven += chunk.result()
                        skipped += len(scan.ids) - chunk.result()
                await self.save(task_id, redriven=redriven, skipped=skipped)
                if scan.after is None:
                    break
                await self.raise_if_cancelled(task_id)
                after = scan.after
        except asyncio.CancelledError:
            await self.save(task_id, state="interrupted", redriven=redriven, skipped=skipped)
            raise
        except Cancelled:
            await self.save(task_id, state="cancelled", redriven=redriven, skipped=skipped)
            return
        except Exception as exc:
            log.exception("redrive task failed", extra={"task_id": task_id})
            await self.save(
                task_id, state="failed", error=str(exc), redriven=redriven, skipped=skipped
            )
            return
        await self.save(
            task_id, state="done", redriven=redriven, skipped=skipped, finished_at=time.time()
        )
