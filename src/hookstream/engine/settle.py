"""Settle: the one place that decides what an attempt's result means for its message.

    settle(task, result, policy, gate, now, rng) -> Settlement

`judge` (engine/outcome.py) reads the wire: delivered, retryable, or final.
`settle` adds what the endpoint and the schedule say: a failure past the
auto-disable period disables the endpoint and kills the message; a 410
disables it too; a retryable failure with no attempt left is dead
(exhausted). The dispatcher only acts on the settlement.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from hookstream.engine.delivery import DeliveryTask
from hookstream.engine.gate import EndpointGate
from hookstream.engine.outcome import AttemptResult, Verdict, judge
from hookstream.engine.retry import RetryPolicy, next_wait
from hookstream.engine.values import direct_init


@direct_init
@dataclass(frozen=True, slots=True)
class Settlement:
    """What to do with a message after one attempt."""

    verdict: Verdict
    reason: str  # for logs, the attempt log and dead letters
    wait_s: float | None = None  # RETRY: seconds until the next attempt
    disable: str | None = None  # disable the endpoint, saying why
    exhausted: bool = False  # DEAD because no attempt was left


def settle(
    task: DeliveryTask,
    result: AttemptResult,
    policy: RetryPolicy,
    gate: EndpointGate,
    now: float,
    rng: random.Random,
) -> Settlement:
    """The settlement of `task`'s attempt that ended in `result`.

    `policy` is the endpoint's own (`RetryPolicy.for_endpoint`); `gate` has
    already counted `result`, so its failing-since clock includes it.
    """
    verdict, reason = judge(result)
    if verdict is Verdict.DELIVERED:
        return Settlement(verdict, reason)
    if gate.should_disable(now):
        why = f"no successful attempt for {duration(gate.settings.auto_disable_after_s)}"
        return Settlement(Verdict.DEAD, f"endpoint disabled: {why}", disable=why)
    if result.status == 410:
        return Settlement(Verdict.DEAD, reason, disable="it answered 410 Gone")
    if verdict is Verdict.DEAD:
        return Settlement(verdict, reason)
    wait_s = next_wait(policy, task.attempt, result, now=now, rng=rng)
    if wait_s is None:
        reason = f"attempts exhausted ({task.attempt}); last: {reason}"
        return Settlement(Verdict.DEAD, reason, exhausted=True)
    return Settlement(Verdict.RETRY, reason, wait_s=wait_s)


def duration(seconds: float) -> str:
    """3600 → "1h", 432000 → "5d", 1.5 → "1.5s"."""
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{seconds:g}s"
