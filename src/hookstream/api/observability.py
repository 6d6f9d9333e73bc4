"""What the API tells operators about itself: /metrics, /healthz, /readyz.

Request metrics are labelled by route template (`/v1/endpoints/{endpoint_id}`),
never by raw path, and by status code, so label sets stay bounded; requests
that match no route count as `unmatched`.
"""

from __future__ import annotations

import asyncio
import contextlib
import time

from aiohttp import web
from aiohttp.typedefs import Middleware
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
)
from redis.exceptions import RedisError

from hookstream.api.problems import Handler, json_response
from hookstream.api.state import CATALOG, METRICS, REDIS, REGISTRY, SHARED_METRICS

routes = web.RouteTableDef()

DURATION_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


def metrics_middleware(registry: CollectorRegistry) -> Middleware:
    """Counts and times every request into `registry`."""
    requests = Counter(
        "hookstream_http_requests", "API requests", ["route", "status"], registry=registry
    )
    duration = Histogram(
        "hookstream_http_request_duration_seconds",
        "API request time",
        ["route"],
        buckets=DURATION_BUCKETS,
        registry=registry,
    )

    @web.middleware
    async def measure(request: web.Request, handler: Handler) -> web.StreamResponse:
        started = time.perf_counter()
        status = 500
        try:
            response = await handler(request)
            status = response.status
            return response
        except web.HTTPException as exc:
            status = exc.status
            raise
        finally:
            resource = request.match_info.route.resource
            route = resource.canonical if resource is not None else "unmatched"
            requests.labels(route, str(status)).inc()
            duration.labels(route).observe(time.perf_counter() - started)

    return measure


@routes.get("/metrics")
async def metrics(request: web.Request) -> web.Response:
    """Prometheus exposition of this API process's registry, and of the worker's when
    they share the process (`hookstream dev`)."""
    registries = (request.app[METRICS], *request.app[SHARED_METRICS])
    body = b"".join(generate_latest(registry) for registry in registries)
    return web.Response(body=body, headers={"content-type": CONTENT_TYPE_LATEST})


@routes.get("/healthz")
async def healthz(_: web.Request) -> web.Response:
    """Alive: the process answers."""
    return json_response({"status": "ok"})


@routes.get("/readyz")
async def readyz(request: web.Request) -> web.Response:
    """Ready: Redis answers, and the endpoint registry and the catalog (tenants,
    event types, keys) caught up with the broker (2 s each)."""
    checks = {"redis": False, "broker": False, "config": False}
    with contextlib.suppress(RedisError, OSError, TimeoutError):
        checks["redis"] = bool(await asyncio.wait_for(request.app[REDIS].ping(), 2))
    try:
        await asyncio.wait_for(request.app[REGISTRY].sync(), 2)
        checks["broker"] = True
        await asyncio.wait_for(request.app[CATALOG].sync(), 2)
        checks["config"] = True
    except (TimeoutError, RuntimeError, OSError):
        pass
    ready = all(checks.values())
    return json_response(
        {"status": "ready" if ready else "not ready", "checks": checks},
        status=200 if ready else 503,
    )
