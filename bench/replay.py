"""Replay isolation: live deliveries' rate while a replay of 100,000 events runs, vs without.

    .venv/bin/hookstream bench --scenario replay

Ten endpoints take live traffic at `live_rate` events/s for `seconds`, once
alone and once while a replay sends `events` past events to an eleventh
endpoint, created after they were published. Each live phase's rate is its
events over the time from its first publish to its last delivery; the ratio
of the two is the figure (≥ 0.9 is the goal). The replay must then deliver
every one of its events.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import aiohttp
from aiohttp import web
from aiokafka import AIOKafkaConsumer, TopicPartition

from bench.common import register
from bench.harness import Progress, Rig, Servers, publish_at, rig
from hookstream.api import create_app
from hookstream.config import Settings
from hookstream.embedded import free_port
from hookstream.kafka import consumer_options, log_ends
from hookstream.producers import EventPublisher
from hookstream.topics import TopicNames

LIVE_ENDPOINTS = 10
KEY = "bench-replay-admin-key-0123456789"


async def run(
    where: Servers, *, workers: int, events: int, live_rate: float, seconds: float
) -> dict[str, Any]:
    """Publish the past, time a live phase alone, then one beside the replay."""
    async with rig(where, workers=workers, endpoints=LIVE_ENDPOINTS, admin_key=KEY) as running:
        await _publish_past(running.settings, events)
        await _routed(running.settings)
        alone = await _live_phase(running, live_rate, seconds, "live alone")
        runner, base = await _api(running.settings)
        try:
            async with aiohttp.ClientSession(
                base_url=base, headers={"Authorization": f"Bearer {KEY}"}
            ) as session:
                (target,) = await register(
                    running.settings,
                    [
                        {
                            "url": f"{running.sink_url}/replay",
                            "tenant": "bench",
                            "event_types": ["bench.past"],
                        }
                    ],
                )
                started = time.perf_counter()
                async with session.post(
                    f"/v1/endpoints/{target.id}/replay", json={"since": "2000-01-01T00:00:00Z"}
                ) as response:
                    task = await response.json()
                beside = await _live_phase(running, live_rate, seconds, "live beside replay")
                during = await _task(session, task["status"])
                done = await _replay_done(running, session, task["status"], events)
                replay_s = time.perf_counter() - started
        finally:
            await runner.cleanup()
        stats = await running.sink_stats()
        replayed = stats["by_path"].get("/replay", 0)
        return {
            "scenario": "replay",
            "workers": workers,
            "replay_events": events,
            "live_rate_per_s": live_rate,
            "live_alone_per_s": round(alone, 1),
            "live_beside_replay_per_s": round(beside, 1),
            "isolation_ratio": round(beside / alone, 3),
            "replay_sent_during_live_phase": int(during["count"]),
            "replay_state": done["state"],
            "replay_delivered": replayed,
            "replay_per_s": round(events / replay_s, 1),
            "duplicates": stats["duplicates"],
            "lost": events - replayed if replayed < events else 0,
        }


async def _publish_past(settings: Settings, count: int) -> None:
    """`count` events that no endpoint wants yet."""
    bar = Progress("publish past", count)
    filler = "x" * 200
    async with EventPublisher(settings) as publisher:
        for first in range(0, count, 2000):
            batch = [
                {"type": "bench.past", "tenant": "bench", "data": {"n": n, "pad": filler}}
                for n in range(first, min(count, first + 2000))
            ]
            await publisher.publish_many(batch)
            bar.show(first + len(batch))
    bar.close()


async def _routed(settings: Settings, timeout: float = 600) -> None:
    """Wait until the router group has committed every `events` record (so the live
    router has routed the past before its endpoint exists)."""
    names = TopicNames(settings)
    ends = await log_ends(settings, names.events) or {}
    consumer = AIOKafkaConsumer(
        **consumer_options(settings, client_id="bench-routed"), group_id=names.router_group
    )
    await consumer.start()
    deadline = time.monotonic() + timeout
    try:
        for partition, end in ends.items():
            tp = TopicPartition(names.events, partition)
            while end and (await consumer.committed(tp) or 0) < end:
                if time.monotonic() > deadline:
                    raise SystemExit("replay bench: the router did not catch up")
                await asyncio.sleep(0.2)
    finally:
        await consumer.stop()


async def _live_count(running: Rig) -> int:
    stats = await running.sink_stats(since=time.time())
    return sum(n for path, n in stats["by_path"].items() if path != "/replay")


async def _live_phase(running: Rig, rate: float, seconds: float, label: str) -> float:
    """Live events/s: published at `rate` for `seconds`, over first publish → last delivery."""
    before = await _live_count(running)
    started = time.perf_counter()
    sent = await publish_at(running.settings, rate, seconds, kinds=LIVE_ENDPOINTS)
    bar = Progress(label, sent)
    deadline = time.monotonic() + seconds * 10 + 120
    while (got := await _live_count(running) - before) < sent:
        bar.show(got)
        running.check_alive()
        if time.monotonic() > deadline:
            raise SystemExit(f"replay bench: {label}: {got} of {sent} delivered")
        await asyncio.sleep(0.1)
    bar.close()
    return sent / (time.perf_counter() - started)


async def _task(session: aiohttp.ClientSession, status: str) -> dict[str, Any]:
    async with session.get(status) as response:
        progress: dict[str, Any] = await response.json()
        return progress


async def _replay_done(
    running: Rig, session: aiohttp.ClientSession, status: str, events: int
) -> dict[str, Any]:
    bar = Progress("replay delivered", events)
    deadline = time.monotonic() + 1800
    while True:
        progress = await _task(session, status)
        stats = await running.sink_stats(since=time.time())
        delivered = stats["by_path"].get("/replay", 0)
        bar.show(delivered)
        if progress["state"] != "running" and delivered >= events:
            break
        if progress["state"] not in ("running", "done") or time.monotonic() > deadline:
            bar.close()
            raise SystemExit(f"replay bench: replay {progress}, {delivered} delivered")
        running.check_alive()
        await asyncio.sleep(0.5)
    bar.close()
    return progress


async def _api(settings: Settings) -> tuple[web.AppRunner, str]:
    runner = web.AppRunner(create_app(settings), access_log=None)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    return runner, f"http://127.0.0.1:{port}"
