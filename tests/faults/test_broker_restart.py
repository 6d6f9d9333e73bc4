"""Fault: the broker goes away and comes back.

The embedded broker keeps nothing across a restart (memory only): it comes
back empty, as Kafka does when a topic is deleted and recreated. No stage dies
while the broker is gone, the worker reports not-ready meanwhile, it is ready
again once a broker answers on the same address, and a consumer whose
position is past the new log end notices it and reads from the start
(kafka.py `rewind_past_end`), saying so in an ERROR line.

Delivery of events published after the return is not asserted: a consumer
whose loop is held until the new log has grown past its old position cannot
see the loss from offsets (1 of 2 fresh-clone runs lost 10 of 30 that way).
That case is open, see docs/reliability.md.
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
    own_stack: EmbeddedStack,
    own_settings: Settings,
    sink_factory: SinkFactory,
    caplog: pytest.LogCaptureFixture,
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

        async def ready() -> bool:
            return all((await worker.readiness()).values())

        await eventually(ready, timeout=60, message="a readiness check still fails")
        assert worker.failure() is None

        # The worker notices that the broker lost the partitions it had read, in an ERROR
        # line, and reads them from their new start.
        def noticed() -> bool:
            return any("past the log end" in r.getMessage() for r in caplog.records)

        await eventually(noticed, timeout=60, message="no stage noticed the lost log")

    finally:
        await worker.stop()
