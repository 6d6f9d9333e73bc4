"""The endpoint gates' one face, `enter` / `leave`: slots in arrival order, and the
hold that no waiting delivery outlasts (asyncio, no servers)."""

from __future__ import annotations

import asyncio

from hookstream.consumers.gates import EndpointGates, Entry
from hookstream.engine.destinations import DEV_EGRESS
from hookstream.engine.endpoint import new_endpoint
from hookstream.engine.gate import GateSettings
from hookstream.engine.outcome import AttemptResult

ENDPOINT = new_endpoint(
    {"url": "http://127.0.0.1:9/hook", "tenant": "acme", "event_types": ["*"]},
    policy=DEV_EGRESS,
)
OK = AttemptResult(status=204, duration_ms=50.0)


def _gates(hold_s: float) -> EndpointGates:
    return EndpointGates(GateSettings(hold_max_s=hold_s, initial_concurrency=2, max_concurrency=2))


async def _enter_all(gates: EndpointGates, n: int) -> list[asyncio.Task[Entry]]:
    tasks = [asyncio.create_task(gates.enter(ENDPOINT, None, reserved=False)) for _ in range(n)]
    await asyncio.sleep(0)  # each reaches its gate
    return tasks


async def test_waiters_take_freed_slots_in_arrival_order() -> None:
    gates = _gates(hold_s=5.0)
    tasks = await _enter_all(gates, 5)
    await asyncio.sleep(0.01)
    started = [t for t in tasks if t.done()]
    assert started == tasks[:2]  # the cap
    gates.leave(tasks[0].result(), OK)
    await asyncio.sleep(0.01)
    assert [t.done() for t in tasks] == [True, True, True, False, False]
    for task in tasks[3:]:
        task.cancel()
    await asyncio.gather(*tasks[3:], return_exceptions=True)
    gate = gates.get(ENDPOINT.id)
    assert gate is not None
    assert gate.waiting == 0


async def test_a_delivery_without_a_slot_after_the_hold_is_parked() -> None:
    # A receiver that never answers: the first two hold the slots; the other
    # eight were admitted (no answer yet, nothing old in flight) and are evicted
    # after the hold instead of holding the window until the receiver answers.
    gates = _gates(hold_s=0.2)
    tasks = await _enter_all(gates, 10)
    entries = await asyncio.wait_for(asyncio.gather(*tasks), timeout=5)
    sent = [e for e in entries if e.park_s is None]
    parked = [e for e in entries if e.park_s is not None]
    assert len(sent) == 2
    assert len(parked) == 8
    assert all(e.reason == "concurrency limit" and e.park_s >= 0.2 for e in parked)  # type: ignore[operator]
    gate = gates.get(ENDPOINT.id)
    assert gate is not None
    assert (gate.in_flight, gate.waiting, gate.parked) == (2, 0, 8)
    assert gates.changed() == {ENDPOINT.id}  # its health shows the parks


async def test_a_slot_freed_as_the_hold_ends_is_not_lost() -> None:
    gates = _gates(hold_s=0.1)
    tasks = await _enter_all(gates, 4)
    await asyncio.sleep(0.01)
    first = tasks[0].result()
    loop = asyncio.get_running_loop()
    # Free a slot at about the moment the waiters' hold runs out.
    left = asyncio.Event()

    def leave() -> None:
        gates.leave(first, OK)
        left.set()

    loop.call_later(0.09, leave)
    await asyncio.wait_for(asyncio.gather(*tasks), timeout=5)
    await asyncio.wait_for(left.wait(), timeout=5)
    gate = gates.get(ENDPOINT.id)
    assert gate is not None
    started = sum(1 for t in tasks if t.result().park_s is None)
    # Whoever took the freed slot is in flight; nobody waits; the slot count holds.
    assert gate.waiting == 0
    assert gate.in_flight == started - 1
    assert gate.in_flight <= 2
    assert gate.can_start() == (gate.in_flight < 2)


def _never_overdue(gates: EndpointGates) -> None:
    gate = gates.gate(ENDPOINT)
    gate.overdue = lambda *_, **__: False  # type: ignore[method-assign]


async def test_a_waiter_asked_again_after_the_hold_keeps_its_place() -> None:
    gates = _gates(hold_s=0.02)
    _never_overdue(gates)
    tasks = await _enter_all(gates, 5)
    await asyncio.sleep(0.15)  # every waiter was asked again several times
    assert [t.done() for t in tasks] == [True, True, False, False, False]
    for turn in (2, 3, 4):
        gates.leave(tasks[turn - 2].result(), OK)
        await asyncio.wait_for(asyncio.shield(tasks[turn]), timeout=5)
        assert [t.done() for t in tasks[turn + 1 :]] == [False] * (4 - turn)
    gate = gates.get(ENDPOINT.id)
    assert gate is not None
    assert (gate.in_flight, gate.waiting) == (2, 0)


async def test_a_slot_handed_to_a_waiter_just_asked_again_is_taken() -> None:
    # Its hold ran out and a slot freed before it ran again: it must take the
    # slot, not lose it to the nudge, and the next waiter must not get it too.
    gates = _gates(hold_s=5.0)
    _never_overdue(gates)
    tasks = await _enter_all(gates, 4)
    await asyncio.sleep(0.01)
    first_waiter = gates._waiters[ENDPOINT.id][0]
    first_waiter.future.set_result(None)  # its hold timer fired
    gates.leave(tasks[0].result(), OK)  # and a slot freed in the same turn
    entry = await asyncio.wait_for(tasks[2], timeout=5)
    assert entry.park_s is None
    await asyncio.sleep(0.01)
    assert not tasks[3].done()
    gate = gates.get(ENDPOINT.id)
    assert gate is not None
    assert (gate.in_flight, gate.waiting) == (2, 1)
    tasks[3].cancel()
    await asyncio.gather(tasks[3], return_exceptions=True)


