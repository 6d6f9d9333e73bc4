"""A message woken in the loop iteration its wait runs out keeps its wake.

Under uvloop, the worker's loop, timers run before `call_soon` callbacks in each
iteration. A message waiting (bounded) for a predecessor in a tier can be woken
with GO, which makes it the chain's active message, in the same iteration as
its timeout. If the timeout won, the message was held as well, the chain's
active message was one that nobody runs, its tier copy was dropped as a
duplicate, and its subject stalled for good. That happened in the `ordered`
bench: 2 of 30,000 events never delivered.

The broker and the tiers are stubs here: the race is between two callbacks in
one process, and the stub's blocking write is what puts them in one iteration.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
import uvloop

from hookstream.config import Settings
from hookstream.consumers import sequencer as sequencer_module
from hookstream.consumers.sequencer import Sequencer
from hookstream.engine.delivery import DeliveryTask
from hookstream.engine.ordering import Admission, Chain, ChainState
from tests.couriers import HoldingTiers

WAIT_S = 0.05


class _BlockingProducer:
    """Acknowledges at once, after blocking the loop past every waiter's deadline."""

    def __init__(self) -> None:
        self.sent: list[bytes | None] = []

    async def send(self, topic: str, *, key: bytes, value: bytes | None, partition: int) -> Any:
        time.sleep(WAIT_S * 3)  # noqa: ASYNC251 - blocking the loop is the point
        self.sent.append(value)
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        done.set_result(None)
        return done


def _task(seq: int, prev: int | None) -> DeliveryTask:
    return DeliveryTask(
        message_id=f"msg_{seq}",
        event_id=f"e{seq}",
        endpoint_id="ep_1",
        tenant="acme",
        event_type="order.placed",
        body=b"{}",
        subject="order-7",
    ).in_chain(seq, prev)


async def _woken_as_time_runs_out() -> tuple[Admission, list[int | None], Chain]:
    tiers = HoldingTiers()
    sequencer = Sequencer(Settings(), _BlockingProducer(), tiers)  # type: ignore[arg-type]
    key = (0, "ep_1", "order-7")
    # Message 1 is in a tier, due now; 2 was held behind it and comes back first.
    chain = sequencer._chains[key] = Chain.loaded(
        ChainState(resolved=-1, placed=2, due_at_ms=int(time.time() * 1000))
    )
    second = asyncio.create_task(sequencer.admit(0, None, _task(2, 1)))
    await asyncio.sleep(0)
    assert chain.waiting == {2: 1}  # a bounded wait: its predecessor is not here
    first, admission = await sequencer.admit(0, None, _task(1, None))
    assert first is not None
    assert admission is Admission.GO
    # Delivered: the watermark's write blocks past 2's deadline, then 2 is woken.
    await sequencer.settle(0, first, due_at_ms=None)
    task, woken = await second
    assert task is not None
    if woken is Admission.GO:
        await sequencer.settle(0, task, due_at_ms=None)
    return woken, tiers.held, chain


def test_a_message_woken_as_its_wait_runs_out_goes_and_its_chain_settles(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(sequencer_module, "WAIT_S", WAIT_S)
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        woken, held, chain = runner.run(_woken_as_time_runs_out())
    assert woken is Admission.GO
    assert held == []  # not also put in a tier behind a chain that has taken it
    assert chain.active is None
    assert chain.state.resolved == 2
    assert chain.settled
