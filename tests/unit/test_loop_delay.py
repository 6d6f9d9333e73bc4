"""The worker's own loop delay: the median of a second of timer wakes."""

from __future__ import annotations

import asyncio
import time

from prometheus_client import CollectorRegistry

from hookstream.consumers.loop_delay import SAMPLES, LoopDelay


def test_one_long_callback_does_not_move_it_and_a_saturated_second_does() -> None:
    delay = LoopDelay()
    for _ in range(SAMPLES - 1):
        delay.sample(0.001)
    delay.sample(2.0)
    assert delay.delay_s == 0.001
    for _ in range(SAMPLES // 2 + 1):
        delay.sample(0.25)
    assert delay.delay_s == 0.25
    delay.sample(-0.01)  # a timer woken early is not a negative delay
    assert min(delay._samples) == 0.0


async def test_a_blocked_loop_shows_as_delay_and_the_gauge_follows() -> None:
    registry = CollectorRegistry()
    delay = LoopDelay(registry)
    delay.start()
    try:
        deadline = time.monotonic() + 30
        while delay.delay_s < 0.05:
            time.sleep(0.1)  # noqa: ASYNC251 - a worker too busy to run its timers
            await asyncio.sleep(0)
            assert time.monotonic() < deadline, "the delay never rose"
        gauge = registry.get_sample_value("hookstream_worker_loop_delay_seconds")
        assert gauge == delay.delay_s
    finally:
        await delay.stop()
    assert delay._task is None
