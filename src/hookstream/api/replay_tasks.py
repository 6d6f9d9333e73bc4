"""Replay tasks: re-send an endpoint's past events from the log, in order.

A replay reads `events` and the sources' topics in a time window
(views/event_log.py), routes each event to the one endpoint as the router
would now (tenant, globs, channels, filter; the request's `event_types`
narrow it further), and writes a delivery record per match to `deliveries`,
with the usual message id, so a receiver that already has an event gets the
same `webhook-id` again. It sends at most `replay_rate_per_s` events a second,
or the endpoint's own `rate_limit` when lower, so live traffic keeps its share
of the workers.

Replays survive the API process that runs them. Progress (the next offset of
every partition, acknowledged by the broker first) is saved once a second, and
the running process holds `tasks:<id>:owner` with a TTL of `OWNER_TTL_S`. Every
API process looks for replays whose owner is gone every `ADOPT_EVERY_S` and
resumes them from their saved positions: the events since the last save are
sent again, with the same webhook-ids.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import Awaitable
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiokafka import AIOKafkaProducer
from redis.asyncio import Redis

from hookstream.api.background import BackgroundTasks, Cancelled
from hookstream.config import Settings
from hookstream.engine.delivery import DeliveryTask, webhook_body
from hookstream.engine.endpoint import Endpoint
from hookstream.engine.matching import EndpointIndex, compile_globs
from hookstream.engine.replay import ReplaySpec
from hookstream.engine.source import RecordMapper
from hookstream.producers.routed import RoutedNotices
from hookstream.stacks import cancel_until_done
from hookstream.topics import TopicNames
from hookstream.views.catalog import Catalog
from hookstream.views.event_log import EventLog, ReadStats
from hookstream.views.registry import EndpointRegistry

log = logging.getLogger(__name__)

OWNER_TTL_S = 15.0
ADOPT_EVERY_S = 5.0
SAVE_EVERY_S = 1.0


class ReplayTasks(BackgroundTasks):
    """Starts, runs, resumes and adopts replays."""

    def __init__(
        self,
        settings: Settings,
        redis: Redis,
        producer: AIOKafkaProducer,
        registry: EndpointRegistry,
        catalog: Catalog,
    ) -> None:
        super().__init__(settings, redis)
        self._producer = producer
        self._registry = registry
        self._catalog = catalog
        self._names = TopicNames(settings)
        self._me = f"{os.uname().nodename}:{os.getpid()}:{id(self):x}"
        self._adopter: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Begin looking for replays to adopt (at once, then every ADOPT_EVERY_S)."""
        self._adopter = asyncio.create_task(self._adopt_forever(), name="replay-adopter")

    async def stop(self) -> None:
        """Stop the replays running here; they stay `running` for the next process to resume."""
        if self._adopter is not None:
            await cancel_until_done(self._adopter)
        await super().stop()

    async def start_replay(self, endpoint: Endpoint, spec: ReplaySpec) -> str:
        """Record a new replay of `spec` and start it here; return its id."""
        task_id = self.new_id()
        await self._redis.set(self._keys.task_owner(task_id), self._me, px=_ms(OWNER_TTL_S))
        await self.save(
            task_id,
            kind="replay",
            state="running",
            count=0,
            scanned=0,
            positions="{}",
            started_at=time.time(),
            tenant=endpoint.tenant,
            **spec.fields(),
        )
        await self._redis.sadd(self._keys.replays, task_id)
        self.launch(task_id, self._run(task_id, spec, {}, 0))
        return task_id

    async def adopt(self) -> list[str]:
        """Resume every unfinished replay whose owner is gone; return their ids."""
        adopted = []
        for raw in await self._redis.smembers(self._keys.replays):
            task_id = raw.decode() if isinstance(raw, bytes) else str(raw)
            if self.running_here(task_id):
                continue
            fields = await self._fields(task_id)
            if fields.get("state") != "running":
                await self._redis.srem(self._keys.replays, task_id)
                continue
            owner = self._keys.task_owner(task_id)
            if not await self._redis.set(owner, self._me, px=_ms(OWNER_TTL_S), nx=True):
                continue  # its owner is alive
            positions = {k: int(v) for k, v in orjson.loads(fields.get("positions", "{}")).items()}
            log.warning("resuming a replay whose process is gone", extra={"task_id": task_id})
            spec = ReplaySpec.from_fields(fields)
            self.launch(task_id, self._run(task_id, spec, positions, int(fields.get("count", 0))))
            adopted.append(task_id)
        return adopted

    async def _adopt_forever(self) -> None:
        while True:
            try:
                await self.adopt()
            except Exception:
                log.exception("looking for replays to adopt failed")
            await asyncio.sleep(ADOPT_EVERY_S)

    async def _fields(self, task_id: str) -> dict[str, str]:
        raw: dict[Any, Any] = await self._redis.hgetall(self._keys.task(task_id))
        return {k.decode(): v.decode() for k, v in raw.items()}

    async def _run(
        self, task_id: str, spec: ReplaySpec, positions: dict[str, int], count: int
    ) -> None:
        stats = ReadStats()
        sent = Progress(count, dict(positions), RoutedNotices(self._producer, self._names.attempts))
        try:
            await self._replay(task_id, spec, stats, sent)
        except asyncio.CancelledError:  # this process stops: the replay goes on elsewhere
            with contextlib.suppress(Exception):
                await self._checkpoint(task_id, stats, sent)
                await self._redis.delete(self._keys.task_owner(task_id))
            raise
        except Cancelled:
            await self._finish(task_id, stats, sent, state="cancelled")
        except Exception as exc:
            log.exception("replay failed", extra={"task_id": task_id})
            await self._finish(task_id, stats, sent, state="failed", error=str(exc))
        else:
            await self._finish(task_id, stats, sent, state="done")

    async def _replay(
        self, task_id: str, spec: ReplaySpec, stats: ReadStats, sent: Progress
    ) -> None:
        endpoint = await self._endpoint(spec.endpoint_id)
        index = EndpointIndex()
        index.put(endpoint)
        narrow = compile_globs(spec.event_types) if spec.event_types else None
        rate = min(self._settings.replay_rate_per_s, endpoint.rate_limit or float("inf"))
        mappers = {s.topic: RecordMapper(s) for s in self._catalog.sources.values()}
        reader = EventLog(self._settings, self._names.events, mappers)
        pace = Pace(rate)
        saved_at = time.monotonic()
        async with contextlib.aclosing(
            reader.read(spec.since_ms, spec.until_ms, stats, sent.positions)
        ) as events:
            async for logged in events:
                event = logged.event
                if index.route(event) and (narrow is None or narrow.match(event.type)):
                    task = DeliveryTask.for_event(
                        event, endpoint.id, webhook_body(event), event.occurred_at_ms
                    )
                    ack = await self._producer.send(
                        self._names.deliveries,
                        value=task.body,
                        key=endpoint.id.encode(),
                        headers=task.headers(),
                    )
                    sent.pending.append(ack)
                    sent.notices.add(task)
                    sent.count += 1
                    await pace.step()
                sent.next_positions[logged.where] = logged.offset + 1
                if time.monotonic() - saved_at >= SAVE_EVERY_S:
                    saved_at = time.monotonic()
                    await self._checkpoint(task_id, stats, sent)
                    await self.raise_if_cancelled(task_id)
                    endpoint = await self._endpoint(spec.endpoint_id)  # deleted since: fails
        await self._checkpoint(task_id, stats, sent)

    async def _endpoint(self, endpoint_id: str) -> Endpoint:
        endpoint = self._registry.index.get(endpoint_id)
        if endpoint is None:
            raise LookupError(f"endpoint {endpoint_id} was deleted")
        return endpoint

    async def _checkpoint(self, task_id: str, stats: ReadStats, sent: Progress) -> None:
        """Once the broker has every record sent so far, save where the replay is."""
        sent.pending.extend(await sent.notices.send(time.time()))
        await asyncio.gather(*sent.pending)
        sent.pending.clear()
        sent.positions.update(sent.next_positions)
        await self.save(
            task_id,
            count=sent.count,
            scanned=stats.scanned,
            positions=orjson.dumps(sent.positions).decode(),
        )
        await self._redis.set(self._keys.task_owner(task_id), self._me, px=_ms(OWNER_TTL_S))

    async def _finish(self, task_id: str, stats: ReadStats, sent: Progress, **fields: Any) -> None:
        with contextlib.suppress(Exception):
            await asyncio.gather(*sent.pending)
        await self.save(
            task_id, count=sent.count, scanned=stats.scanned, finished_at=time.time(), **fields
        )
        await self._redis.srem(self._keys.replays, task_id)
        await self._redis.delete(self._keys.task_owner(task_id))


@dataclass(slots=True)
class Progress:
    """What a replay has sent: its count, the acks still awaited, and positions."""

    count: int
    positions: dict[str, int]  # acknowledged: where a resumed replay starts
    notices: RoutedNotices  # for the attempt index: these messages are pending
    pending: list[Awaitable[Any]] = field(default_factory=list)
    next_positions: dict[str, int] = field(default_factory=dict)  # read, not yet acknowledged


class Pace:
    """At most `rate` steps a second, sleeping in slices of at least 10 ms."""

    def __init__(self, rate: float) -> None:
        self._interval = 0.0 if rate == float("inf") else 1.0 / rate
        self._due = time.monotonic()

    async def step(self) -> None:
        """Count one step; sleep when ahead of the rate."""
        if not self._interval:
            return
        self._due = max(self._due, time.monotonic() - 1.0) + self._interval
        ahead = self._due - time.monotonic()
        if ahead >= 0.01:
            await asyncio.sleep(ahead)


def _ms(seconds: float) -> int:
    return int(seconds * 1000)
