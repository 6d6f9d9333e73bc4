"""Routes for endpoint health: read the owner's latest snapshot; re-enable an endpoint."""

from __future__ import annotations

from typing import Any

import orjson
from aiohttp import web

from hookstream.api.endpoints import find_endpoint
from hookstream.api.problems import json_response
from hookstream.api.routes import Deprecated, Operations
from hookstream.api.schemas import ENDPOINT, OBJECT
from hookstream.api.state import REDIS, REGISTRY, SETTINGS
from hookstream.engine.endpoint import Endpoint
from hookstream.redis_keys import RedisKeys

routes = Operations("endpoints")
# PATCH /v1/endpoints/{id} {"disabled": false} does the same since 2026-11-23.
ENABLE_DEPRECATED = Deprecated(
    since=1795392000,
    sunset="Sun, 23 May 2027 00:00:00 GMT",
    link="/docs#/endpoints/update_endpoint",
)


@routes.get("/v1/endpoints/{endpoint_id}/health", scope="endpoints:read", ok=(200, OBJECT))
async def endpoint_health(request: web.Request) -> web.Response:
    """Score, state, window stats, circuit, concurrency and rate limit of one endpoint.

    The worker that owns the endpoint publishes these about once a second. An
    endpoint no worker has sent to yet answers its configured limits and a
    clean bill of health (`observed_at` null).
    """
    endpoint = await find_endpoint(request)
    raw = await request.app[REDIS].get(RedisKeys(request.app[SETTINGS]).health(endpoint.id))
    body = (
        orjson.loads(raw) if raw else _unobserved(endpoint, request.app[SETTINGS].health_window_s)
    )
    if endpoint.disabled:
        body["state"] = "disabled"  # the registry is newer than any snapshot
    body["disabled"] = endpoint.disabled
    body["disabled_reason"] = endpoint.disabled_reason
    return json_response(body)


@routes.post(
    "/v1/endpoints/{endpoint_id}/enable",
    scope="endpoints:write",
    ok=(200, ENDPOINT),
    deprecated=ENABLE_DEPRECATED,
)
async def enable_endpoint(request: web.Request) -> web.Response:
    """Re-enable a disabled endpoint: its circuit closes and its auto-disable clock restarts.

    Messages dead-lettered while it was disabled stay in the DLQ; redrive them
    with POST /v1/endpoints/{id}/recover. Deprecated: PATCH the endpoint with
    `{"disabled": false}` instead.
    """
    endpoint = await find_endpoint(request)
    if endpoint.disabled:
        endpoint = endpoint.with_changes(disabled=False, disabled_reason="")
        await request.app[REGISTRY].put(endpoint)
    return json_response(endpoint.to_dict())


def _unobserved(endpoint: Endpoint, window_s: float) -> dict[str, Any]:
    return {
        "endpoint_id": endpoint.id,
        "score": 1.0,
        "state": "healthy",
        "window": {
            "seconds": window_s,
            "attempts": 0,
            "successes": 0,
            "failures": 0,
            "timeouts": 0,
            "success_ratio": None,
            "latency_ms": None,
            "baseline_latency_ms": None,
        },
        "circuit": {
            "state": "closed",
            "consecutive_failures": 0,
            "opened_at": None,
            "open_until": None,
        },
        "concurrency": {
            "limit": None,
            "maximum": endpoint.max_concurrency,
            "in_flight": 0,
            "waiting": 0,
        },
        "rate_limit": endpoint.rate_limit,
        "parked": 0,
        "last_success_at": None,
        "failing_since": None,
        "observed_at": None,
    }
