"""Time as the engine sees it: injected, so time-dependent logic is tested without sleeping."""

from __future__ import annotations

import re
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


_CANONICAL = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{3}Z")


def normalized_rfc3339(text: str) -> str:
    """`text` (RFC 3339 with an offset) in UTC to the millisecond, as `rfc3339` writes
    it; ValueError when it is not a timestamp.

    Text already in that form is returned as it is, once it parses: the
    router normalises every event's `occurred_at`, most of them written by
    `rfc3339` in the first place (decision 043). Other text is converted
    without a float, which lost a millisecond near the year 9999."""
    if _CANONICAL.fullmatch(text):
        datetime.fromisoformat(text)  # a real date and time: ValueError otherwise
        return text
    try:
        utc = parse_rfc3339(text).astimezone(UTC)
    except OverflowError:
        raise ValueError("outside the years 1 to 9999 in UTC") from None
    return utc.isoformat(timespec="milliseconds").replace("+00:00", "Z")
