"""Building the delivery side around a fake `Sender`: tasks, senders, couriers.

The `Sender` seam (engine/outcome.py) is what the courier's docstring promises
tests can replace; everything else here is the real thing or, where a test
must prove a writer is never used, a stand-in that fails when touched.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, cast

from hookstream.config import Settings
from hookstream.consumers.courier import Courier
from hookstream.consumers.gates import EndpointGates
from hookstream.engine.delivery import DeliveryTask
from hookstream.engine.outcome import AttemptResult, OutgoingRequest
from hookstream.views.registry import EndpointRegistry


def delivery_task(endpoint_id: str, n: int, **fields: Any) -> DeliveryTask:
    """The `n`th delivery record for an endpoint, message id `msg_<endpoint>_<n>`."""
    return DeliveryTask(
        message_id=f"msg_{endpoint_id}_{n}",
        event_id=f"evt_{n}",
        endpoint_id=endpoint_id,
        tenant=fields.pop("tenant", "acme"),
        event_type=fields.pop("event_type", "order.placed"),
        body=b'{"i": %d}' % n,
        **fields,
    )


class HoldingTiers:
    """Retry tiers for a sequencer under test: notes each message held, writes nothing."""

    def __init__(self) -> None:
        self.held: list[int | None] = []

    async def hold(self, task: DeliveryTask, wait_s: float) -> None:
        self.held.append(task.order_seq)


@dataclass
class ScriptedSender:
    """Answers each request with `script(n)` (n counts from 1) after `latency_s`,
    noting what it was sent."""

    script: Callable[[int], AttemptResult] = lambda _: AttemptResult(status=204, duration_ms=1)
    latency_s: float = 0.0
    sent: list[OutgoingRequest] = field(default_factory=list)

    async def send(self, request: OutgoingRequest) -> AttemptResult:
        self.sent.append(request)
        if self.latency_s:
            await asyncio.sleep(self.latency_s)
        return self.script(len(self.sent))

    def webhook_ids(self) -> list[str]:
        return [r.headers["webhook-id"] for r in self.sent]


class Untouched:
    """A writer that must not be used: any attribute read fails the test."""

    def __init__(self, what: str) -> None:
        self._what = what

    def __getattr__(self, name: str) -> object:
        raise AssertionError(f"{self._what}.{name} used")


def courier_for(
    settings: Settings, registry: EndpointRegistry | Any, sender: ScriptedSender, **writers: Any
) -> Courier:
    """A courier delivering through `sender`; writers not given must stay untouched."""
    return Courier(
        settings,
        cast(EndpointRegistry, registry),
        sender,
        writers.pop("gates", None) or EndpointGates(settings.gate_settings),
        tiers=writers.pop("tiers", None) or cast(Any, Untouched("tiers")),
        dead_letters=writers.pop("dead_letters", None) or cast(Any, Untouched("dead_letters")),
        disabler=writers.pop("disabler", None) or cast(Any, Untouched("disabler")),
        ops=writers.pop("ops", None) or cast(Any, Untouched("ops")),
        **writers,
    )
