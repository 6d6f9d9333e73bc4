"""The control API application: `create_app(settings)`.

Routes live in one module per resource; auth and problem+json rendering are
middlewares, so every route gets both. The registry and publisher are started
in `cleanup_ctx` unless the caller passes running ones (tests, `hookstream dev`).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

from aiohttp import web
from aiokafka import AIOKafkaProducer
from prometheus_client import CollectorRegistry
from redis.asyncio import Redis

from hookstream.api import (
    attempts,
    dashboard,
    dlq,
    endpoints,
    events,
    health,
    observability,
    stats,
    tasks,
)
from hookstream.api.auth import auth_middleware
from hookstream.api.observability import metrics_middleware
from hookstream.api.problems import problem_middleware
from hookstream.api.redrive import RedriveTasks
from hookstream.api.state import METRICS, PRODUCER, PUBLISHER, REDIS, REGISTRY, SETTINGS, TASKS
from hookstream.config import Settings
from hookstream.consumers.registry import EndpointRegistry
from hookstream.errors import ConfigError
from hookstream.kafka import producer_options
from hookstream.producers import EventPublisher


def create_app(
    settings: Settings,
    *,
    registry: EndpointRegistry | None = None,
    publisher: EventPublisher | None = None,
) -> web.Application:
    """Build the API app. Raises ConfigError when no admin key is set."""
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
    app.add_routes(endpoints.routes)
    app.add_routes(events.routes)
    app.add_routes(attempts.routes)
    app.add_routes(dlq.routes)
    app.add_routes(tasks.routes)
    app.add_routes(health.routes)
    app.add_routes(observability.routes)
    app.add_routes(stats.routes)
    app.add_routes(dashboard.routes)
    app.cleanup_ctx.append(_clients(settings, registry, publisher))
    return app


def _clients(
    settings: Settings, registry: EndpointRegistry | None, publisher: EventPublisher | None
) -> Callable[[web.Application], AsyncIterator[None]]:
    async def ctx(app: web.Application) -> AsyncIterator[None]:
        own_registry = registry is None
        own_publisher = publisher is None
        app[REGISTRY] = registry or EndpointRegistry(settings, writable=True)
        app[PUBLISHER] = publisher or EventPublisher(settings)
        if own_registry:
            await app[REGISTRY].start()
        if own_publisher:
            await app[PUBLISHER].start()
        app[REDIS] = Redis.from_url(settings.redis_url)
        app[PRODUCER] = AIOKafkaProducer(**producer_options(settings, client_id="api"))
        await app[PRODUCER].start()
        app[TASKS] = RedriveTasks(settings, app[REDIS], app[PRODUCER])
        yield
        await app[TASKS].stop()
        await app[PRODUCER].stop()
        await app[REDIS].aclose()
        if own_publisher:
            await app[PUBLISHER].stop()
        if own_registry:
            await app[REGISTRY].stop()

    return ctx
