"""The gates of every endpoint this worker owns, behind one face: `enter` and `leave`.

    entry = await gates.enter(endpoint, tp, reserved=task.reserved)
    if entry.park_s is not None: park it (a retry tier), due in entry.park_s
    else: send it, then gates.leave(entry, result)

Each endpoint's gate (engine/gate.py, pure) decides admission and keeps the
circuit, rate limit, adaptive cap and health window. This class owns the
rest of admission: creating and reconfiguring gates as endpoints change, the
wait for a rate slot, and the queue of deliveries waiting, in arrival order,
for a concurrency slot. It also marks which gates changed, for the health
book (consumers/health.py) to publish.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from aiokafka import TopicPartition

from hookstream.consumers.loop_delay import LoopDelay
from hookstream.engine.clock import parse_rfc3339
from hookstream.engine.endpoint import Endpoint
from hookstream.engine.gate import EndpointGate, GateSettings
from hookstream.engine.outcome import AttemptResult
from hookstream.engine.values import direct_init


@direct_init
@dataclass(frozen=True, slots=True)
class Entry:
    """One delivery at its endpoint's gate: admitted (started) or to be parked."""

    gate: EndpointGate
    park_s: float | None = None  # parked: due this many seconds from now
    reason: str = ""  # why it was parked
    reserved: bool = False  # a rate slot is held for it (carried when parked)
    probe: bool = False  # admitted as the half-open circuit's probe


