"""The control API application: `create_app(settings)`.

Routes live in one module per resource, each declared as an operation
(routes.py) from which the OpenAPI document is generated; auth and
problem+json rendering are middlewares, so every route gets both. The registry
and publisher are started in `cleanup_ctx` unless the caller passes running
ones (tests, `hookstream dev`).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

import aiohttp
from aiohttp import web
from aiohttp.abc import AbstractResolver
from aiokafka import AIOKafkaProducer
from prometheus_client import CollectorRegistry
from redis.asyncio import Redis

from hookstream.api import (
    api_keys,
    attempts,
    dashboard,
    dlq,
    endpoints,
    event_types,
    events,
    filters,
    health,
    observability,
    openapi,
    ratelimit,
    replay,
    send_test,
    sources,
    stats,
    tasks,
    tenants,
)
from hookstream.api.auth import auth_middleware
from hookstream.api.observability import metrics_middleware
from hookstream.api.problems import problem_middleware
from hookstream.api.ratelimit import add_rate_headers
from hookstream.api.redrive import RedriveTasks
from hookstream.api.replay_tasks import ReplayTasks
from hookstream.api.routes import Operation
from hookstream.api.state import (
    CATALOG,
    METRICS,
    PRODUCER,
    PUBLISHER,
    REDIS,
    REGISTRY,
    REPLAYS,
    RESOLVER,
    SENDER,
    SETTINGS,
    SHARED_METRICS,
    TASKS,
)
from hookstream.config import Settings
from hookstream.egress import build_sender
from hookstream.errors import ConfigError
from hookstream.kafka import producer_options
from hookstream.producers import EventPublisher
from hookstream.views.catalog import Catalog
from hookstream.views.registry import EndpointRegistry

# Every declared operation, in the order the OpenAPI document lists them.
OPERATIONS = (
    tenants.routes,
    endpoints.routes,
    send_test.routes,
    health.routes,
    attempts.routes,
    filters.routes,
    event_types.routes,
    sources.routes,
    events.routes,
    api_keys.routes,
    dlq.routes,
    replay.routes,
    tasks.routes,
    stats.routes,
)


def operations() -> list[Operation]:
    """Every operation of the API."""
    return [op for group in OPERATIONS for op in group.operations]


def create_app(
    settings: Settings,
    *,
    registry: EndpointRegistry | None = None,
    catalog: Catalog | None = None,
    publisher: EventPublisher | None = None,
    resolver: AbstractResolver | None = None,
    shared_metrics: tuple[CollectorRegistry, ...] = (),
) -> web.Application:
    """Build the API app. Raises ConfigError when no admin key is set.

    `resolver` replaces the system DNS resolver (tests map names to addresses);
    `shared_metrics` are registries of stages in the same process that /metrics
    serves beside the API's own (`hookstream dev` passes the worker's). A
    `registry` or `catalog` given (writable, started) is used and not stopped:
    `hookstream dev` passes its worker's, so one view of each tails its topic.
    """
    if not settings.admin_key:
        raise ConfigError(["HOOKSTREAM_ADMIN_KEY is required to run the API"])
    metrics = CollectorRegistry(auto_describe=True)  # this app's own (observability.py)
    app = web.Application(
        middlewares=[
            metrics_middleware(metrics),
            problem_middleware,
            auth_middleware(settings.admin_key),
        ],
        client_max_size=settings.api_max_body_bytes,
    )
    app[SETTINGS] = settings
    app[METRICS] = metrics
    app[SHARED_METRICS] = shared_metrics
    app[RESOLVER] = resolver or aiohttp.DefaultResolver()
    app[openapi.SPEC] = openapi.encode_spec(operations())
    for group in OPERATIONS:
        app.add_routes(group.route_defs())
    app.add_routes(openapi.routes)
    app.add_routes(observability.routes)
    app.add_routes(dashboard.routes)
    app.on_response_prepare.append(add_rate_headers)
    app.on_response_prepare.append(openapi.add_deprecation_headers)
    app.cleanup_ctx.append(_clients(settings, registry, catalog, publisher))
    return app


def _clients(
    settings: Settings,
    registry: EndpointRegistry | None,
    catalog: Catalog | None,
    publisher: EventPublisher | None,
) -> Callable[[web.Application], AsyncIterator[None]]:
    async def ctx(app: web.Application) -> AsyncIterator[None]:
        own_registry = registry is None
        own_catalog = catalog is None
        own_publisher = publisher is None
        app[REGISTRY] = registry or EndpointRegistry(settings, writable=True)
        app[PUBLISHER] = publisher or EventPublisher(settings)
        if own_registry:
            await app[REGISTRY].start()
        if own_publisher:
            await app[PUBLISHER].start()
        app[CATALOG] = catalog or Catalog(settings, writable=True)
        if own_catalog:
            await app[CATALOG].start()
        app[REDIS] = Redis.from_url(settings.redis_url)
        ratelimit.register(app, app[REDIS])
        app[PRODUCER] = AIOKafkaProducer(**producer_options(settings, client_id="api"))
        await app[PRODUCER].start()
        app[TASKS] = RedriveTasks(settings, app[REDIS], app[PRODUCER])
        app[REPLAYS] = ReplayTasks(settings, app[REDIS], app[PRODUCER], app[REGISTRY], app[CATALOG])
        await app[REPLAYS].start()
        app[SENDER], session = build_sender(settings, resolver=app[RESOLVER])
        yield
        await session.close()
        await app[TASKS].stop()
        await app[REPLAYS].stop()
        if own_catalog:
            await app[CATALOG].stop()
        await app[PRODUCER].stop()
        await app[REDIS].aclose()
        if own_publisher:
            await app[PUBLISHER].stop()
        if own_registry:
            await app[REGISTRY].stop()

    return ctx
