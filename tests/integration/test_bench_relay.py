"""The bench's bare relay (bench/relay.py), the latency floor the engine is compared
with: it must carry every event once, to its type's path, in the engine's body shape."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from datetime import datetime

import orjson
from aiohttp import web
from bench import relay, sinkproc
from bench.harness import events

from hookstream.config import Settings
from hookstream.embedded import free_port
from hookstream.producers import EventPublisher
from tests.conftest import eventually


async def test_the_relay_carries_every_event_once_to_its_path_with_its_timestamp(
    settings: Settings,
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
    running = asyncio.create_task(relay.run(settings, f"http://127.0.0.1:{port}"))
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
