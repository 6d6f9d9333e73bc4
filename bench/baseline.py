"""The bare client the engine is compared with: aiohttp, keep-alive, uvloop, same bodies.

It POSTs prebuilt bodies to the same sink with the same concurrency and no
signing, no Kafka, no bookkeeping: what this machine allows for HTTP alone.
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import time

import aiohttp
import orjson


async def run(url: str, bodies: list[bytes], concurrency: int) -> float:
    """POST every body once; deliveries/s."""
    connector = aiohttp.TCPConnector(limit=concurrency, limit_per_host=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:
        queue = iter(enumerate(bodies))
        headers = {"content-type": "application/json"}

        async def lane() -> None:
            for i, body in queue:
                async with session.post(
                    url, data=body, headers={**headers, "webhook-id": f"base_{i}"}
                ) as response:
                    await response.read()
                    if response.status >= 300:
                        raise RuntimeError(f"baseline got {response.status}")

        started = time.perf_counter()
        await asyncio.gather(*(lane() for _ in range(concurrency)))
        return len(bodies) / (time.perf_counter() - started)


def bodies_like_the_engine(count: int, pad: int) -> list[bytes]:
    """Webhook bodies of the size the engine sends in the bench."""
    stamp = "2026-01-01T00:00:00.000Z"
    return [
        orjson.dumps({"type": "bench.e0", "timestamp": stamp, "data": {"n": n, "pad": "x" * pad}})
        for n in range(count)
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", required=True)
    parser.add_argument("--count", type=int, default=20_000)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--pad", type=int, default=200)
    args = parser.parse_args()
    import uvloop

    bodies = bodies_like_the_engine(args.count, args.pad)
    before = _cpu_seconds()
    rate = uvloop.run(run(args.url, bodies, args.concurrency))
    cpu_ms = (_cpu_seconds() - before) / args.count * 1000
    print(orjson.dumps({"deliveries_per_s": round(rate, 1), "cpu_ms_per_request": cpu_ms}).decode())


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


if __name__ == "__main__":
    main()
