"""What every bench script needs: a sink on loopback, endpoints, worker processes, RSS."""

from __future__ import annotations

import os
import signal
import statistics
import subprocess
import sys
from collections.abc import Iterable
from dataclasses import replace
from pathlib import Path
from typing import Any

from aiohttp import web

from hookstream.config import Settings
from hookstream.embedded import free_port
from hookstream.engine.destinations import DEV_EGRESS
from hookstream.engine.endpoint import Endpoint, new_endpoint
from hookstream.sink import SinkRecorder, create_sink_app
from hookstream.views.registry import EndpointRegistry


async def start_sink(recorder: SinkRecorder, **options: Any) -> tuple[web.AppRunner, str]:
    """A sink (no signature checks) on a free loopback port; its runner and base URL."""
    runner = web.AppRunner(create_sink_app(None, recorder, **options), access_log=None)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    return runner, f"http://127.0.0.1:{port}"


async def register(settings: Settings, bodies: Iterable[dict[str, Any]]) -> list[Endpoint]:
    """Register endpoints (creation bodies), loopback allowed; returns them in order."""
    registry = EndpointRegistry(settings, writable=True)
    await registry.start()
    try:
        endpoints = [
            replace(new_endpoint(body, DEV_EGRESS), id=registry.new_endpoint_id())
            for body in bodies
        ]
        for endpoint in endpoints:
            await registry.put(endpoint)
        return endpoints
    finally:
        await registry.stop()


def spawn_worker(settings: Settings) -> subprocess.Popen[bytes]:
    """A `hookstream worker` process with these settings."""
    return subprocess.Popen(
        [sys.executable, "-m", "hookstream", "worker"],
        env={**os.environ, **settings.to_env()},
        stdin=subprocess.DEVNULL,
    )


def stop_worker(worker: subprocess.Popen[bytes]) -> None:
    """SIGTERM and wait (a minute at most)."""
    worker.send_signal(signal.SIGTERM)
    worker.wait(60)


def rss_kib(pid: int) -> int:
    """Resident set size of a process, in KiB, from /proc."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for {pid}")


def p50_p99(values: list[float]) -> dict[str, float | None]:
    """The median and 99th percentile of `values` in ms, to 0.1; None when empty."""
    if len(values) < 2:
        only = round(values[0], 1) if values else None
        return {"p50": only, "p99": only}
    cuts = statistics.quantiles(values, n=100)
    return {"p50": round(cuts[49], 1), "p99": round(cuts[98], 1)}
