"""Fault: the broker goes away and comes back.

The embedded broker keeps nothing across a restart (memory only), so what is
testable is the worker's side: it survives the broker being gone, reports
not-ready while it is, and delivers again once a broker answers on the same
address (here an empty one, whose topics are created again).

An empty broker is not what Kafka does on a restart (it keeps its logs): the
worker's consumers keep their positions, so records the new, empty logs hold
below those positions are not read. That is why the test counts how many
deliveries resume rather than expecting all of them.
"""

from __future__ import annotations

import pytest

from hookstream.config import Settings
from hookstream.consumers.worker import Worker
from hookstream.embedded import EmbeddedStack
from hookstream.producers import EventPublisher
from hookstream.topics import ensure_topics
from tests.conftest import SinkFactory, eventually
from tests.faults.conftest import register

pytestmark = pytest.mark.integration


async def test_the_worker_survives_the_broker_going_away_and_reports_not_ready(
    own_stack: EmbeddedStack, own_settings: Settings, sink_factory: SinkFactory
) -> None:
    sink = await sink_factory()
    await register(own_settings, sink.url, 1)
    worker = Worker(own_settings)
    await worker.start()
    try:
        async with EventPublisher(own_settings) as publisher:
            before = await publisher.publish_many(
                {"type": "order.placed", "tenant": "acme", "data": {"i": i}} for i in range(10)
            )
        await eventually(lambda: set(before) <= sink.event_ids(), timeout=60)

        async def broker_ready() -> bool:
            return (await worker.readiness())["broker"]

        async def broker_gone() -> bool:
            return not await broker_ready()

        assert await broker_ready()
        own_stack.stop_server("broker")
        await eventually(broker_gone, timeout=60, message="/readyz still says the broker is up")
        assert worker.failure() is None, "a stage died while the broker was away"

        own_stack.restart_server("broker")
        await ensure_topics(own_settings)
        # The endpoint stays in the worker's registry (memory) meanwhile.
        await eventually(broker_ready, timeout=90, message="not ready after the broker returned")
        async with EventPublisher(own_settings) as publisher:
            after = await publisher.publish_many(
                {"type": "order.placed", "tenant": "acme", "data": {"j": i}} for i in range(30)
            )
        # At most 10 of the 30 sit below the router's old positions in `events`
        # (10 events were read before), and at most 10 deliveries below the
        # dispatcher's in the endpoint's one `deliveries` partition: 10 or more
        # must arrive.
        await eventually(
            lambda: len(set(after) & sink.event_ids()) >= 10,
            timeout=120,
            message=lambda: f"{len(set(after) & sink.event_ids())} delivered after the return",
        )
        assert worker.failure() is None
    finally:
        await worker.stop()
