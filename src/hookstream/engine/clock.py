"""Time as the engine sees it: injected, so time-dependent logic is tested without sleeping."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime

#: Seconds since the epoch, as a float. Pass a fake in tests.
Clock = Callable[[], float]

system_clock: Clock = time.time


def rfc3339(ts: float) -> str:
    """`ts` (epoch seconds) as RFC 3339 UTC with milliseconds: 2026-01-02T03:04:05.678Z."""
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def parse_rfc3339(text: str) -> datetime:
    """Parse an RFC 3339 timestamp that carries an offset; raise ValueError otherwise."""
    parsed = datetime.fromisoformat(text)
    if parsed.tzinfo is None:
        raise ValueError("timestamp must carry a UTC offset, for example 2026-01-02T03:04:05Z")
    return parsed
