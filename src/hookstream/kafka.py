"""Kafka client options built from settings, so every producer and consumer agrees."""

from __future__ import annotations

from typing import Any

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
