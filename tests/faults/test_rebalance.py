"""Fault: two workers share the consumer groups; one is SIGKILLed, then returns.

Its partitions move to the survivor once the broker notices it gone (one
session timeout): before it returns, events published after the kill reach
every endpoint, so the survivor delivers the dead one's partitions. When it
comes back the groups
rebalance again, while events keep arriving throughout. Every event is
delivered at least once and every duplicate carries its original webhook-id.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from hookstream.config import Settings
from hookstream.embedded import free_port
from hookstream.engine.delivery import message_id_for
from hookstream.producers import EventPublisher
from tests.conftest import EndpointFactory, SinkFactory, eventually
from tests.faults.conftest import start_worker, wait_exit

pytestmark = pytest.mark.integration


async def delivered_by(port: int) -> int:
    """The worker's `hookstream_deliveries_total{outcome="delivered"}`, 0 if unreachable."""
    try:
        async with (
            aiohttp.ClientSession() as session,
            session.get(f"http://127.0.0.1:{port}/metrics") as response,
        ):
            text = await response.text()
    except aiohttp.ClientError:
        return 0
    for line in text.splitlines():
        if line.startswith('hookstream_deliveries_total{outcome="delivered"}'):
            return int(float(line.split()[-1]))
    return 0


@contextlib.asynccontextmanager
async def trickle(settings: Settings, ids: list[str], kinds: int) -> AsyncIterator[None]:
    """Publish 10 events every 0.1 s (at most 3 min) until the block ends; ids collected.

    Event n has type `order.e{n % kinds}`. The batch in progress when the block
    ends is finished, so every published event is in `ids`.
    """
    stop = asyncio.Event()

    async def run() -> None:
        async with EventPublisher(settings) as publisher:
            for n in range(0, 18_000, 10):
                if stop.is_set():
                    return
                batch = [
                    {"type": f"order.e{i % kinds}", "tenant": "acme", "data": {"n": i}}
                    for i in range(n, n + 10)
                ]
                ids.extend(await publisher.publish_many(batch))
                await asyncio.sleep(0.1)

    task = asyncio.create_task(run())
    try:
        yield
    finally:
        stop.set()
        await task


async def test_a_killed_worker_hands_over_and_takes_back_its_partitions_losing_nothing(
    settings: Settings, sink_factory: SinkFactory, endpoint_factory: EndpointFactory, tmp_path: Path
) -> None:
    sink = await sink_factory()
    # Deliveries are keyed by endpoint: 16 endpoints spread them over every
    # partition, so both workers have work (all on one half: p = 2^-15).
    kinds = 16
    endpoints = [await endpoint_factory(sink.url, "acme", [f"order.e{i}"]) for i in range(kinds)]
    ports = {"a": free_port(), "b": free_port()}

    def start(name: str) -> subprocess.Popen[bytes]:
        configured = settings.replace(worker_metrics_port=ports[name], log_level="INFO")
        return start_worker(configured, tmp_path / f"worker-{name}.log")

    async def both_delivering(baseline: dict[str, int]) -> bool:
        counts = {name: await delivered_by(port) for name, port in ports.items()}
        return all(counts[name] > baseline.get(name, 0) for name in ports)

    ids: list[str] = []
    workers = {"a": start("a"), "b": start("b")}
    try:
        async with trickle(settings, ids, kinds):
            # Both own partitions: each has delivered something.
            await eventually(lambda: both_delivering({}), timeout=90, message="a worker idle")
            workers["b"].send_signal(signal.SIGKILL)
            assert await wait_exit(workers["b"]) == -signal.SIGKILL
            killed_at = len(ids)

            def kinds_delivered_since_kill() -> set[int]:
                got = sink.event_ids()
                return {n % kinds for n in range(killed_at, len(ids)) if ids[n] in got}

            # The survivor takes over b's partitions, observed while b is still
            # gone: events published after the kill reach every endpoint (so
            # every partition, b's included), and everything published by the
            # kill is delivered.
            await eventually(
                lambda: len(kinds_delivered_since_kill()) == kinds,
                timeout=90,
                message=lambda: (
                    "b's partitions never moved to a: endpoints with nothing since the kill: "
                    f"{sorted(set(range(kinds)) - kinds_delivered_since_kill())}"
                ),
            )
            await eventually(
                lambda: set(ids[:killed_at]) <= sink.event_ids(),
                timeout=90,
                message=lambda: (
                    f"b's partitions never moved to a: "
                    f"{len(set(ids[:killed_at]) - sink.event_ids())} of {killed_at} missing"
                ),
            )
            assert workers["b"].poll() is not None  # still gone: a did all of it
            a_before = await delivered_by(ports["a"])
            ports["b"] = free_port()
            workers["b"] = start("b")
            # b is back and owns partitions again.
            await eventually(
                lambda: both_delivering({"a": a_before}), timeout=90, message="b never rejoined"
            )
        published = set(ids)
        await eventually(
            lambda: published <= sink.event_ids(),
            timeout=120,
            message=lambda: f"{len(published - sink.event_ids())} of {len(published)} lost",
        )
        for name, worker in workers.items():
            worker.send_signal(signal.SIGTERM)
            log = (tmp_path / f"worker-{name}.log").read_text()[-3000:]
            assert await wait_exit(worker) == 0, log
    finally:
        for worker in workers.values():
            if worker.poll() is None:
                worker.kill()
                worker.wait()

    # One endpoint per event: one webhook-id per (event, endpoint), the same on
    # every duplicate.
    expected = {message_id_for(e, endpoints[n % kinds].id) for n, e in enumerate(ids)}
    received = {r.webhook_id for r in sink.recorder.received}
    assert expected <= received
    assert received <= expected, "a delivery carried a webhook-id not derived from its event"
    duplicates = len(sink.recorder.received) - len(expected)
    print(f"\n[rebalance] {len(ids)} events delivered, {duplicates} duplicates")
