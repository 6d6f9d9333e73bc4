"""Fault: SIGTERM reaches a worker whose broker is gone.

A clean stop commits offsets and closes the Kafka clients, which cannot
happen without a broker. The worker must still exit, within
`shutdown_timeout_s`, rather than hang on the broker (uncommitted deliveries
are delivered again by the next worker: at least once, nothing lost).
"""

from __future__ import annotations

import signal
import time
from pathlib import Path

import pytest

from hookstream.config import Settings
from hookstream.embedded import EmbeddedStack
from hookstream.producers import EventPublisher
from tests.conftest import SinkFactory, eventually
from tests.faults.conftest import register, start_worker, wait_exit

pytestmark = pytest.mark.integration

DEADLINE_S = 5.0


async def test_a_worker_told_to_stop_with_its_broker_gone_exits_within_the_deadline(
    own_stack: EmbeddedStack, own_settings: Settings, sink_factory: SinkFactory, tmp_path: Path
) -> None:
    sink = await sink_factory()
    await register(own_settings, sink.url, 1)
    log = tmp_path / "worker.log"
    worker = start_worker(own_settings, log, HOOKSTREAM_SHUTDOWN_TIMEOUT_S=str(DEADLINE_S))
    try:
        async with EventPublisher(own_settings) as publisher:
            ids = await publisher.publish_many(
                {"type": "order.placed", "tenant": "acme", "data": {"i": i}} for i in range(10)
            )
        await eventually(lambda: set(ids) <= sink.event_ids(), timeout=90)

        own_stack.stop_server("broker", kill=True)
        worker.send_signal(signal.SIGTERM)
        started = time.monotonic()
        code = await wait_exit(worker, timeout=60)
        took = time.monotonic() - started
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait()
    assert took < DEADLINE_S + 10, f"the worker took {took:.1f} s to exit"
    text = log.read_text()
    # Either it stopped cleanly in time, or it said why it did not.
    assert code == 0 or "did not stop within" in text, text[-3000:]