class EndpointGates:
    """Admission for the endpoints this worker delivers to."""

    def __init__(
        self,
        settings: GateSettings,
        *,
        clock: Callable[[], float] = time.time,
        loop_delay: LoopDelay | None = None,
    ) -> None:
        self._settings = settings
        self._clock = clock
        self._loop_delay = loop_delay  # the worker's own delay, not the endpoints'
        self._gates: dict[str, EndpointGate] = {}
        self._partition: dict[str, TopicPartition] = {}
        self._disabled: dict[str, bool] = {}
        self._versions: dict[str, str] = {}  # updated_at of the config each gate follows
        self._waiters: dict[str, deque[_Waiter]] = {}
        self._holds: dict[str, _Holds] = {}  # each endpoint's waits, nudged as their hold ends
        self._seeds: dict[str, float] = {}  # failing-since times of endpoints not owned here
        self._dirty: set[str] = set()

    # -- the face the courier uses ---------------------------------------------

    async def enter(self, endpoint: Endpoint, tp: TopicPartition, *, reserved: bool) -> Entry:
        """Admit one delivery: returns once it holds a concurrency slot, or at once to park."""
        gate = self.gate(endpoint, tp)
        admission = gate.admit(self._clock(), reserved=reserved, delay_s=self._delay_s())
        if admission.park_s is not None:
            self._dirty.add(gate.endpoint_id)
            return Entry(gate, admission.park_s, admission.reason, admission.reserved)
        started = False
        try:
            if admission.wait_s > 0:
                await asyncio.sleep(admission.wait_s)  # its rate-limit slot
            if not await self._take_slot(gate, self._settings.hold_max_s):
                # Slower than admission expected: parked now, not held in the window.
                park_s = gate.evicted(self._clock(), probe=admission.probe, delay_s=self._delay_s())
                self._dirty.add(gate.endpoint_id)
                return Entry(gate, park_s, "concurrency limit", admission.reserved)
            started = True
            if (hold_s := gate.recheck(self._clock(), probe=admission.probe)) is not None:
                # The circuit opened while it waited: held back like any other.
                self._dirty.add(gate.endpoint_id)
                self._wake(gate)
                return Entry(gate, hold_s, "circuit open", admission.reserved)
            if (pace_s := gate.pace(self._clock())) > 0:
                await asyncio.sleep(pace_s)  # late for its slot: no bunching with those on time
        except asyncio.CancelledError:
            gate.abandoned(started=started, probe=admission.probe)
            if started:
                self._wake(gate)
            raise
        return Entry(gate, reserved=admission.reserved, probe=admission.probe)

    def leave(self, entry: Entry, result: AttemptResult) -> None:
        """Count a sent delivery's outcome and hand its slot on."""
        entry.gate.finished(result, self._clock(), probe=entry.probe)
        self._dirty.add(entry.gate.endpoint_id)
        self._wake(entry.gate)

    # -- gates -------------------------------------------------------------------

    def gate(self, endpoint: Endpoint, tp: TopicPartition | None = None) -> EndpointGate:
        """The gate for `endpoint`, created on first use, updated to its current config.

        Any change to an enabled endpoint (an enable, a new URL) closes its
        circuit and restarts its auto-disable clock: it gets a fresh chance.
        """
        gate = self._gates.get(endpoint.id)
        if gate is None:
            seed = self._seeds.get(endpoint.id)
            if seed is not None and seed < _epoch(endpoint.updated_at):
                seed = None  # changed since it started failing
            gate = self._gates[endpoint.id] = EndpointGate(
                endpoint.id,
                self._settings,
                rate_limit=endpoint.rate_limit,
                max_concurrency=endpoint.max_concurrency,
                failing_since=seed,
            )
            self._versions[endpoint.id] = endpoint.updated_at
        elif self._versions.get(endpoint.id) != endpoint.updated_at:
            self._versions[endpoint.id] = endpoint.updated_at
            gate.configure(endpoint.rate_limit, endpoint.max_concurrency)
            if not endpoint.disabled:
                gate.reset()
        if self._disabled.get(endpoint.id) != endpoint.disabled:
            self._disabled[endpoint.id] = endpoint.disabled
            self._dirty.add(endpoint.id)
        if tp is not None:
            self._partition[endpoint.id] = tp
        return gate

    def get(self, endpoint_id: str) -> EndpointGate | None:
        """The gate of an endpoint this worker has delivered to, if any."""
        return self._gates.get(endpoint_id)

    def all(self) -> list[EndpointGate]:
        """Every gate this worker holds."""
        return list(self._gates.values())

    def is_disabled(self, endpoint_id: str) -> bool:
        """Whether the endpoint was disabled when last seen."""
        return self._disabled.get(endpoint_id, False)

    def forget(self, revoked: set[TopicPartition]) -> None:
        """Drop the idle gates of endpoints whose partitions moved to another worker."""
        for endpoint_id, tp in list(self._partition.items()):
            gate = self._gates.get(endpoint_id)
            if tp in revoked and gate is not None and not gate.in_flight and not gate.waiting:
                if gate.failing_since is not None:
                    self._seeds[endpoint_id] = gate.failing_since
                del self._gates[endpoint_id]
                del self._partition[endpoint_id]
                self._versions.pop(endpoint_id, None)
                self._holds.pop(endpoint_id, None)

    # -- health bookkeeping ----------------------------------------------------

    def seed(self, endpoint_id: str, failing_since: float | None) -> None:
        """Another worker's word on when an endpoint started failing (the health topic).
        Ignored for an endpoint owned here: our own state is the newest."""
        if endpoint_id in self._gates:
            return
        if failing_since is None:
            self._seeds.pop(endpoint_id, None)
        else:
            self._seeds[endpoint_id] = failing_since

    def changed(self) -> set[str]:
        """The endpoints whose gates changed since the last call (and forget them)."""
        dirty, self._dirty = self._dirty, set()
        return dirty

    def unpublished(self, endpoint_ids: Iterable[str]) -> None:
        """Mark endpoints changed again (their snapshot was not stored)."""
        self._dirty.update(endpoint_ids)

    # -- concurrency slots -------------------------------------------------------

    async def _take_slot(self, gate: EndpointGate, hold_s: float) -> bool:
        """Wait, in arrival order, until the endpoint's cap lets one more delivery start;
        True once this delivery holds a slot.

        A freed slot is taken in the first waiter's name as it is handed on
        (`_wake`), so nobody who arrives or runs sooner can take it first, and a
        waiter is woken once, for a slot that is its own. Every `hold_s` without a
        slot the gate is asked again whether the turn is still far off
        (`overdue`); False when it is: the delivery is parked."""
        if gate.can_start() and gate.endpoint_id not in self._waiters:
            gate.started(self._clock())
            return True
        loop = asyncio.get_running_loop()
        waiters = self._waiters.setdefault(gate.endpoint_id, deque())
        waiter = _Waiter(loop.create_future())
        waiters.append(waiter)
        try:
            while True:
                holds = self._holds.get(gate.endpoint_id)
                if holds is None:
                    holds = self._holds[gate.endpoint_id] = _Holds(loop, hold_s)
                holds.add(waiter.future)
                await waiter.future
                if waiter.handed:
                    gate.going(self._clock())
                    return True
                if gate.overdue(self._clock(), waiters.index(waiter), delay_s=self._delay_s()):
                    waiters.remove(waiter)
                    self._wake(gate)
                    return False
                waiter.future = loop.create_future()
        except asyncio.CancelledError:
            if waiter.handed:
                gate.handed_back()  # taken in its name, never used
            else:
                with contextlib.suppress(ValueError):
                    waiters.remove(waiter)
            self._wake(gate)  # the slot goes to the next
            raise

    def _delay_s(self) -> float:
        return self._loop_delay.delay_s if self._loop_delay is not None else 0.0

    def _wake(self, gate: EndpointGate) -> None:
        """Hand each free slot to the next waiter, taking it in the waiter's name."""
        waiters = self._waiters.get(gate.endpoint_id)
        if waiters is None:
            return
        while waiters and gate.can_start():
            waiter = waiters.popleft()
            waiter.handed = True
            gate.taken()
            if not waiter.future.done():
                waiter.future.set_result(None)  # else nudged: it sees `handed` when it runs
        if not waiters:
            del self._waiters[gate.endpoint_id]


