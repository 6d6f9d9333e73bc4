"""Gap-aware offset tracking: commit only what every earlier record has finished.

Deliveries finish out of order. For each partition the tracker remembers the
offsets started and not yet finished; the committable offset is the lowest
unfinished one (or one past the highest finished when none is pending), so a
crash re-delivers every record that had no durable outcome.
"""

from __future__ import annotations

import enum
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

    def start(self, tp: Hashable, offset: int) -> object:
        """Record that `offset` of `tp` is being worked on. Offsets arrive ascending.

        Returns the mark of this assignment of `tp`, for `finish`."""
        part = self._parts.setdefault(tp, _Partition())
        if part.pending and offset <= part.pending[-1]:
            raise ValueError(f"offset {offset} of {tp} started out of order")
        part.pending.append(offset)
        part.next_offset = offset + 1
        return part

    def finish(self, tp: Hashable, offset: int, mark: object | None = None) -> None:
        """Record that `offset` has a durable outcome. Unknown partitions are ignored,
        and so is a `mark` from `start` of an assignment forgotten since: offset 7
        finished under the old one says nothing of offset 7 read again under a new
        one, even when the partition came back to this process."""
        part = self._parts.get(tp)
        if part is None or (mark is not None and mark is not part):
            return
        if part.pending and part.pending[0] == offset:
            part.pending.popleft()
            while part.pending and part.pending[0] in part.finished:
                part.finished.discard(part.pending.popleft())
        else:
            part.finished.add(offset)

    def expected(self, tp: Hashable) -> int | None:
        """The offset that must come next for `tp` (one past the highest started),
        or None when nothing of `tp` was started since it was assigned."""
        part = self._parts.get(tp)
        return None if part is None else part.next_offset

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


class Hole(enum.Enum):
    """What to do with a record that does not follow the last one started."""

    NONE = "none"  # contiguous: start it
    NEW = "new"  # a hole just seen: read again from the expected offset
    AGAIN = "again"  # the same hole again: read again
    ACCEPTED = "accepted"  # the hole outlived the patience: start the record


class HoleWatch:
    """Decides, per partition, whether a gap before a fetched record is read again.

    Topics that are neither compacted nor transactional have contiguous
    offsets. A fetch that answers past the offset asked for means an earlier
    append was not visible yet; starting the later record would let the commit
    pass records nobody attempted. A hole is read again until it fills, or for
    `accept_after_s`, after which it is taken as real so a partition never
    stalls for good.
    """

    def __init__(self, accept_after_s: float) -> None:
        self._accept_after_s = accept_after_s
        self._first_seen: dict[tuple[Hashable, int], float] = {}

    def check(self, tp: Hashable, expected: int | None, offset: int, now: float) -> Hole:
        """`expected`: the tracker's next offset for `tp`; `offset`: the record's."""
        if expected is None or offset <= expected:
            if self._first_seen:
                self._first_seen.pop((tp, offset), None)  # filled
            return Hole.NONE
        key = (tp, expected)
        first = self._first_seen.get(key)
        if first is None:
            self._first_seen[key] = now
            return Hole.NEW
        if now - first > self._accept_after_s:
            del self._first_seen[key]
            return Hole.ACCEPTED
        return Hole.AGAIN

    def forget(self, tp: Hashable) -> None:
        """Drop a partition's holes (revoked)."""
        for key in [key for key in self._first_seen if key[0] == tp]:
            del self._first_seen[key]
