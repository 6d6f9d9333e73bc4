"""The bench's bare relay (bench/relay.py), the latency floor the engine is compared
with: it must carry every event once, to its type's path, in the engine's body shape,
and time each record's stages."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from datetime import datetime
from pathlib import Path

import orjson
from aiohttp import web
from bench import relay, sinkproc
from bench.harness import events

from hookstream.config import Settings
from hookstream.embedded import free_port
from hookstream.producers import EventPublisher
from tests.conftest import eventually


async def test_the_relay_carries_every_event_once_to_its_path_and_times_its_stages(
    settings: Settings, tmp_path: Path
) -> None:
    app = sinkproc.create_app(set(), set(), 0.0)
    seen: list[tuple[str, dict[str, object]]] = []

    async def keep(
        request: web.Request,
        handler: Callable[[web.Request], Awaitable[web.StreamResponse]],
    ) -> web.StreamResponse:
        seen.append((request.path, orjson.loads(await request.read())))
        return await handler(request)

    app.middlewares.append(web.middleware(keep))
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    running = asyncio.create_task(relay.run(settings, f"http://127.0.0.1:{port}", tmp_path))
    try:
        sent = events(30, kinds=3, pad=10)
        async with EventPublisher(settings) as publisher:
            ids = await publisher.publish_many(sent)
        await eventually(lambda: len(seen) >= 30, message=lambda: f"{len(seen)} of 30 arrived")
        await asyncio.sleep(0.5)  # a copy would arrive in this time
        assert len(seen) == 30
        assert sorted(str(body["id"]) for _, body in seen) == sorted(ids)
        for path, body in seen:
            assert path == "/e" + str(body["type"]).removeprefix("bench.e")
            assert set(body) == {"id", "type", "timestamp", "data"}
            datetime.fromisoformat(str(body["timestamp"]))
        by_n = {int(body["data"]["n"]): body for _, body in seen}  # type: ignore[index]
        assert [by_n[n]["type"] for n in range(30)] == [e["type"] for e in sent]
    finally:
        running.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await running
        await runner.cleanup()
    # Cancelled, it wrote its stage times: one per record for each hop and POST,
    # one per batch for the acknowledgements, none negative.
    stages = _written_stages(tmp_path)
    assert set(stages) == {"event_hop", "acks", "delivery_hop", "post"}
    for name in ("event_hop", "delivery_hop", "post"):
        assert len(stages[name]) == 30, name
    assert 1 <= len(stages["acks"]) <= 30
    for name, timed in stages.items():
        assert all(ms >= 0 and at > 0 for at, ms in timed), name


def _written_stages(directory: Path) -> dict[str, list[list[float]]]:
    (written,) = directory.glob("relay-*.json")  # one relay, one file
    stages: dict[str, list[list[float]]] = orjson.loads(written.read_bytes())
    return stages