class _Waiter:
    """One delivery waiting for a concurrency slot, in its endpoint's queue."""

    __slots__ = ("future", "handed")

    def __init__(self, future: asyncio.Future[None]) -> None:
        self.future = future  # done when handed a slot, or nudged to ask `overdue`
        self.handed = False  # a slot was taken in its name: it holds it


class _Holds:
    """The holds of one endpoint's waiters, under one timer (decision 043).

    A timer per wait cost a uvloop timer handle started and stopped for most
    deliveries at a busy endpoint. Every hold is `hold_s` long, so holds end in
    the order they began: one timer, set for the first, nudges each wait whose
    hold has ended, then is set for the next. A wait that was handed a slot or
    cancelled is skipped as its hold ends (its future is already done)."""

    __slots__ = ("_ends", "_hold_s", "_loop", "_timer")

    def __init__(self, loop: asyncio.AbstractEventLoop, hold_s: float) -> None:
        self._loop = loop
        self._hold_s = hold_s
        self._ends: deque[tuple[float, asyncio.Future[None]]] = deque()
        self._timer: asyncio.TimerHandle | None = None

    def add(self, future: asyncio.Future[None]) -> None:
        """Nudge `future` (done) when a hold from now ends, unless it is done before."""
        self._ends.append((self._loop.time() + self._hold_s, future))
        if self._timer is None:
            self._timer = self._loop.call_at(self._ends[0][0], self._nudge)

    def _nudge(self) -> None:
        # A loop's timers are as fine as its clock: 1 ms early still counts as due.
        ends, now = self._ends, self._loop.time() + 0.001
        while ends and ends[0][0] <= now:
            future = ends.popleft()[1]
            if not future.done():
                future.set_result(None)
        self._timer = self._loop.call_at(ends[0][0], self._nudge) if ends else None


def _epoch(timestamp: str) -> float:
    try:
        return parse_rfc3339(timestamp).timestamp()
    except ValueError:
        return 0.0
