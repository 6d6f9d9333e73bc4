"""A revoked partition's ordered chains: what the old assignment may still do.

aiokafka revokes every partition at each rebalance and may assign them back to
the same process at once. Messages of the old assignment may then still be in
flight or waiting in memory while the new one reads the same offsets again,
under the same chain keys. The broker and the tiers are stubs here: what is
tested is which chain each of them touches.
"""

from __future__ import annotations

import asyncio
from typing import Any

from hookstream.config import Settings
from hookstream.consumers.sequencer import Sequencer
from hookstream.engine.delivery import DeliveryTask
from hookstream.engine.offsets import OffsetTracker
from hookstream.engine.ordering import Admission, Chain
from tests.couriers import HoldingTiers, delivery_task

PARTITION = 0
KEY = (PARTITION, "ep_1", "order-7")


class _Producer:
    def __init__(self) -> None:
        self.sent: list[bytes | None] = []

    async def send(self, topic: str, *, key: bytes, value: bytes | None, partition: int) -> Any:
        self.sent.append(value)
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        done.set_result(None)
        return done


def _task() -> DeliveryTask:
    return delivery_task("ep_1", 1, subject="order-7")


def _sequencer() -> tuple[Sequencer, _Producer, HoldingTiers]:
    producer, tiers = _Producer(), HoldingTiers()
    return Sequencer(Settings(), producer, tiers), producer, tiers  # type: ignore[arg-type]


async def _waiting(sequencer: Sequencer, offset: int) -> asyncio.Task[Any]:
    """`offset` read from `deliveries`, admitted, left waiting in memory."""
    waiter = asyncio.create_task(sequencer.admit(PARTITION, offset, _task()))
    await asyncio.sleep(0)
    assert not waiter.done()
    return waiter


async def test_a_revocation_ends_the_messages_waiting_in_memory_unfinished() -> None:
    sequencer, producer, tiers = _sequencer()
    first, admission = await sequencer.admit(PARTITION, 1, _task())
    assert admission is Admission.GO
    waiters = [await _waiting(sequencer, offset) for offset in (2, 3, 4)]
    sequencer.forget({1})  # another partition: nothing here ends
    await asyncio.sleep(0)
    assert not any(w.done() for w in waiters)

    sequencer.forget({PARTITION})
    ended = await asyncio.wait_for(asyncio.gather(*waiters), timeout=5)
    assert ended == [(None, Admission.REVOKED)] * 3
    assert sequencer.revoked == 3
    assert tiers.held == []  # not held: their new owner reads them again
    assert producer.sent == []  # and no state of a chain no longer owned is written
    assert first is not None
    await sequencer.settle(PARTITION, first, due_at_ms=None)  # in flight at the revocation
    assert producer.sent == []
    assert sequencer._chains == {}
    assert sequencer._wakers == {}


async def test_the_old_assignment_neither_wakes_nor_settles_the_new_one() -> None:
    """Offsets 1 and 2 are read again under the new assignment while the old 1 is
    still in flight: its outcome is not the new 1's, and the new 2 waits for the new 1."""
    sequencer, _, _ = _sequencer()
    old_first, _ = await sequencer.admit(PARTITION, 1, _task())
    old_second = await _waiting(sequencer, 2)
    sequencer.forget({PARTITION})

    new_first, admission = await sequencer.admit(PARTITION, 1, _task())
    assert admission is Admission.GO
    new_second = await _waiting(sequencer, 2)
    assert await asyncio.wait_for(old_second, timeout=5) == (None, Admission.REVOKED)

    assert old_first is not None
    await sequencer.settle(PARTITION, old_first, due_at_ms=None)
    await asyncio.sleep(0)
    assert not new_second.done(), "the new 2 went before the new 1 was delivered"
    chain = sequencer._chains[KEY]
    assert chain.active == 1
    assert chain.state.resolved == -1

    assert new_first is not None
    await sequencer.settle(PARTITION, new_first, due_at_ms=None)
    task, woken = await asyncio.wait_for(new_second, timeout=5)
    assert woken is Admission.GO
    assert task is not None
    assert task.order_seq == 2


async def test_an_old_wait_ending_late_does_not_end_the_new_one_for_the_same_message() -> None:
    sequencer, _, _ = _sequencer()
    await sequencer.admit(PARTITION, 1, _task())
    old_second = await _waiting(sequencer, 2)
    sequencer.forget({PARTITION})  # ended; it runs its cleanup only on its next turn
    new_first, _ = await sequencer.admit(PARTITION, 1, _task())
    new_second = await _waiting(sequencer, 2)
    await asyncio.wait_for(old_second, timeout=5)
    assert (KEY, 2) in sequencer._wakers  # the new wait is still known, so it can be woken
    assert new_first is not None
    await sequencer.settle(PARTITION, new_first, due_at_ms=None)
    _, woken = await asyncio.wait_for(new_second, timeout=5)
    assert woken is Admission.GO


async def test_a_message_whose_chain_was_replaced_while_it_waited_is_held_not_dropped() -> None:
    """Not by a revocation, which ends the wait: a load that replaced a live chain did
    this when the dispatcher started records before the chains were loaded. Woken by
    the chain it waited in, the message is held in a tier, to come back to the chain
    there is now; nothing of the old chain is written."""
    sequencer, producer, tiers = _sequencer()
    first, _ = await sequencer.admit(PARTITION, 1, _task())
    second = await _waiting(sequencer, 2)
    sequencer._chains[KEY] = Chain()
    assert first is not None
    await sequencer.settle(PARTITION, first, due_at_ms=None)  # wakes 2 in the old chain
    assert await asyncio.wait_for(second, timeout=5) == (None, Admission.HOLD)
    assert tiers.held == [2]
    assert producer.sent == []


async def test_messages_waiting_when_ordering_is_switched_off_go_as_they_are() -> None:
    sequencer, _, _ = _sequencer()
    first, _ = await sequencer.admit(PARTITION, 1, _task())
    waiters = [await _waiting(sequencer, offset) for offset in (2, 3)]
    assert first is not None
    sequencer.abandon(PARTITION, first)
    for waiter in waiters:
        task, admission = await asyncio.wait_for(waiter, timeout=5)
        assert admission is Admission.LATE
        assert task is not None
    await sequencer.settle(PARTITION, first, due_at_ms=None)  # nothing left to settle
    assert sequencer._chains == {}


def test_a_finish_from_an_assignment_forgotten_since_is_ignored() -> None:
    tracker = OffsetTracker()
    old = tracker.start("p", 7)
    tracker.forget("p")  # revoked, then assigned back to this process
    new = tracker.start("p", 7)
    tracker.finish("p", 7, old)  # the old delivery of 7 ends late
    assert tracker.in_flight("p") == 1
    assert tracker.committable() == {"p": 7}
    tracker.finish("p", 7, new)
    assert tracker.in_flight("p") == 0
    assert tracker.committable() == {"p": 8}
