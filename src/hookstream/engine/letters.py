"""Dead letters as the index knows them: ids, filters, ranges and redrive outcomes. Pure.

A letter's id is `<dead_at_ms, 13 digits>.<partition>.<offset>`. It names one
record of the `dlq` topic, so it is unique, and compared as text it sorts by
the time the message died. A Redis sorted set whose scores are all 0 sorts its
members as text, so ZRANGEBYLEX pages letters in time order, a time window is a
text range, and a cursor is the last id returned.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

_ID = re.compile(r"\d{13}\.\d{1,5}\.\d{1,19}")


def letter_id(dead_at_ms: int, partition: int, offset: int) -> str:
    """The id of the letter at (`partition`, `offset`), dead at `dead_at_ms`."""
    return f"{max(0, dead_at_ms):013d}.{partition}.{offset}"


def is_letter_id(text: str) -> bool:
    """True when `text` has the form of a letter id."""
    return _ID.fullmatch(text) is not None


def dead_at_ms(letter: str) -> int:
    """When the letter's message died (epoch ms), read from its id."""
    return int(letter[:13])


@dataclass(frozen=True, slots=True)
class DeadLetterFilter:
    """Which dead letters an operator means; every field optional."""

    tenant: str | None = None
    endpoint_id: str | None = None
    event_type: str | None = None
    since_ms: int | None = None  # dead-lettered at or after (epoch ms)
    until_ms: int | None = None  # dead-lettered before (epoch ms)

    def fields(self) -> dict[str, str]:
        """The field conditions given (tenant, endpoint_id, event_type), by field name."""
        given = {
            "tenant": self.tenant,
            "endpoint_id": self.endpoint_id,
            "event_type": self.event_type,
        }
        return {name: value for name, value in given.items() if value is not None}

    def lex_range(self, after: str | None = None, *, newest: bool = False) -> tuple[str, str]:
        """The ZRANGEBYLEX bounds (low, high) of the time window, past the cursor `after`.

        `since` is inclusive and `until` exclusive: every id of a millisecond
        sorts after its 13 digits alone and before the next millisecond's.
        Paging `newest` first, the cursor bounds the window from above instead.
        """
        low = "-" if self.since_ms is None else f"[{self.since_ms:013d}"
        high = "+" if self.until_ms is None else f"({self.until_ms:013d}"
        if after is None:
            return low, high
        if newest and (self.until_ms is None or after < f"{self.until_ms:013d}"):
            high = f"({after}"
        elif not newest and (self.since_ms is None or after >= f"{self.since_ms:013d}"):
            low = f"({after}"
        return low, high


def redrive_outcome(
    redriven_at: float, attempts: list[dict[str, Any]], newest_letter: str | None, letter: str
) -> str:
    """What became of a redriven message, from what is known after `redriven_at`:

    `dead` when it died again (a newer letter of the same message exists),
    `delivered` or `retrying` from its latest attempt since the redrive, and
    `pending` while no attempt has been recorded yet.
    """
    if newest_letter is not None and newest_letter > letter:
        return "dead"
    since = [a for a in attempts if float(a.get("started_at", 0)) >= redriven_at]
    if not since:
        return "pending"
    outcome = max(since, key=lambda a: float(a["started_at"])).get("outcome")
    return {"delivered": "delivered", "dead": "dead"}.get(str(outcome), "retrying")
