"""A burst to a new endpoint: how much of it the endpoint gate parks (decision 020).

Publishes N events for one endpoint before a worker starts, so the router
hands the dispatcher the whole burst at once, then counts the receiver's
first attempts, the time they span and the deliveries the gate parked. The
circuit breaker is off, as in the retry tests, so that a receiver failing
every first attempt measures admission only.

    .venv/bin/python -m bench.burst --events 1000 --receiver fail
"""

from __future__ import annotations

import argparse
import asyncio
import time

from aiohttp import web

from hookstream.config import Settings
from hookstream.consumers.worker import Worker
from hookstream.embedded import EmbeddedStack, free_port
from hookstream.engine.destinations import DEV_EGRESS
from hookstream.engine.endpoint import new_endpoint
from hookstream.producers import EventPublisher
from hookstream.topics import ensure_topics
from hookstream.views.registry import EndpointRegistry


async def run(stack: EmbeddedStack, events: int, *, fail_first: bool) -> dict[str, float]:
    settings = stack.settings(
        Settings(
            topic_prefix=f"burst{time.time_ns()}.",
            partitions=4,
            dev_mode=True,
            admin_key="burst-admin-key-0123456789",
            log_level="WARNING",
            retry_schedule_s="5,5",
            retry_jitter=0.0,
            circuit_consecutive_failures=10**6,
            circuit_min_volume=10**6,
        )
    )
    await ensure_topics(settings)
    seen: dict[str, int] = {}
    first: list[float] = []

    async def hook(request: web.Request) -> web.Response:
        webhook_id = request.headers["webhook-id"]
        seen[webhook_id] = seen.get(webhook_id, 0) + 1
        if seen[webhook_id] > 1:
            return web.Response(status=204)
        first.append(time.monotonic())
        return web.Response(status=500 if fail_first else 204)

    app = web.Application()
    app.router.add_post("/hook", hook)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    registry = EndpointRegistry(settings, writable=True)
    await registry.start()
    endpoint = new_endpoint(
        {"url": f"http://127.0.0.1:{port}/hook", "tenant": "acme", "event_types": ["*"]},
        policy=DEV_EGRESS,
    )
    await registry.put(endpoint)
    async with EventPublisher(settings) as publisher:
        await publisher.publish_many(
            [{"type": "order.paid", "tenant": "acme", "data": {"n": n}} for n in range(events)]
        )
    worker = Worker(settings)
    await worker.start()
    try:
        deadline = time.monotonic() + 120
        while len(first) < events and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        gate = worker.gates.get(endpoint.id)
        return {
            "first_attempts": len(first),
            "span_s": round(first[-1] - first[0], 2) if first else 0.0,
            "parked": gate.parked if gate is not None else 0,
        }
    finally:
        await worker.stop()
        await registry.stop()
        await runner.cleanup()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1000)
    parser.add_argument("--receiver", choices=("fail", "ok"), default="fail")
    parser.add_argument("--runs", type=int, default=1)
    args = parser.parse_args()
    with EmbeddedStack() as stack:
        for _ in range(args.runs):
            print(asyncio.run(run(stack, args.events, fail_first=args.receiver == "fail")))


if __name__ == "__main__":
    main()
