"""What sick endpoints cost healthy ones: healthy-endpoint throughput, all healthy vs mixed.

One run, two phases on one embedded stack, each with a fresh topic prefix and
a fresh `hookstream worker` process. The same 16 healthy endpoints get the
same events in both; in the first phase their 4 neighbours are healthy too,
in the second 2 answer after 1 s (10% slow) and 2 always answer 500 (10%
failing). Events are interleaved, so sick and healthy records share every
partition. The figure is the healthy endpoints' deliveries/s in the mixed
phase ÷ the same in the all-healthy phase (goal ≥ 0.9). Single phases vary
by ±25% on a busy 2-core machine, so the phases alternate for `--rounds`
rounds and the ratio is of the medians.

    .venv/bin/python -m bench.isolation --events-per-endpoint 1000 --rounds 3
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from typing import Any

import orjson

from bench.common import register, spawn_worker, start_sink, stop_worker
from hookstream.config import Settings
from hookstream.embedded import EmbeddedStack
from hookstream.producers import EventPublisher
from hookstream.sink import SinkRecorder
from hookstream.topics import ensure_topics

ENDPOINTS = 20
HEALTHY = 16


def _always_500(_: int) -> tuple[int, dict[str, str]]:
    return 500, {}


async def phase(stack: EmbeddedStack, name: str, per_endpoint: int, *, mixed: bool) -> float:
    """Healthy-endpoint deliveries/s for one phase."""
    settings = stack.settings(
        Settings(
            topic_prefix=f"isolation-{name}.", partitions=4, dev_mode=True, log_level="WARNING"
        )
    )
    await ensure_topics(settings)
    healthy = SinkRecorder(keep=False)
    runners = []
    runner, healthy_url = await start_sink(healthy)
    runners.append(runner)
    urls = [healthy_url] * ENDPOINTS
    if mixed:
        runner, slow_url = await start_sink(SinkRecorder(keep=False), latency_s=1.0)
        runners.append(runner)
        runner, failing_url = await start_sink(SinkRecorder(keep=False), script=_always_500)
        runners.append(runner)
        urls[HEALTHY : HEALTHY + 2] = [slow_url] * 2
        urls[HEALTHY + 2 :] = [failing_url] * 2
    await register(
        settings,
        [
            {"url": f"{url}/ep{i}", "tenant": "acme", "event_types": [f"e{i}.*"]}
            for i, url in enumerate(urls)
        ],
    )
    worker = spawn_worker(settings)
    try:
        await asyncio.sleep(8)  # joined its groups
        events: list[dict[str, Any]] = [
            {"type": f"e{i}.happened", "tenant": "acme", "data": {"n": n, "pad": "x" * 200}}
            for n in range(per_endpoint)
            for i in range(ENDPOINTS)
        ]
        expected = HEALTHY * per_endpoint
        started = time.monotonic()
        async with EventPublisher(settings) as publisher:
            for chunk in range(0, len(events), 5000):
                await publisher.publish_many(events[chunk : chunk + 5000])
        deadline = started + 600
        while healthy_count(healthy) < expected and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        elapsed = time.monotonic() - started
        if healthy_count(healthy) < expected:
            raise SystemExit(f"{name}: only {healthy_count(healthy)} of {expected} delivered")
    finally:
        stop_worker(worker)
        for runner in runners:
            await runner.cleanup()
    return expected / elapsed


def healthy_count(recorder: SinkRecorder) -> int:
    """Deliveries accepted on the healthy endpoints' paths."""
    return sum(recorder.by_path[f"/ep{i}"] for i in range(HEALTHY))


async def run(per_endpoint: int, rounds: int) -> dict[str, Any]:
    healthy: list[float] = []
    mixed: list[float] = []
    with EmbeddedStack() as stack:
        for n in range(rounds):
            healthy.append(await phase(stack, f"healthy{n}", per_endpoint, mixed=False))
            mixed.append(await phase(stack, f"mixed{n}", per_endpoint, mixed=True))
    return {
        "endpoints": ENDPOINTS,
        "healthy_endpoints": HEALTHY,
        "events_per_endpoint": per_endpoint,
        "all_healthy_deliveries_per_s": [round(v, 1) for v in healthy],
        "mixed_healthy_deliveries_per_s": [round(v, 1) for v in mixed],
        "isolation_ratio": round(statistics.median(mixed) / statistics.median(healthy), 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events-per-endpoint", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    result = asyncio.run(run(args.events_per_endpoint, args.rounds))
    print(orjson.dumps(result, option=orjson.OPT_INDENT_2).decode())


if __name__ == "__main__":
    main()
