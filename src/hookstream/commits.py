"""Consumer commits that a stop does not cut short."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping

from aiokafka import AIOKafkaConsumer, TopicPartition

log = logging.getLogger(__name__)

COMMIT_SETTLE_S = 5.0  # longest wait at a stop for commits already sent


class Commits:
    """A consumer's commits, each left to finish when its caller is cancelled.

    A stop cancels the loop that commits. Cancelled inside `consumer.commit`, the
    commit was lost, and aiokafka's own request task went on under a consumer that
    was closing: it failed with nobody to read it ("Task exception was never
    retrieved"). Here each commit runs as a task the caller's cancel does not reach,
    and `settle` waits for them before the consumer closes.
    """

    def __init__(self) -> None:
        self._pending: set[asyncio.Task[None]] = set()

    async def commit(
        self, consumer: AIOKafkaConsumer, offsets: Mapping[TopicPartition, int] | None = None
    ) -> None:
        """`consumer.commit(offsets)`; a cancel of the caller leaves it running."""
        task = asyncio.ensure_future(consumer.commit(offsets))
        self._pending.add(task)
        task.add_done_callback(self._done)
        await asyncio.shield(task)

    async def settle(self, within_s: float = COMMIT_SETTLE_S) -> None:
        """Wait (bounded) for the commits whose callers were cancelled."""
        if self._pending:
            await asyncio.wait(set(self._pending), timeout=within_s)

    def _done(self, task: asyncio.Task[None]) -> None:
        self._pending.discard(task)
        if not task.cancelled() and task.exception() is not None:
            # Read here, so a commit whose caller is gone fails quietly; a caller that
            # still waits gets the same exception through its shield.
            log.debug("commit failed", extra={"error": repr(task.exception())})
