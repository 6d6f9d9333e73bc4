"""The worker's small HTTP side: /metrics, /healthz and /readyz on `worker_metrics_port`."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from hookstream.listening import listen

Readiness = Callable[[], Awaitable[dict[str, bool]]]


async def serve(
    host: str, port: int, registry: CollectorRegistry, readiness: Readiness
) -> web.AppRunner:
    """Start serving; the caller cleans the runner up."""

    async def metrics(_: web.Request) -> web.Response:
        return web.Response(
            body=generate_latest(registry), headers={"content-type": CONTENT_TYPE_LATEST}
        )

    async def healthz(_: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def readyz(_: web.Request) -> web.Response:
        checks = await readiness()
        ready = all(checks.values())
        return web.json_response(
            {"status": "ready" if ready else "not ready", "checks": checks},
            status=200 if ready else 503,
        )

    app = web.Application()
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    runner = web.AppRunner(app, access_log=None)
    await listen(runner, host, port, option="HOOKSTREAM_WORKER_METRICS_PORT")
    return runner