async def test_a_slot_handed_to_a_waiter_cancelled_before_it_ran_goes_to_the_next() -> None:
    gates = _gates(hold_s=5.0)
    tasks = await _enter_all(gates, 4)
    await asyncio.sleep(0.01)
    gates.leave(tasks[0].result(), OK)  # handed to tasks[2] ...
    tasks[2].cancel()  # ... which is cancelled before it takes it
    await asyncio.gather(tasks[2], return_exceptions=True)
    entry = await asyncio.wait_for(tasks[3], timeout=5)
    assert entry.park_s is None
    gate = gates.get(ENDPOINT.id)
    assert gate is not None
    assert (gate.in_flight, gate.waiting) == (2, 0)


async def test_each_waiter_is_asked_after_its_own_hold_not_the_first_ones() -> None:
    gates = _gates(hold_s=0.5)
    gate = gates.gate(ENDPOINT)
    gate.overdue = lambda *_, **__: True  # type: ignore[method-assign]
    loop = asyncio.get_running_loop()
    await _enter_all(gates, 2)  # the cap
    waits: dict[int, tuple[float, float]] = {}  # arrived, parked (loop time)

    async def wait(n: int) -> Entry:
        arrived = loop.time()
        entry = await gates.enter(ENDPOINT, None, reserved=False)
        waits[n] = (arrived, loop.time())
        return entry

    tasks = []
    for n in range(3):
        tasks.append(asyncio.create_task(wait(n)))
        await asyncio.sleep(0.1)
    entries = await asyncio.wait_for(asyncio.gather(*tasks), timeout=5)
    assert [e.reason for e in entries] == ["concurrency limit"] * 3
    for arrived, parked in waits.values():
        assert 0.5 <= parked - arrived < 0.5 + 0.4  # its hold, then asked
    assert waits[2][1] - waits[0][1] >= 0.15  # the last arrived 0.2 s later, parked later
    assert (gate.in_flight, gate.waiting, gate.parked) == (2, 0, 3)


async def test_a_waiter_is_asked_again_after_each_hold_until_it_has_a_slot() -> None:
    gates = _gates(hold_s=0.05)
    gate = gates.gate(ENDPOINT)
    asked: list[int] = []

    def overdue(now: float, position: int, **_: object) -> bool:
        asked.append(position)
        return False

    gate.overdue = overdue  # type: ignore[method-assign]
    tasks = await _enter_all(gates, 4)  # two hold the cap, two wait
    await asyncio.sleep(0.32)  # six holds of each waiter
    assert 2 * 4 <= len(asked) <= 2 * 7
    assert set(asked) == {0, 1}  # each in its own place
    gates.leave(tasks[0].result(), OK)
    gates.leave(tasks[1].result(), OK)
    await asyncio.wait_for(asyncio.gather(*tasks[2:]), timeout=5)
    before = len(asked)
    await asyncio.sleep(0.15)  # their holds end with nobody waiting: nobody is asked
    assert len(asked) == before
    assert (gate.in_flight, gate.waiting) == (2, 0)


async def test_slots_freed_together_go_to_the_first_waiters_each_once_in_order() -> None:
    # Slots freed back to back, before any waiter runs: each goes to one waiter,
    # in arrival order, and is that waiter's; no waiter is woken to find its
    # slot gone and queue again at the back.
    gates = EndpointGates(GateSettings(hold_max_s=5.0, initial_concurrency=3, max_concurrency=3))
    gate = gates.gate(ENDPOINT)
    order: list[int] = []

    async def deliver(n: int) -> Entry:
        entry = await gates.enter(ENDPOINT, None, reserved=False)
        order.append(n)
        return entry

    tasks = [asyncio.create_task(deliver(n)) for n in range(12)]
    await asyncio.sleep(0.01)
    assert order == [0, 1, 2]
    for burst in ((0, 1), (2, 3, 4), (5, 6, 7)):
        for n in burst:
            gates.leave(tasks[n].result(), OK)  # all before any waiter runs
        assert gate.in_flight == 3  # taken in the woken waiters' names at once
        await asyncio.sleep(0.01)
        assert gate.in_flight == 3
    assert order == list(range(11))
    assert (gate.in_flight, gate.waiting) == (3, 1)
    tasks[11].cancel()
    await asyncio.gather(tasks[11], return_exceptions=True)
    assert (gate.in_flight, gate.waiting) == (3, 0)


async def test_a_cap_raised_between_leaves_hands_every_new_slot_once() -> None:
    gates = _gates(hold_s=5.0)
    gate = gates.gate(ENDPOINT)
    tasks = await _enter_all(gates, 8)
    await asyncio.sleep(0.01)
    gate.concurrency.limit = 5.0  # the adaptive cap grew
    gates.leave(tasks[0].result(), OK)  # one leaves: four slots free
    assert (gate.in_flight, gate.waiting) == (5, 2)
    await asyncio.sleep(0.01)
    assert [t.done() for t in tasks] == [True] * 6 + [False] * 2
    assert all(t.result().park_s is None for t in tasks[:6])
    for task in tasks[6:]:
        task.cancel()
    await asyncio.gather(*tasks[6:], return_exceptions=True)
    assert (gate.in_flight, gate.waiting) == (5, 0)
