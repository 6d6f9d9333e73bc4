"""Kafka client options built from settings, so every producer and consumer agrees."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from hookstream import __version__
from hookstream.config import Settings


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
