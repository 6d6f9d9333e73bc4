"""A worker process's stages together: registry, router and dispatcher.

`hookstream worker` runs one per core; all workers of a deployment share the
router and dispatcher consumer groups, so partitions spread across them.
"""

from __future__ import annotations

import asyncio
import logging
import time

from aiohttp import web
from aiokafka import AIOKafkaProducer
from prometheus_client import CollectorRegistry
from redis.asyncio import Redis
from redis.exceptions import RedisError

from hookstream.config import Settings
from hookstream.consumers.attempt_index import AttemptIndex
from hookstream.consumers.attempts import AttemptLog
from hookstream.consumers.courier import Courier
from hookstream.consumers.dead_letter_index import DeadLetterIndexer
from hookstream.consumers.dead_letters import DeadLetters
from hookstream.consumers.disabling import EndpointDisabler
from hookstream.consumers.dispatcher import Dispatcher
from hookstream.consumers.gates import EndpointGates
from hookstream.consumers.health import HealthBook
from hookstream.consumers.health_metrics import HealthCollector
from hookstream.consumers.lag import LagMonitor
from hookstream.consumers.loop_delay import LoopDelay
from hookstream.consumers.metrics import RollupFlusher, WorkerMetrics
from hookstream.consumers.ops_events import OpsEvents
from hookstream.consumers.retry_tiers import RetryTiers
from hookstream.consumers.router import Router
from hookstream.consumers.sequencer import Sequencer
from hookstream.consumers.worker_http import serve
from hookstream.egress import ConnectionPool, build_sender
from hookstream.kafka import producer_options
from hookstream.redis_keys import RedisKeys
from hookstream.topics import TopicNames
from hookstream.views.catalog import Catalog
from hookstream.views.registry import EndpointRegistry

log = logging.getLogger(__name__)


