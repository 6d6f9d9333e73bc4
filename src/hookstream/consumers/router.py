"""The router: a faust-streaming agent from `events` to `deliveries`.

For each event, the endpoints of its tenant whose globs match get one delivery
record each, keyed by endpoint id, with a deterministic message id. The agent
waits for the broker to acknowledge every delivery record of an event before it
takes the next, so an event's offset is committed only once its deliveries are
durable; `router_concurrency` agents run side by side, and faust commits the
lowest offset not yet acknowledged per partition.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from hookstream.config import Settings
from hookstream.consumers.dead_letters import DeadLetters
from hookstream.consumers.metrics import WorkerMetrics
from hookstream.consumers.router_app import router_app
from hookstream.engine.delivery import DeliveryTask, webhook_body
from hookstream.engine.event import decode_event
from hookstream.errors import FieldProblem, InvalidInput
from hookstream.topics import TopicNames
from hookstream.views.catalog import Catalog
from hookstream.views.registry import EndpointRegistry

log = logging.getLogger(__name__)


class Router:
    """Runs the routing agent inside the caller's event loop: `start()` / `stop()`."""

    def __init__(
        self,
        settings: Settings,
        registry: EndpointRegistry,
        catalog: Catalog,
        metrics: WorkerMetrics | None = None,
    ) -> None:
        self._registry = registry
        self._catalog = catalog
        self._metrics = metrics
        self._max_event_bytes = settings.max_event_bytes
        names = TopicNames(settings)
        self.poison = 0
        self._dead_letters: DeadLetters | None = None
        self.app = router_app(
            names.router_group,
            fetch_max_wait_ms=settings.fetch_max_wait_ms,
            broker=";".join(f"kafka://{server}" for server in settings.bootstrap.split(",")),
            store="memory://",
            web_enabled=False,
            topic_disable_leader=True,
            topic_allow_declare=False,
            producer_acks=-1,
            producer_linger=settings.producer_linger_ms / 1000,
            broker_session_timeout=settings.session_timeout_ms / 1000,
            broker_heartbeat_interval=settings.heartbeat_interval_ms / 1000,
            broker_request_timeout=max(90.0, settings.session_timeout_ms / 1000 + 10),
            consumer_auto_offset_reset="earliest",
            broker_commit_interval=settings.commit_interval_ms / 1000,
        )
        raw: dict[str, Any] = {"key_serializer": "raw", "value_serializer": "raw"}
        self._events = self.app.topic(names.events, **raw)
        self._deliveries = self.app.topic(names.deliveries, **raw)
        self.app.agent(self._events, name="route", concurrency=settings.router_concurrency)(
            self._agent(operational=False)
        )
        # hookstream's own events (consumers/ops_events.py) go to operational endpoints only.
        self._ops = self.app.topic(names.ops, **raw)
        self.app.agent(self._ops, name="route-ops", concurrency=4)(self._agent(operational=True))

    async def start(self, dead_letters: DeadLetters) -> None:
        """Join the router group; returns once partitions are assigned. Poison records
        go through `dead_letters`, the worker's durable DLQ writer."""
        self._dead_letters = dead_letters
        await self.app.start()

    async def stop(self) -> None:
        """Finish the events in hand, commit, leave the group."""
        await self.app.stop()

    def _agent(self, *, operational: bool) -> Callable[[Any], Awaitable[None]]:
        async def agent(stream: Any) -> None:
            async for record in stream.events():
                message = record.message
                await self.route(
                    message.key,
                    message.value,
                    message.timestamp,
                    operational=operational,
                    position=(message.topic, message.partition, message.offset),
                )

        return agent

    async def route(
        self,
        key: bytes | None,
        value: bytes | None,
        timestamp: float,
        *,
        operational: bool = False,
        position: tuple[str, int, int] | None = None,
    ) -> None:
        """Route one `events` (or `ops`) record; a poison record goes to the DLQ with its reason."""
        try:
            event = decode_event(value, max_bytes=self._max_event_bytes)
            # The event type's schema, as the API checks it (decision 017: every path).
            event_type = None if operational else self._catalog.event_types.get(event.type)
            if event_type is not None and (problems := event_type.data_problems(event.data)):
                raise InvalidInput([*problems, FieldProblem("type", f"schema of {event.type}")])
        except InvalidInput as exc:
            self.poison += 1
            assert self._dead_letters is not None, "start() first"
            await self._dead_letters.write_record(
                key,
                value,
                [],
                reason=str(exc),
                source="ops" if operational else "events",
                position=position,
            )
            return
        if self._metrics is not None:
            self._metrics.events.inc()
        await asyncio.gather(self._registry.barrier(timestamp), self._catalog.barrier(timestamp))
        endpoints = self._registry.index.route(event, operational=operational)
        if not endpoints:
            return
        body = webhook_body(event)
        occurred_at_ms = event.occurred_at_ms
        acks = []
        for endpoint in endpoints:
            task = DeliveryTask.for_event(event, endpoint.id, body, occurred_at_ms)
            acks.append(
                await self._deliveries.send(
                    key=endpoint.id.encode(), value=body, headers=task.headers()
                )
            )
        await asyncio.gather(*acks)
