"""Kafka client options built from settings, so every producer and consumer agrees."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.errors import KafkaError

from hookstream import __version__
from hookstream.config import Settings

log = logging.getLogger(__name__)


def producer_options(settings: Settings, *, client_id: str) -> dict[str, Any]:
    """aiokafka producer keyword arguments: acks=all, linger, idempotence by setting."""
    return {
        "bootstrap_servers": settings.bootstrap,
        "client_id": f"hookstream-{__version__}-{client_id}",
        "acks": "all",
        "linger_ms": settings.producer_linger_ms,
        "enable_idempotence": settings.producer_idempotence,
        "max_request_size": 4 * 1024 * 1024,
    }


def consumer_options(settings: Settings, *, client_id: str) -> dict[str, Any]:
    """aiokafka consumer keyword arguments shared by every hookstream consumer."""
    return {
        "bootstrap_servers": settings.bootstrap,
        "client_id": f"hookstream-{__version__}-{client_id}",
        "enable_auto_commit": False,
        "auto_offset_reset": "earliest",
        "session_timeout_ms": settings.session_timeout_ms,
        "heartbeat_interval_ms": settings.heartbeat_interval_ms,
        "fetch_max_wait_ms": settings.fetch_max_wait_ms,
    }


async def start_whole(client: AIOKafkaConsumer | AIOKafkaProducer) -> None:
    """Start an aiokafka client; a cancel waits for the start to finish, then goes on.

    aiokafka's bootstrap opens a connection it closes only when the bootstrap
    completes: cut short by a cancel, that connection is left open and the
    client's stop() does not know of it. Clients started for one request or
    one background task (DLQ scans, filter dry runs) can be cancelled at any
    moment, so they start through here and stop in a `finally`.
    """
    starting = asyncio.ensure_future(client.start())
    try:
        await asyncio.shield(starting)
    except asyncio.CancelledError:
        with contextlib.suppress(Exception):
            await starting
        raise


async def rewind_past_end(consumer: AIOKafkaConsumer, stage: str) -> list[TopicPartition]:
    """Seek to the start every assigned partition whose position is past its log end.

    A broker that comes back empty (the embedded one keeps nothing; a topic
    deleted and recreated on Kafka) leaves a running consumer's position past
    the new log end. Kafka answers such a fetch with OffsetOutOfRange and
    aiokafka resets, but a broker that answers with no records instead leaves
    the consumer waiting for offsets that will never be written. The end is the
    high watermark of the latest fetch response (exact on every broker, where
    ListOffsets is not: decision 008), so a consumer that has read its
    partition never looks past the end. Each rewind is one ERROR line.
    """
    rewound = []
    for tp in consumer.assignment():
        end = consumer.highwater(tp)
        if end is None:
            continue
        try:
            # asyncio.timeout, not wait_for: on 3.11 wait_for can swallow a cancel that
            # arrives as the inner call completes, and a stopped loop would run on.
            async with asyncio.timeout(5):
                position = await consumer.position(tp)
        except (KafkaError, TimeoutError):
            continue
        if position > end:
            log.error(
                "consumer position past the log end: the broker lost this partition's"
                " records (restarted empty, or the topic was recreated); reading it again"
                " from its start",
                extra={
                    "stage": stage,
                    "topic": tp.topic,
                    "partition": tp.partition,
                    "position": position,
                    "log_end": end,
                },
            )
            await consumer.seek_to_beginning(tp)
            rewound.append(tp)
    return rewound


class LogEndGuard:
    """`rewind_past_end` for a consumer loop to call every turn.

    Every turn, because the check must see the first fetch after the broker
    returned empty: once new records push the log end past the old position,
    the loss can no longer be seen. It costs no broker round trip (the high
    watermark and the position are the client's own) unless it rewinds.
    """

    def __init__(self, stage: str) -> None:
        self._stage = stage

    async def check(self, consumer: AIOKafkaConsumer) -> list[TopicPartition]:
        """The partitions rewound now (usually none)."""
        return await rewind_past_end(consumer, self._stage)


async def stop_client(client: AIOKafkaConsumer | AIOKafkaProducer) -> None:
    """Stop an aiokafka client. With the broker gone, a consumer's stop re-raises the
    cancel of its own fetch retry (a task aiokafka cancels inside `stop()`): that cancel
    is aiokafka's, and is swallowed; a cancel of the caller is not."""
    try:
        await client.stop()
    except asyncio.CancelledError:
        task = asyncio.current_task()
        if task is not None and task.cancelling():
            raise
        log.debug("aiokafka re-raised its own cancel while stopping; stopped")
