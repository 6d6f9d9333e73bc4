"""Fault: SIGTERM reaches a worker whose broker is gone or frozen.

A clean stop commits offsets and closes the Kafka clients, which cannot
happen without a broker. The worker must still exit within
`shutdown_timeout_s` (plus 2 s for the process to end) rather than hang on
the broker, and what it did not commit is delivered by the next worker: at
least once, nothing lost.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from pathlib import Path

import pytest
from aiohttp import web

from hookstream.config import Settings
from hookstream.embedded import EmbeddedStack
from hookstream.producers import EventPublisher
from tests.conftest import Serve, SinkFactory, eventually
from tests.faults.conftest import register, start_worker, wait_exit

pytestmark = pytest.mark.integration

DEADLINE_S = 5.0
EXIT_S = 2.0  # from the deadline to the process gone


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
    assert took < DEADLINE_S + EXIT_S, f"the worker took {took:.1f} s to exit"
    text = log.read_text()
    # Either it stopped cleanly in time, or it said why it did not.
    assert code == 0 or "did not stop within" in text, text[-3000:]


async def test_uncommitted_deliveries_of_a_worker_stopped_at_its_deadline_are_sent_again(
    own_stack: EmbeddedStack, own_settings: Settings, serve: Serve, tmp_path: Path
) -> None:
    # A receiver that holds every request until released: deliveries stay in
    # flight, so their offsets cannot be committed before the stop.
    release = asyncio.Event()
    arrived: list[str] = []
    answered: set[str] = set()

    async def hold(request: web.Request) -> web.Response:
        event_id = request.headers["hookstream-event-id"]
        arrived.append(event_id)
        if not release.is_set():
            await release.wait()
            return web.Response(status=503)  # the first worker is gone by now
        answered.add(event_id)
        return web.Response(status=204)

    app = web.Application()
    app.router.add_post("/hook", hold)
    url = await serve(app) + "/hook"
    await register(own_settings, url, 1)
    log = tmp_path / "worker.log"
    env = {"HOOKSTREAM_SHUTDOWN_TIMEOUT_S": str(DEADLINE_S)}
    worker = start_worker(own_settings, log, **env)
    broker = own_stack.pids["broker"]
    frozen = False
    try:
        async with EventPublisher(own_settings) as publisher:
            ids = await publisher.publish_many(
                {"type": "order.placed", "tenant": "acme", "data": {"i": i}} for i in range(10)
            )
        await eventually(lambda: set(ids) <= set(arrived), timeout=90, message="not all in flight")

        # Frozen, not killed: the broker keeps its log and the group's commits.
        os.kill(broker, signal.SIGSTOP)
        frozen = True
        worker.send_signal(signal.SIGTERM)
        started = time.monotonic()
        code = await wait_exit(worker, timeout=60)
        took = time.monotonic() - started
        assert took < DEADLINE_S + EXIT_S, f"the worker took {took:.1f} s to exit"
        assert code == 1, log.read_text()[-3000:]
        assert "did not stop within" in log.read_text()

        release.set()
        os.kill(broker, signal.SIGCONT)
        frozen = False
        worker = start_worker(own_settings, log, **env)
        await eventually(
            lambda: set(ids) <= answered,
            timeout=120,
            message=lambda: f"{len(set(ids) - answered)} of 10 never delivered again",
        )
    finally:
        if frozen:
            os.kill(broker, signal.SIGCONT)
        if worker.poll() is None:
            worker.send_signal(signal.SIGTERM)
            await wait_exit(worker, timeout=60)
