"""Worker memory with a large retry backlog: RSS before and after N pending retries.

Starts the embedded stack, a sink that fails every first attempt, and a
`hookstream worker` process whose only retry tier waits 10 minutes; publishes
N events, waits until all N first attempts failed (so N retries wait in the
tier topic), and reports the worker's RSS before publishing and after, and
the RSS of a fresh worker that takes the whole backlog over: pending retries
live in Kafka, so it should match an idle worker's.

    .venv/bin/python -m bench.backlog --events 100000
"""

from __future__ import annotations

import argparse
import asyncio
import time

import orjson

from bench.common import register, rss_kib, spawn_worker, start_sink, stop_worker
from hookstream.config import Settings
from hookstream.embedded import EmbeddedStack
from hookstream.producers import EventPublisher
from hookstream.sink import SinkRecorder
from hookstream.topics import ensure_topics


def _fail_first(seen: int) -> tuple[int, dict[str, str]]:
    return (500, {}) if seen == 1 else (204, {})


async def run(events: int, *, backlog: bool = True) -> dict[str, float]:
    with EmbeddedStack() as stack:
        settings = stack.settings(
            Settings(
                topic_prefix="backlog.",
                partitions=4,
                dev_mode=True,
                retry_schedule_s="600",
                retry_floor_s=600,
                retry_linear_interval_s=600,
                # Every first attempt must fail, not be parked by an open circuit
                # (the figure is the memory of 100,000 failed-and-pending messages)
                # and not be parked for a slot: a park would queue behind a
                # 600 s retry in the one tier this bench has.
                circuit_consecutive_failures=10**9,
                circuit_min_volume=10**9,
                endpoint_hold_max_s=3600,
                log_level="WARNING",
            )
        )
        await ensure_topics(settings)
        recorder = SinkRecorder(keep=False)
        runner, base = await start_sink(recorder, script=_fail_first if backlog else None)
        await register(settings, [{"url": f"{base}/hook", "tenant": "acme"}])
        worker = spawn_worker(settings)
        try:
            await asyncio.sleep(8)  # joined its groups, idle
            before = rss_kib(worker.pid)
            started = time.monotonic()
            async with EventPublisher(settings) as publisher:
                for chunk in range(0, events, 5000):
                    await publisher.publish_many(
                        {"type": "order.paid", "tenant": "acme", "data": {"i": i, "pad": "x" * 200}}
                        for i in range(chunk, min(events, chunk + 5000))
                    )
            deadline = time.monotonic() + 900

            def handled() -> int:
                return recorder.failed if backlog else recorder.accepted

            while handled() < events and time.monotonic() < deadline:
                await asyncio.sleep(0.5)
            if handled() < events:
                raise SystemExit(f"backlog: only {handled()} of {events} attempts in 900 s")
            elapsed = time.monotonic() - started
            await asyncio.sleep(5)  # let the last tier writes and commits settle
            after = rss_kib(worker.pid)
            # The real question: does a worker hold pending retries? A fresh
            # worker that takes over the whole backlog shows it.
            stop_worker(worker)
            worker = spawn_worker(settings)
            await asyncio.sleep(15)  # joined, read each tier's head, paused until due
            fresh = rss_kib(worker.pid)
        finally:
            stop_worker(worker)
            await runner.cleanup()
        return {
            "events": events,
            "backlog": backlog,
            "first_attempts_failed": recorder.failed,
            "delivered_early": recorder.accepted,
            "seconds": round(elapsed, 1),
            "rss_before_mib": round(before / 1024, 1),
            "rss_after_mib": round(after / 1024, 1),
            "rss_fresh_worker_mib": round(fresh / 1024, 1),
            "delivered_by_fresh_worker": recorder.accepted,
        }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument(
        "--no-backlog",
        action="store_true",
        help="control run: the receiver accepts every first attempt, so nothing waits",
    )
    args = parser.parse_args()
    result = asyncio.run(run(args.events, backlog=not args.no_backlog))
    print(orjson.dumps(result, option=orjson.OPT_INDENT_2).decode())


if __name__ == "__main__":
    main()