class Worker:
    """Starts and stops the delivery side of hookstream in the running event loop."""

    def __init__(self, settings: Settings, *, writable_catalog: bool = False) -> None:
        """`writable_catalog`: the API in the same process writes through this
        worker's catalog (`hookstream dev`)."""
        self.settings = settings
        # Writable: a 410 answer disables its endpoint.
        self.registry = EndpointRegistry(settings, writable=True)
        # This process's own metrics registry: never the global default (see metrics.py).
        self.metrics_registry = CollectorRegistry(auto_describe=True)
        self.metrics = WorkerMetrics(self.metrics_registry)
        self.lag: LagMonitor | None = None
        # Event types, for the router's schema check on every event.
        self.catalog = Catalog(settings, writable=writable_catalog)
        self.router = Router(settings, self.registry, self.catalog, self.metrics)
        self._session: ConnectionPool | None = None
        self._producer: AIOKafkaProducer | None = None
        self._attempt_log: AttemptLog | None = None
        self.dispatcher: Dispatcher | None = None
        self._redis: Redis | None = None
        self.attempt_index: AttemptIndex | None = None
        self.dlq_index: DeadLetterIndexer | None = None
        self.retry_tiers: RetryTiers | None = None
        self.dead_letters: DeadLetters | None = None
        self.loop_delay = LoopDelay(self.metrics_registry)
        self.gates = EndpointGates(settings.gate_settings, loop_delay=self.loop_delay)
        self.courier: Courier | None = None
        self.sequencer: Sequencer | None = None
        self.health: HealthBook | None = None
        self.ops: OpsEvents | None = None
        self._http: web.AppRunner | None = None
        self._rollup: RollupFlusher | None = None

    async def start(self) -> None:
        """Load the registry, then join the router and dispatcher groups together."""
        if self.settings.dev_mode:
            log.warning("dev mode: loopback and private destinations are allowed")
        await self.registry.start()
        await self.catalog.start()
        sender, self._session = build_sender(self.settings)
        names = TopicNames(self.settings)
        self._producer = AIOKafkaProducer(**producer_options(self.settings, client_id="worker"))
        await self._producer.start()
        # Letters are kept whole up to what a delivery record may be, plus its history.
        self.dead_letters = DeadLetters(
            self._producer, names.dlq, max_value_bytes=self.settings.max_event_bytes + 128 * 1024
        )
        self.ops = OpsEvents(self._producer, names.ops)
        self.retry_tiers = RetryTiers(names.retry_tiers, self._producer)
        self._redis = Redis.from_url(self.settings.redis_url)
        self.health = HealthBook(self.settings, self.gates, self._producer, self._redis)
        await self.health.start()
        self.sequencer = Sequencer(self.settings, self._producer, self.retry_tiers)
        self._attempt_log = AttemptLog(
            self._producer,
            names.attempts,
            linger_s=self.settings.attempt_linger_ms / 1000,
            on_lost=self.metrics.attempt_batch_lost,
        )
        self.courier = Courier(
            self.settings,
            self.registry,
            sender,
            self.gates,
            tiers=self.retry_tiers,
            dead_letters=self.dead_letters,
            disabler=EndpointDisabler(self.registry, self.ops),
            ops=self.ops,
            attempt_log=self._attempt_log,
            metrics=self.metrics,
            sequencer=self.sequencer,
        )
        self.dispatcher = Dispatcher(self.settings, self.courier)
        self.metrics_registry.register(
            HealthCollector(self.gates, self.settings.metrics_endpoint_series)
        )
        self._rollup = RollupFlusher(self.metrics, self._redis, RedisKeys(self.settings))
        await self._rollup.start()
        self.lag = LagMonitor(self.settings, self.metrics_registry, redis=self._redis)
        await self.lag.start()
        self.loop_delay.start()
        self.attempt_index = AttemptIndex(self.settings, self._redis)
        self.dlq_index = DeadLetterIndexer(self.settings, self._redis)
        if self.settings.worker_metrics_port:
            self._http = await serve(
                self.settings.api_host,
                self.settings.worker_metrics_port,
                self.metrics_registry,
                self.readiness,
            )
        await asyncio.gather(
            self.router.start(self._producer, self.dead_letters),
            self.dispatcher.start(),
            self.attempt_index.start(),
            self.dlq_index.start(),
        )
        log.info("worker started", extra={"topic_prefix": self.settings.topic_prefix})

    async def stop(self) -> None:
        """Stop routing, finish in-flight deliveries, commit, disconnect.

        Safe after a partial or cancelled start.
        """
        started = time.monotonic()
        await self.router.stop()
        router_s = time.monotonic() - started
        if self.dispatcher is not None:
            await self.dispatcher.stop()
        if self._attempt_log is not None:
            await self._attempt_log.stop()  # the last attempts' records, before the producer
        for index in (self.attempt_index, self.dlq_index):
            if index is not None:
                await index.stop()
        if self.health is not None:
            await self.health.stop()
        if self._http is not None:
            await self._http.cleanup()
        if self.lag is not None:
            await self.lag.stop()
        await self.loop_delay.stop()
        if self._rollup is not None:
            await self._rollup.stop()
        if self._redis is not None:
            await self._redis.aclose()
        if self._producer is not None:
            await self._producer.stop()
        if self._session is not None:
            await self._session.close()
        await self.catalog.stop()
        await self.registry.stop()
        log.info(
            "worker stopped",
            extra={"router_s": round(router_s, 2), "total_s": round(time.monotonic() - started, 2)},
        )

    def failure(self) -> BaseException | None:
        """Why a stage died, or None while all are healthy."""
        if self.registry.failure is not None:
            return self.registry.failure
        if self.catalog.failure is not None:
            return self.catalog.failure
        if self.dispatcher is not None and self.dispatcher.failure is not None:
            return self.dispatcher.failure
        for index in (self.attempt_index, self.dlq_index):
            if index is not None and index.failure is not None:
                return index.failure
        if self.router.failure is not None:
            return self.router.failure
        return None

    async def readiness(self) -> dict[str, bool]:
        """What /readyz checks: every stage alive, the broker answering, Redis answering."""
        redis_ok = False
        if self._redis is not None:
            try:
                redis_ok = bool(await asyncio.wait_for(self._redis.ping(), 2))
            except (RedisError, OSError, TimeoutError):
                redis_ok = False
        refreshed = self.lag.refreshed_at if self.lag is not None else None
        return {
            "stages": self.failure() is None and self.dispatcher is not None,
            # The lag monitor talks to the broker every few seconds.
            "broker": refreshed is not None and time.monotonic() - refreshed < 20,
            "redis": redis_ok,
        }

    async def run_until_failure(self) -> BaseException:
        """Wait until a stage dies; return why (the caller exits non-zero)."""
        # Half a second of delay in noticing a dead stage is fine; the stages stay
        # free of callbacks into the worker.
        while (failure := self.failure()) is None:  # noqa: ASYNC110
            await asyncio.sleep(0.5)
        return failure
