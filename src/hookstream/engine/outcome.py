"""What one HTTP attempt means: delivered, retry later, or dead.

The only place that maps an attempt's result to a decision (after Outpost's
`shouldNackError`); the dispatcher acts on the verdict.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

from hookstream.engine.values import direct_init


class Verdict(enum.Enum):
    """The decision for a message after one attempt."""

    DELIVERED = "delivered"
    RETRY = "retry"
    DEAD = "dead"


@direct_init
@dataclass(frozen=True, slots=True)
class AttemptResult:
    """What happened on the wire: a status, or the error class that prevented one."""

    status: int | None
    duration_ms: float
    error_class: str | None = None
    error: str = ""
    excerpt: bytes = b""
    retriable_error: bool = True
    abort_requested: bool = False  # receiver answered `webhook-delivery: abort-message`
    retry_after: str | None = None  # the Retry-After header, as sent

    @property
    def ok(self) -> bool:
        """True for a 2xx answer."""
        return self.status is not None and 200 <= self.status < 300


@direct_init
@dataclass(frozen=True, slots=True)
class OutgoingRequest:
    """A signed webhook ready to POST."""

    url: str
    headers: Mapping[str, str]
    body: bytes


class Sender(Protocol):
    """The HTTP seam delivery code sees: one attempt in, its result out, nothing raised."""

    async def send(self, request: OutgoingRequest) -> AttemptResult:
        """Make one attempt."""
        ...


def judge(result: AttemptResult) -> tuple[Verdict, str]:
    """The verdict for an attempt and a short reason for logs and dead letters."""
    if result.ok:
        return Verdict.DELIVERED, f"http {result.status}"
    if result.abort_requested:
        return Verdict.DEAD, "receiver asked to abort the message"
    if result.status is None:
        reason = result.error_class or "error"
        return (Verdict.RETRY if result.retriable_error else Verdict.DEAD), reason
    if result.status == 410:
        return Verdict.DEAD, "http 410: endpoint gone"
    return Verdict.RETRY, f"http {result.status}"
