"""LogEndGuard's bookkeeping after a lost log: where a reassigned partition resumes.

The broker side (a position past the new end, a refilled log found by its
fingerprint, delivery resuming) is tested against the embedded broker in
tests/faults/test_broker_restart.py; this is the pure part, with a stand-in
consumer that answers positions and records seeks.
"""

from __future__ import annotations

from aiokafka import TopicPartition

from hookstream.config import Settings
from hookstream.kafka import LOSS_SUSPECT_S, LogEndGuard

LOST = TopicPartition("deliveries", 0)
KEPT = TopicPartition("deliveries", 1)


class _Consumer:
    """Positions 10 on both partitions; the broker's log end 0 on LOST, 50 on KEPT."""

    def __init__(self) -> None:
        self.seeks: list[tuple[TopicPartition, int | str]] = []

    def assignment(self) -> set[TopicPartition]:
        return {LOST, KEPT}

    def highwater(self, tp: TopicPartition) -> int:
        return 0 if tp == LOST else 50

    async def position(self, tp: TopicPartition) -> int:
        return 10

    async def seek_to_beginning(self, *tps: TopicPartition) -> None:
        self.seeks += [(tp, "start") for tp in tps]

    def seek(self, tp: TopicPartition, offset: int) -> None:
        self.seeks.append((tp, offset))


async def _lost_once(clock: list[float] | None = None) -> tuple[LogEndGuard, _Consumer]:
    now = clock or [0.0]
    guard = LogEndGuard("dispatcher", Settings(), clock=lambda: now[0])
    consumer = _Consumer()
    assert await guard.check(consumer) == [LOST]
    assert consumer.seeks == [(LOST, "start")]
    consumer.seeks.clear()
    return guard, consumer


async def test_a_lost_partition_assigned_before_any_new_commit_resumes_from_its_start() -> None:
    guard, consumer = await _lost_once()
    # The group's commit (from before the loss) would skip the new log's first records.
    await guard.assigned(consumer, {LOST, KEPT})
    assert consumer.seeks == [(LOST, "start")]


async def test_a_lost_partition_resumes_from_the_offset_committed_since_the_rewind() -> None:
    guard, consumer = await _lost_once()
    guard.committed({LOST: 7, KEPT: 40})
    guard.committed({LOST: 9})
    await guard.assigned(consumer, {LOST, KEPT})
    assert consumer.seeks == [(LOST, 9)]


async def test_the_group_commit_is_trusted_again_once_the_loss_is_old() -> None:
    clock = [100.0]
    guard, consumer = await _lost_once(clock)
    clock[0] += LOSS_SUSPECT_S + 1
    await guard.assigned(consumer, {LOST})
    await guard.assigned(consumer, {LOST})
    assert consumer.seeks == []


async def test_a_guard_that_lost_nothing_never_seeks() -> None:
    guard, consumer = LogEndGuard("dispatcher", Settings()), _Consumer()
    guard.committed({KEPT: 40})
    await guard.assigned(consumer, {KEPT})
    assert consumer.seeks == []
