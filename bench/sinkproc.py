"""The bench's receiver, in its own process: answers 204 at once and counts everything.

    python -m bench.sinkproc --port 9000

POST any path: a delivery. It records, per delivery, the arrival second and
the latency from the event's `timestamp` (occurred at) to arrival, and counts
each `webhook-id` so duplicates show. GET /stats answers the counts,
per-second arrivals and latency percentiles (optionally only for deliveries
that arrived after `?since=<epoch s>`); GET /counts answers the counts alone,
without walking what arrived (polled while waiting); POST /reset clears them. With
`--fail-paths /a,/b` it answers 500 on those paths (failing endpoints), and
with `--slow-paths /c --slow-s 1` it answers them after a delay. With
`--fail-ratio 0.1` it answers 500 to a random 10% of all deliveries.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import time
from collections import Counter
from datetime import datetime
from typing import Any

import orjson
from aiohttp import web


class Tally:
    """What the sink saw."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        """Forget everything."""
        self.seen: Counter[str] = Counter()
        self.arrivals: list[float] = []  # arrival time of each accepted delivery
        self.latencies: list[float] = []  # occurred → arrived, seconds, same order
        self.failed = 0
        self.duplicates = 0
        self.by_path: Counter[str] = Counter()

    def counts(self) -> dict[str, int]:
        """Accepted, distinct, duplicates and failed: constant time."""
        return {
            "accepted": len(self.arrivals),
            "distinct": len(self.seen),
            "duplicates": self.duplicates,
            "failed": self.failed,
        }

    def stats(self, since: float) -> dict[str, Any]:
        """Counts, per-second series and latency percentiles."""
        picked = [lat for t, lat in zip(self.arrivals, self.latencies, strict=True) if t >= since]
        picked.sort()
        per_second: Counter[int] = Counter(int(t) for t in self.arrivals)
        return {
            "accepted": len(self.arrivals),
            "distinct": len(self.seen),
            "duplicates": self.duplicates,
            "failed": self.failed,
            "by_path": dict(self.by_path),
            "first_at": self.arrivals[0] if self.arrivals else None,
            "last_at": self.arrivals[-1] if self.arrivals else None,
            "per_second": sorted(per_second.items()),
            "latency_ms": {
                f"p{q}": round(_quantile(picked, q / 100) * 1000, 2) if picked else None
                for q in (50, 95, 99)
            },
            "latency_count": len(picked),
        }


def _quantile(values: list[float], q: float) -> float:
    return values[min(len(values) - 1, int(q * len(values)))]


def create_app(
    fail_paths: set[str], slow_paths: set[str], slow_s: float, fail_ratio: float = 0.0
) -> web.Application:
    """The sink app."""
    tally = Tally()
    parse = datetime.fromisoformat

    async def receive(request: web.Request) -> web.Response:
        body = await request.read()
        path = request.path
        if path in slow_paths:
            await asyncio.sleep(slow_s)
        if path in fail_paths or (fail_ratio and random.random() < fail_ratio):
            tally.failed += 1
            return web.Response(status=500)
        now = time.time()
        webhook_id = request.headers.get("webhook-id", "")
        if webhook_id in tally.seen:
            tally.duplicates += 1
        tally.seen[webhook_id] += 1
        tally.by_path[path] += 1
        tally.arrivals.append(now)
        try:
            occurred = parse(orjson.loads(body)["timestamp"]).timestamp()
        except (ValueError, KeyError, TypeError):
            occurred = now
        tally.latencies.append(now - occurred)
        return web.Response(status=204)

    async def stats(request: web.Request) -> web.Response:
        since = float(request.query.get("since", "0"))
        return web.Response(body=orjson.dumps(tally.stats(since)), content_type="application/json")

    async def counts(_: web.Request) -> web.Response:
        return web.Response(body=orjson.dumps(tally.counts()), content_type="application/json")

    async def reset(_: web.Request) -> web.Response:
        tally.reset()
        return web.Response(status=204)

    app = web.Application(client_max_size=8 * 1024 * 1024)
    app.router.add_get("/stats", stats)
    app.router.add_get("/counts", counts)
    app.router.add_post("/reset", reset)
    app.router.add_post("/{tail:.*}", receive)
    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--fail-paths", default="")
    parser.add_argument("--slow-paths", default="")
    parser.add_argument("--slow-s", type=float, default=1.0)
    parser.add_argument("--fail-ratio", type=float, default=0.0)
    args = parser.parse_args()
    app = create_app(
        {p for p in args.fail_paths.split(",") if p},
        {p for p in args.slow_paths.split(",") if p},
        args.slow_s,
        args.fail_ratio,
    )
    import uvloop

    uvloop.install()
    web.run_app(app, host="127.0.0.1", port=args.port, access_log=None, print=None)


if __name__ == "__main__":
    main()
