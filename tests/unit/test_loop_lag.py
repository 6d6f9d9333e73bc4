"""The worker's own lateness, and the gates taking it off what endpoints seem to cost."""

from __future__ import annotations

import asyncio
import time

from prometheus_client import CollectorRegistry

from hookstream.consumers.gates import EndpointGates
from hookstream.consumers.loop_lag import RECENT_S, LoopLag
from hookstream.engine.destinations import DEV_EGRESS
from hookstream.engine.endpoint import new_endpoint
from hookstream.engine.gate import GateSettings
from hookstream.engine.outcome import AttemptResult

ENDPOINT = new_endpoint(
    {"url": "http://127.0.0.1:9/hook", "tenant": "acme", "event_types": ["*"]},
    policy=DEV_EGRESS,
)


def _busy(seconds: float) -> None:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        pass


def test_recent_is_the_worst_of_the_last_second_and_the_mean_follows_slowly() -> None:
    now = [0.0]
    lag = LoopLag(clock=lambda: now[0])
    for late in (0.001, 0.3, 0.002, 0.1):
        now[0] += 0.02
        lag.note(late)
    assert lag.recent_s == 0.3
    assert 0 < lag.mean_s < 0.05  # one spike barely moves a 1 s half-life
    now[0] += RECENT_S  # the spike has left the window; 0.1 too
    lag.note(0.004)
    assert lag.recent_s == 0.004
    lag.note(-0.001)  # woke early: not negative
    assert lag.recent_s == 0.004
    assert lag.mean_s >= 0


async def test_a_blocked_loop_shows_as_lateness_and_in_the_gauge() -> None:
    registry = CollectorRegistry()
    lag = LoopLag(registry)
    lag.start()
    try:
        await asyncio.sleep(0.1)
        _busy(0.25)  # the loop is held, as by a CPU-bound stretch
        await asyncio.sleep(0.05)
        assert lag.recent_s >= 0.2
        assert registry.get_sample_value("hookstream_worker_loop_lag_seconds") == lag.mean_s > 0
    finally:
        await lag.stop()


async def test_the_gates_learn_answer_times_without_the_workers_own_lateness() -> None:
    now = [0.0]
    lag = LoopLag(clock=lambda: now[0])
    for _ in range(200):
        now[0] += 0.02
        lag.note(0.080)  # the loop runs 80 ms late for a while
    assert 0.07 < lag.mean_s <= 0.080
    late = EndpointGates(GateSettings(), loop_lag=lag)
    plain = EndpointGates(GateSettings())
    for gates in (late, plain):
        for _ in range(30):
            entry = await gates.enter(ENDPOINT, None, reserved=False)
            gates.leave(entry, AttemptResult(status=204, duration_ms=100.0))
    late_gate, plain_gate = late.get(ENDPOINT.id), plain.get(ENDPOINT.id)
    assert late_gate is not None
    assert plain_gate is not None
    assert plain_gate.window.baseline_ms == 100.0
    assert late_gate.window.baseline_ms is not None
    assert 20.0 <= late_gate.window.baseline_ms <= 30.0  # 100 ms measured, ~75-80 of it ours
    # A fast answer is never learnt as faster than 1 ms, nor as negative.
    entry = await late.enter(ENDPOINT, None, reserved=False)
    late.leave(entry, AttemptResult(status=204, duration_ms=3.0))
    assert late_gate.window.baseline_ms > 0
