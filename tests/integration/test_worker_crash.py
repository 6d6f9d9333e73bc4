"""Scenario: the worker is killed with SIGKILL in the middle of 2,000 deliveries.

After a restart every event is delivered at least once, and every duplicate
carries the same webhook-id as the first delivery.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import pytest

from hookstream.config import Settings
from hookstream.engine.delivery import message_id_for
from hookstream.producers import EventPublisher
from tests.conftest import EndpointFactory, SinkFactory, eventually

pytestmark = pytest.mark.integration


def start_worker(settings: Settings, log: Path, **overrides: str) -> subprocess.Popen[bytes]:
    """`hookstream worker` in its own process, configured through HOOKSTREAM_* variables."""
    env = {**os.environ, **settings.to_env(), **overrides}
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "hookstream", "worker"],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=out,
        )


async def wait_exit(proc: subprocess.Popen[bytes], timeout: float = 60.0) -> int:
    """The process's exit code, waiting without blocking the loop."""
    return await asyncio.wait_for(asyncio.to_thread(proc.wait), timeout)


async def test_sigkill_mid_delivery_loses_nothing_and_keeps_webhook_ids(
    settings: Settings,
    sink_factory: SinkFactory,
    endpoint_factory: EndpointFactory,
    tmp_path: Path,
) -> None:
    log = tmp_path / "worker.log"
    secrets: list[str] = []
    # A receiver slow enough (10 ms per answer, at most 20 in flight) that
    # 2,000 deliveries take seconds, so the kill lands in the middle.
    sink = await sink_factory(secrets=secrets, latency_s=0.01)
    endpoints = [await endpoint_factory(sink.url, "acme", ["order.*"]) for _ in range(2)]
    secrets.extend(e.secret for e in endpoints)
    async with EventPublisher(settings) as publisher:
        ids = await publisher.publish_many(
            {"type": "order.placed", "tenant": "acme", "subject": f"order-{i}", "data": {"i": i}}
            for i in range(1000)
        )
    expected = {(e, ep.id) for e in ids for ep in endpoints}
    received = sink.recorder.received

    worker = start_worker(settings, log, HOOKSTREAM_IN_FLIGHT="20")
    try:
        await eventually(lambda: len(received) >= 500, timeout=90, message="no progress")
        worker.send_signal(signal.SIGKILL)
        assert await wait_exit(worker) == -signal.SIGKILL
        at_kill = len({(r.event_id, r.webhook_id) for r in received})
        assert at_kill < len(expected), "the kill came too late to prove anything"

        worker = start_worker(settings, log)

        def delivered() -> set[tuple[str, str]]:
            by_webhook_id = {message_id_for(e, ep): (e, ep) for e, ep in expected}
            return {by_webhook_id[r.webhook_id] for r in received if r.webhook_id in by_webhook_id}

        await eventually(
            lambda: delivered() == expected,
            timeout=120,
            message=lambda: f"{len(expected - delivered())} of {len(expected)} never delivered",
        )
        worker.send_signal(signal.SIGTERM)
        assert await wait_exit(worker) == 0, log.read_text()[-3000:]
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait()

    assert sink.recorder.rejected == 0
    webhook_ids: dict[tuple[str, str], set[str]] = defaultdict(set)
    endpoint_by_path = {ep.id: ep for ep in endpoints}
    for r in received:
        # The webhook-id is the message id of (event, endpoint): same on every duplicate.
        matching = [ep for ep in endpoint_by_path if r.webhook_id == message_id_for(r.event_id, ep)]
        assert len(matching) == 1, f"webhook-id {r.webhook_id} is not derived from its event"
        webhook_ids[(r.event_id, matching[0])].add(r.webhook_id)
    assert all(len(v) == 1 for v in webhook_ids.values())
    duplicates = len(received) - len(expected)
    print(
        f"\n[crash] delivered {len(expected)}; {duplicates} duplicates after SIGKILL at {at_kill}"
    )
