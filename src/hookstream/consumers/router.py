"""The router: an aiokafka batch loop from `events`, `ops` and the sources'
topics to `deliveries`.

It reads like what it does: fetch a batch → wait for the registry to hold
every endpoint write made before the batch's events → route each event
(tenant, globs, channels, filter) after checking it against its event type's
schema (the catalog's, as the API checks it) → produce one delivery record per matching
endpoint, keyed by endpoint id, with a deterministic message id, and one
routed notice for the attempt index (producers/routed.py) → once the
broker has acknowledged every record of the batch, commit the batch's
offsets. A crash before the commit routes the batch again, with the same
message ids. A record that is not an event goes to the DLQ with its reason
through the worker's durable `DeadLetters`, and its offset moves on.

Sources (engine/source.py) are topics in their users' own shape, read from
the catalog: the loop subscribes to a new source's topic on its next turn and
drops a deleted one's, and a source partition without a commit starts where
the source says (the topic's end when it was created, or its first offset).

One loop, one task: records of a partition are routed in order, so a
subject's events keep their order in `deliveries` (same key, same partition).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable
from typing import TypeAlias

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import CommitFailedError, IllegalStateError, KafkaError
from aiokafka.structs import ConsumerRecord, RecordMetadata

from hookstream.config import Settings
from hookstream.consumers.dead_letters import DeadLetters
from hookstream.consumers.metrics import WorkerMetrics
from hookstream.engine.delivery import DeliveryTask, webhook_body
from hookstream.engine.event import Event
from hookstream.engine.source import RecordMapper
from hookstream.errors import FieldProblem, InvalidInput
from hookstream.kafka import (
    FetchWait,
    KeyedPartitioner,
    LogEndGuard,
    consumer_options,
    past_end,
    stop_client,
)
from hookstream.producers.batches import PartitionBatches
from hookstream.producers.durable import retriable
from hookstream.producers.routed import RoutedNotices
from hookstream.topics import TopicNames
from hookstream.views.catalog import Catalog
from hookstream.views.event_log import event_of
from hookstream.views.registry import EndpointRegistry

log = logging.getLogger(__name__)

Record: TypeAlias = ConsumerRecord[bytes, bytes]


class Router:
    """Routes events to delivery records in the caller's event loop: `start()` / `stop()`."""

    def __init__(
        self,
        settings: Settings,
        registry: EndpointRegistry,
        catalog: Catalog,
        metrics: WorkerMetrics | None = None,
    ) -> None:
        self._settings = settings
        self._registry = registry
        self._catalog = catalog
        self._metrics = metrics
        self._names = TopicNames(settings)
        self._guard = LogEndGuard("router", settings)
        self._consumer: AIOKafkaConsumer | None = None
        self._producer: AIOKafkaProducer | None = None
        self._dead_letters: DeadLetters | None = None
        self._notices: RoutedNotices | None = None
        self._partitioner = KeyedPartitioner()  # the delivery records' (each key's hash kept)
        self._task: asyncio.Task[None] | None = None
        self._batch: asyncio.Task[None] | None = None  # the batch in hand
        # Acknowledged offsets not yet committed, and the task committing them: the next
        # batch is fetched while the last one's commit is on its way.
        self._acked: dict[TopicPartition, int] = {}
        self._committer: asyncio.Task[None] | None = None
        self._mappers: dict[str, RecordMapper] = {}  # source topic → its mapper
        self._sources_version = -1  # the catalog's, when the mappers were built
        self.poison = 0

    async def start(self, producer: AIOKafkaProducer, dead_letters: DeadLetters) -> None:
        """Join the router group and start routing; returns once partitions are assigned.

        Delivery records go out through `producer`, poison records through
        `dead_letters` (the worker's, so every DLQ write is the same durable one).
        """
        self._producer = producer
        self._dead_letters = dead_letters
        self._notices = RoutedNotices(producer, self._names.attempts)
        self._consumer = AIOKafkaConsumer(
            **consumer_options(self._settings, client_id="router"),
            group_id=self._names.router_group,
        )
        self._read_sources()
        self._consumer.subscribe(self._topics(), listener=_FinishBeforeRevoke(self))
        await self._consumer.start()
        while not self._consumer.assignment():
            await self._consumer.getmany(timeout_ms=100, max_records=1)  # join, no records yet
            for tp in self._consumer.assignment():
                # Nothing fetched was handed over (max 1 record could have been): read
                # every assigned partition again from its committed position.
                await self._place(tp, committed_only=False)
        self._task = asyncio.create_task(self._run(), name="router")

    async def stop(self) -> None:
        """Finish the batch in hand, commit it, leave the group."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        await self.finish_batch()
        if self._consumer is not None:
            await stop_client(self._consumer)
            self._consumer = None

    async def finish_batch(self) -> None:
        """Wait until the batch in hand is acknowledged and committed (or has failed)."""
        if self._batch is not None and not self._batch.done():
            with contextlib.suppress(Exception):
                await asyncio.shield(self._batch)
        if self._committer is not None and not self._committer.done():
            with contextlib.suppress(Exception):
                await asyncio.shield(self._committer)

    def assignment(self) -> set[TopicPartition]:
        """The partitions this router reads now."""
        return set() if self._consumer is None else set(self._consumer.assignment())

    @property
    def failure(self) -> BaseException | None:
        """The error that ended the routing loop, if it died."""
        if self._task is None or not self._task.done() or self._task.cancelled():
            return None
        return self._task.exception()

    # -- fetch → route → produce → commit -------------------------------------

    async def _run(self) -> None:
        consumer = self._consumer
        assert consumer is not None
        guard = self._guard
        wait = FetchWait(consumer, self._settings)
        while True:
            if self._catalog.sources_version != self._sources_version:
                self._follow_sources(consumer)
            for tp in await guard.check(consumer):
                self._acked.pop(tp, None)  # read from its start again: nothing to commit
            batch = await consumer.getmany(
                timeout_ms=1000, max_records=self._settings.router_batch_records
            )
            guard.saw(batch)
            wait.saw(batch)
            if batch:
                # Its own task, shielded: a stop or a rebalance lets it finish.
                self._batch = asyncio.create_task(self._route_batch(batch), name="router-batch")
                await asyncio.shield(self._batch)

    async def _route_batch(self, batch: dict[TopicPartition, list[Record]]) -> None:
        started, clock = time.time(), time.monotonic()
        newest = max(r.timestamp for records in batch.values() for r in records)
        # Every endpoint and event-type write acknowledged before the newest event is
        # in the views.
        await asyncio.gather(
            self._registry.barrier(newest / 1000), self._catalog.barrier(newest / 1000)
        )
        barrier_done = time.monotonic()
        producer = self._producer
        assert producer is not None
        deliveries = PartitionBatches(producer, self._names.deliveries, self._partitioner)
        await deliveries.start()
        events = 0
        for records in batch.values():
            for n, record in enumerate(records, 1):
                if await self._route(record, deliveries):
                    events += 1
                if n % YIELD_EVERY == 0:
                    # The dispatcher shares this event loop: a whole batch routed in
                    # one go would hold its timers (rate pacing, tier resumes) back.
                    await asyncio.sleep(0)
        assert self._notices is not None
        routed = time.monotonic()
        acks = await deliveries.send()
        acks.extend(await self._notices.send(time.time()))
        try:
            await _acknowledged(acks)
        except KafkaError as exc:
            if not retriable(exc):
                raise
            # Not committed: read the batch again and route it again (same message ids).
            log.warning(
                "delivery records not acknowledged; routing the batch again",
                extra={"error": type(exc).__name__},
            )
            await asyncio.sleep(RETRY_AFTER_S)
            consumer = self._consumer
            assert consumer is not None
            for tp, records in batch.items():
                consumer.seek(tp, records[0].offset)
            return
        if self._metrics is not None:
            self._metrics.events.inc(events)
            self._metrics.routed_batch(
                started - newest / 1000,
                barrier_done - clock,
                routed - barrier_done,
                time.monotonic() - routed,
            )
        self._acked.update({tp: records[-1].offset + 1 for tp, records in batch.items()})
        if self._committer is None or self._committer.done():
            self._committer = asyncio.create_task(self._commit_acked(), name="router-commit")

    async def _commit_acked(self) -> None:
        while self._acked:
            offsets, self._acked = self._acked, {}
            await self._commit(offsets)

    async def _route(self, record: Record, deliveries: PartitionBatches) -> bool:
        """Add the delivery records of one event to `deliveries`; False for a record
        that is not an event (dead-lettered)."""
        operational = record.topic == self._names.ops
        mapper = self._mappers.get(record.topic)
        if mapper is None and not operational and record.topic != self._names.events:
            return True  # a source deleted since this batch was fetched: no longer routed
        try:
            event = self._decode(record, mapper)
            event_type = None if operational else self._catalog.event_types.get(event.type)
            if event_type is not None and (problems := event_type.data_problems(event.data)):
                raise InvalidInput([*problems, FieldProblem("type", f"schema of {event.type}")])
        except InvalidInput as exc:
            self.poison += 1
            assert self._dead_letters is not None
            await self._dead_letters.write_record(
                record.key,
                record.value,
                list(record.headers or ()),
                reason=str(exc),
                source=(
                    f"source:{mapper.source.id}" if mapper else "ops" if operational else "events"
                ),
                position=(record.topic, record.partition, record.offset),
            )
            return False
        endpoints = self._registry.index.route(event, operational=operational)
        if not endpoints:
            return True
        body = webhook_body(event)
        occurred_at_ms = event.occurred_at_ms
        notices = self._notices
        assert notices is not None
        for endpoint in endpoints:
            task = DeliveryTask.for_event(event, endpoint.id, body, occurred_at_ms)
            notices.add(task)
            await deliveries.add(endpoint.id.encode(), body, task.headers())
        return True

    def _decode(self, record: Record, mapper: RecordMapper | None) -> Event:
        return event_of(record, mapper, self._settings.max_event_bytes)

    # -- sources ------------------------------------------------------------------

    def _topics(self) -> list[str]:
        return [self._names.events, self._names.ops, *sorted(self._mappers)]

    def _read_sources(self) -> None:
        self._sources_version = self._catalog.sources_version
        self._mappers = {s.topic: RecordMapper(s) for s in self._catalog.sources.values()}

    def _follow_sources(self, consumer: AIOKafkaConsumer) -> None:
        """Subscribe to the sources' topics as the catalog has them now."""
        before = self._topics()
        self._read_sources()
        if self._topics() != before:
            log.info("router follows sources", extra={"topics": self._topics()})
            consumer.subscribe(self._topics(), listener=_FinishBeforeRevoke(self))

    async def _place(self, tp: TopicPartition, *, committed_only: bool) -> None:
        """Position a newly assigned partition: at its commit, and a source partition
        never before where its source starts. `committed_only`: leave a partition
        whose commit aiokafka will use anyway."""
        consumer = self._consumer
        assert consumer is not None
        mapper = self._mappers.get(tp.topic)
        if mapper is None and committed_only:
            return
        committed = await consumer.committed(tp)
        start = 0 if mapper is None else mapper.source.start_offsets.get(tp.partition, 0)
        if committed is not None and committed >= start:
            if not committed_only:
                consumer.seek(tp, committed)
        elif start > 0:
            consumer.seek(tp, start)
        elif not committed_only:
            await consumer.seek_to_beginning(tp)
        # else: no commit and no start offset, so aiokafka's own reset (earliest) places
        # it. A seek_to_beginning from the rebalance listener was seen to move a source
        # partition back after its first records were routed: every record twice.

    async def _commit(self, offsets: dict[TopicPartition, int]) -> None:
        consumer = self._consumer
        assert consumer is not None
        offsets = {tp: o for tp, o in offsets.items() if not past_end(consumer, tp, o)}
        if not offsets:
            return
        try:
            await consumer.commit(offsets)
            self._guard.committed(offsets)
        except (CommitFailedError, IllegalStateError) as exc:
            # A rebalance took the partitions: the new owner routes from the last commit
            # again, with the same message ids (at least once).
            log.warning("router commit skipped", extra={"error": type(exc).__name__})
        except KafkaError as exc:
            log.warning("router commit failed; next batch commits", extra={"error": str(exc)})


async def _acknowledged(acks: list[Awaitable[RecordMetadata]]) -> None:
    """Wait for every acknowledgement of a batch, then raise the first failure, if any.

    They settle together, a produce request's worth at a time, so awaiting them in
    turn costs one check each for most; `asyncio.gather` added a callback and a
    result slot per record, 2% of a steady worker (decision 032)."""
    failure: KafkaError | None = None
    for ack in acks:
        try:
            await ack
        except KafkaError as exc:
            failure = failure or exc
    if failure is not None:
        raise failure


YIELD_EVERY = 100  # records routed between turns of the event loop
RETRY_AFTER_S = 1.0  # before routing a batch again whose records were not acknowledged


class _FinishBeforeRevoke(ConsumerRebalanceListener):  # type: ignore[misc]
    """Partitions are handed over only after the batch in hand is acknowledged and
    committed, so the next owner starts where this one stopped."""

    def __init__(self, router: Router) -> None:
        self._router = router

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        await self._router.finish_batch()

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        router = self._router
        consumer = router._consumer
        assert consumer is not None
        await router._guard.assigned(consumer, set(assigned))
        for tp in assigned:
            await router._place(tp, committed_only=True)
