"""Gap-aware offset tracking: commit only what every earlier record has finished.

Deliveries finish out of order. For each partition the tracker remembers the
offsets started and not yet finished; the committable offset is the lowest
unfinished one (or one past the highest finished when none is pending), so a
crash re-delivers every record that had no durable outcome.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Hashable
from dataclasses import dataclass, field


@dataclass(slots=True)
class _Partition:
    pending: deque[int] = field(default_factory=deque)  # started offsets, ascending
    finished: set[int] = field(default_factory=set)  # finished but not yet at the head
    next_offset: int | None = None  # one past the highest offset started
    committed: int | None = None  # last offset reported as committed


class OffsetTracker:
    """Per-partition bookkeeping of started and finished offsets (pure, no I/O)."""

    def __init__(self) -> None:
        self._parts: dict[Hashable, _Partition] = {}

    def start(self, tp: Hashable, offset: int) -> None:
        """Record that `offset` of `tp` is being worked on. Offsets arrive ascending."""
        part = self._parts.setdefault(tp, _Partition())
        if part.pending and offset <= part.pending[-1]:
            raise ValueError(f"offset {offset} of {tp} started out of order")
        part.pending.append(offset)
        part.next_offset = offset + 1

    def finish(self, tp: Hashable, offset: int) -> None:
        """Record that `offset` has a durable outcome. Unknown partitions are ignored."""
        part = self._parts.get(tp)
        if part is None:
            return
        if part.pending and part.pending[0] == offset:
            part.pending.popleft()
            while part.pending and part.pending[0] in part.finished:
                part.finished.discard(part.pending.popleft())
        else:
            part.finished.add(offset)

    def in_flight(self, tp: Hashable) -> int:
        """How many offsets of `tp` are started and not finished."""
        part = self._parts.get(tp)
        return 0 if part is None else len(part.pending) - len(part.finished)

    def committable(self) -> dict[Hashable, int]:
        """Offsets to commit now: per partition, the lowest unfinished offset (Kafka's
        "next offset to read"), only where it moved since the last `mark_committed`."""
        out: dict[Hashable, int] = {}
        for tp, part in self._parts.items():
            if part.next_offset is None:
                continue
            target = part.pending[0] if part.pending else part.next_offset
            if part.committed is None or target > part.committed:
                out[tp] = target
        return out

    def mark_committed(self, offsets: dict[Hashable, int]) -> None:
        """Remember what the broker accepted, so it is not committed again."""
        for tp, offset in offsets.items():
            part = self._parts.get(tp)
            if part is not None:
                part.committed = offset

    def forget(self, tp: Hashable) -> None:
        """Drop a partition (revoked): its late finishes are ignored from now on."""
        self._parts.pop(tp, None)
