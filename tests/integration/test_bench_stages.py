"""The bench's engine stages (bench/stages.py), read back from the engine's topics: each
event's first attempt is timed once, and only events published from `since` on."""

from __future__ import annotations

import time

from bench.stages import NAMES, engine_stages

from hookstream.config import Settings
from hookstream.consumers.worker import Worker
from hookstream.producers import EventPublisher
from tests.conftest import EndpointFactory, SinkFactory, eventually


async def _publish(settings: Settings, first: int, count: int) -> None:
    events = [
        {"type": "tick.tock", "tenant": "acme", "data": {"n": n}}
        for n in range(first, first + count)
    ]
    async with EventPublisher(settings) as publisher:
        await publisher.publish_many(events)


async def test_each_first_attempt_since_is_timed_once(
    worker: Worker, fast: Settings, sink_factory: SinkFactory, endpoint_factory: EndpointFactory
) -> None:
    sink = await sink_factory()
    await endpoint_factory(sink.url, tenant="acme", event_types=["tick.*"])
    await _publish(fast, 0, 5)  # before `since`: not counted
    await eventually(lambda: len(sink.event_ids()) >= 5, timeout=60, message="5 not delivered")
    since = time.time()
    await _publish(fast, 5, 20)
    await eventually(lambda: len(sink.event_ids()) >= 25, timeout=60, message="20 not delivered")

    async def all_timed() -> bool:  # attempt records reach the broker a linger later
        stages = await engine_stages(fast, since)
        return all(stages[name]["count"] == 20 for name in NAMES)

    await eventually(all_timed, timeout=60, interval=0.2, message="not every attempt timed")
    stages = await engine_stages(fast, since)
    assert set(stages) == set(NAMES)
    for name, cuts in stages.items():
        assert cuts["count"] == 20, name
        p50, p99 = cuts["p50"], cuts["p99"]
        assert p50 is not None, name
        assert p99 is not None, name
        assert 0 <= p50 <= p99 < 60_000, name
