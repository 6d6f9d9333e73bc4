"""Ordered delivery per subject: which message of a subject may be attempted now.

An ordered endpoint's messages with the same subject form a *chain*. A message
takes its place when the dispatcher first reads it from `deliveries`: its
sequence number is that offset (one endpoint's messages share one partition,
so offsets order them), and its predecessor is the chain's tail. Both ride in
the record's headers from then on, through every retry tier.

A message may be attempted when its predecessor is resolved (delivered, or
dead) and nothing else of its subject is in flight. Messages resolve in chain
order, so "resolved" is one watermark per chain.

A chain whose head is deferred (a retry, or parked by its gate) is *blocked*:
its later messages are held in a retry tier behind the head, and its durable
state (`ChainState`) is on the compacted `ordering` topic, so a crash or a
rebalance keeps the order. A chain with nothing deferred lives in memory only
and costs no write. This module decides; consumers/sequencer.py does the I/O.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum

import orjson

# A held message whose predecessor is expected this soon waits in memory.
SOON_MS = 2_000
# A predecessor not back this long after the chain's head was due is given up
# (its record was lost to retention, or ordering was switched off and on): the
# chain moves on, and says that order was broken there.
GIVE_UP_MS = 10 * 60_000
MAX_WAITING = 16  # messages of one subject waiting in memory; later ones are held


class Admission(Enum):
    """What to do with a message of an ordered chain."""

    GO = "go"  # attempt it now
    WAIT = "wait"  # its predecessor is here and moving: wait in memory
    HOLD = "hold"  # place it in a retry tier behind the chain
    DUPLICATE = "duplicate"  # a copy of a message already here: drop it
    # Already passed by its chain (a copy left by a crash, or a predecessor that
    # was given up on and came back): attempted as it is, outside the chain, so
    # that nothing is lost.
    LATE = "late"
    GIVE_UP = "give_up"  # its predecessors are long overdue: attempt it, order broken
    # Its partition was revoked while it waited in memory: dropped here unfinished,
    # so whoever owns the partition now (maybe this process again) reads it again.
    REVOKED = "revoked"


@dataclass(slots=True)
class ChainState:
    """What the `ordering` topic keeps of a blocked chain."""

    resolved: int = -1  # highest sequence number delivered or dead
    placed: int = -1  # highest sequence number written to a retry tier
    due_at_ms: int = 0  # when the latest of its messages in a tier is due

    def to_record(self) -> bytes:
        """The `ordering` record value."""
        return orjson.dumps([self.resolved, self.placed, self.due_at_ms])

    @classmethod
    def from_record(cls, value: bytes) -> ChainState:
        """Rebuild from an `ordering` record value; ValueError when it is not one."""
        try:
            resolved, placed, due_at_ms = orjson.loads(value)
            return cls(int(resolved), int(placed), int(due_at_ms))
        except (orjson.JSONDecodeError, TypeError, ValueError) as exc:
            raise ValueError(f"not an ordering record: {exc}") from None


@dataclass(slots=True)
class Chain:
    """One subject's messages for one endpoint, as the owning dispatcher sees them."""

    state: ChainState = field(default_factory=ChainState)
    blocked: bool = False  # messages of it are in a retry tier; its state is on the topic
    tail: int = -1  # highest sequence number taken into the chain
    active: int | None = None  # the message being attempted
    waiting: dict[int, int | None] = field(default_factory=dict)  # seq -> prev, in memory
    holding: set[int] = field(default_factory=set)  # messages being written to a tier
    # Read from `deliveries` and not yet in a tier or resolved, with their
    # predecessors: a crash reads them again, so the topic is never told that
    # anything from the lowest on is placed.
    fresh: dict[int, int | None] = field(default_factory=dict)

    @classmethod
    def loaded(cls, state: ChainState) -> Chain:
        """A blocked chain as the `ordering` topic left it."""
        return cls(state=state, blocked=True, tail=max(state.placed, state.resolved))

    def place(self, offset: int) -> tuple[int, int | None] | None:
        """A message read from `deliveries` at `offset` joins the chain: its
        (seq, prev), or None when it is already in it (read again).

        Read again after a crash or a rebalance, a message may have come back
        from a tier first (it was held as its state was written): then it is
        here already, or resolved. It still moves the tail, so the next one
        read is placed behind it."""
        if offset <= self.tail:
            return None
        prev = self.tail if self.tail >= 0 else None
        self.tail = offset
        if offset == self.active or offset in self.waiting or offset <= self.state.resolved:
            return None
        self.fresh[offset] = prev
        return offset, prev

    def admit(self, seq: int, prev: int | None, now_ms: int) -> Admission:
        """What to do with message `seq` behind `prev` now."""
        if seq == self.active or seq in self.waiting:
            return Admission.DUPLICATE  # a second copy of a message already here
        if seq <= self.state.resolved:
            return Admission.LATE
        if self.active is None:
            if self._behind_nothing(prev):
                return Admission.GO
            if self.given_up(now_ms):
                return Admission.GIVE_UP
        if len(self.waiting) >= MAX_WAITING:
            return Admission.HOLD
        if prev == self.active or prev in self.waiting:
            return Admission.WAIT
        if self.state.due_at_ms <= now_ms + SOON_MS:
            return Admission.WAIT  # its predecessor is in a tier and due about now
        return Admission.HOLD

    def _behind_nothing(self, prev: int | None) -> bool:
        """True when nothing before a message behind `prev` is left to wait for.

        An unresolved predecessor that is not here is in a tier, or is read again
        from `deliveries` after a crash; either way it comes (or is given up on)."""
        return prev is None or prev <= self.state.resolved

    def given_up(self, now_ms: int) -> bool:
        """True when the chain's predecessors are overdue past waiting for."""
        return (
            self.blocked
            and self.active is None
            and not self.holding
            and now_ms > self.state.due_at_ms + GIVE_UP_MS
        )

    def begin(self, seq: int) -> None:
        """Message `seq` is being attempted."""
        self.active = seq
        self.waiting.pop(seq, None)

    def resolve(self, seq: int) -> None:
        """Message `seq` was delivered or died: its successor may go."""
        if self.active == seq:
            self.active = None
        self.fresh.pop(seq, None)
        self.state.resolved = max(self.state.resolved, seq)

    def defer(self, seq: int, due_at_ms: int) -> None:
        """Message `seq` was written to a retry tier, due at `due_at_ms`: the chain blocks."""
        if self.active == seq:
            self.active = None
        self.blocked = True
        self.fresh.pop(seq, None)
        self.state.placed = max(self.state.placed, seq)
        self.state.due_at_ms = max(self.state.due_at_ms, due_at_ms)

    def held(self, seq: int, due_at_ms: int) -> None:
        """Message `seq` was written to a retry tier behind the chain, due at `due_at_ms`.

        Only a message placed for the first time moves the chain's due time: one
        held again and again must not put off giving up on its predecessor."""
        self.blocked = True
        self.fresh.pop(seq, None)
        if seq > self.state.placed:
            self.state.placed = seq
            self.state.due_at_ms = max(self.state.due_at_ms, due_at_ms)

    def next_ready(self) -> int | None:
        """The waiting message that may go now, if any (the lowest eligible)."""
        if self.active is not None:
            return None
        ready = [s for s, p in self.waiting.items() if self._behind_nothing(p)]
        return min(ready) if ready else None

    def hold_due_ms(self, now_ms: int) -> int:
        """When a held message should come back: just after the head's next attempt."""
        if self.state.due_at_ms > now_ms:
            return self.state.due_at_ms + 100
        return now_ms + (500 if self.active is not None or self.waiting else 5_000)

    def record(self) -> bytes:
        """The state to write to the `ordering` topic: placed only up to the
        predecessor of the lowest message a crash would read again from
        `deliveries`. Loaded, that predecessor is the chain's tail, so the message
        read again is placed behind a message of its own chain, not behind an
        offset of another subject that it would wait for in vain."""
        placed = self.state.placed
        if self.fresh:
            before = self.fresh[min(self.fresh)]
            placed = min(placed, -1 if before is None else before)
        return ChainState(self.state.resolved, placed, self.state.due_at_ms).to_record()

    @property
    def settled(self) -> bool:
        """Nothing of the chain is left here or in a tier: its state may go."""
        return (
            self.active is None
            and not self.waiting
            and not self.holding
            and self.state.resolved >= self.state.placed
        )
