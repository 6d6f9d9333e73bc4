"""Writes that must land: retried while the broker is slow or away, never dropped.

A delivery's offset is committed only after its outcome is written (a retry
tier, the DLQ). When the broker cannot take a write in time, the answer is to
wait and try again, so the partition stops advancing (back-pressure), rather
than to stop the worker. A write that timed out may still have landed, so a
retry can duplicate a record: at worst a duplicate delivery with the same
webhook-id, never a lost one.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import TypeVar

from aiokafka.errors import KafkaError, KafkaTimeoutError, UnknownError

log = logging.getLogger(__name__)

T = TypeVar("T")

BACKOFF_S = (0.5, 1.0, 2.0, 5.0)  # then every 5 s


def retriable(exc: KafkaError) -> bool:
    """A timeout, an error the broker marks as worth another try, or the broker's
    unexpected error (UNKNOWN_SERVER_ERROR, which aiokafka does not mark).

    The embedded broker answers a produce with the unexpected error when its
    batch raced another producer's to the same offset of a partition (its
    storage refuses the second write: `AlreadyExists` in the broker's log). That
    happens on partitions being written first after a restart, and the same
    write lands on the next try. On Kafka it means a fault inside the broker:
    retried, the write holds its partition back and says so, where raised it
    stopped the worker, which a restart would not mend either. A write that can
    never succeed has an error of its own (too large, not authorised).
    """
    return isinstance(exc, KafkaTimeoutError | UnknownError) or bool(
        getattr(exc, "retriable", False)
    )


async def until_written(
    write: Callable[[], Awaitable[T]],
    topic: str,
    *,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
) -> T:
    """Run `write` until it succeeds; retriable broker errors wait and try again."""
    failures = 0
    while True:
        try:
            result = await write()
        except KafkaError as exc:
            if not retriable(exc):
                raise
            if failures == 0:
                log.warning(
                    "broker write failed; retrying until it lands",
                    extra={"topic": topic, "error": type(exc).__name__},
                )
            await sleep(BACKOFF_S[min(failures, len(BACKOFF_S) - 1)])
            failures += 1
            continue
        if failures:
            log.info("broker write landed", extra={"topic": topic, "retries": failures})
        return result
