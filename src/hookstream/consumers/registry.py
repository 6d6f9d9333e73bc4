"""The endpoint registry: every process's in-memory view of the `endpoints` topic.

Reads the compacted topic from the start, then tails it. Writes go through the
same object, which returns only once its own view has caught up to the offset
it wrote (read-your-writes).

`barrier(ts)` gives routing a causal guarantee: an endpoint whose write was
acknowledged before an event was published is visible when that event is
routed. The router calls it with the event's timestamp; when the view was last
confirmed complete before that moment, the registry asks the broker for the log
end offset and reads up to it. Concurrent callers share one such round trip.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.structs import ConsumerRecord

from hookstream.config import Settings
from hookstream.engine.clock import Clock, system_clock
from hookstream.engine.endpoint import Endpoint
from hookstream.engine.matching import EndpointIndex
from hookstream.kafka import consumer_options, producer_options
from hookstream.topics import TopicNames

log = logging.getLogger(__name__)


class RegistryUnavailable(RuntimeError):
    """The registry's tail reader died; the process cannot route or deliver safely."""


class EndpointRegistry:
    """Materialized endpoints: `index` answers reads; `put`/`delete` write through Kafka."""

    def __init__(self, settings: Settings, *, writable: bool = False, clock: Clock = system_clock):
        self.index = EndpointIndex()
        self._settings = settings
        self._tp = TopicPartition(TopicNames(settings).endpoints, 0)
        self._writable = writable
        self._clock = clock
        self._consumer: AIOKafkaConsumer | None = None
        self._producer: AIOKafkaProducer | None = None
        self._tail_task: asyncio.Task[None] | None = None
        self._position = 0
        self._advanced = asyncio.Condition()
        self._synced_at = float("-inf")
        self._sync: asyncio.Task[None] | None = None
        self._failure: BaseException | None = None

    # -- lifecycle ---------------------------------------------------------

    async def start(self) -> None:
        """Read the whole topic, then keep tailing it in the background."""
        consumer = AIOKafkaConsumer(
            **consumer_options(self._settings, client_id="registry"),
            group_id=None,
        )
        await consumer.start()
        self._consumer = consumer
        consumer.assign([self._tp])
        await consumer.seek_to_beginning(self._tp)
        self._position = await consumer.position(self._tp)
        if self._writable:
            self._producer = AIOKafkaProducer(
                **producer_options(self._settings, client_id="registry")
            )
            await self._producer.start()
        self._tail_task = asyncio.create_task(self._tail(), name="registry-tail")
        self._tail_task.add_done_callback(self._on_tail_done)
        await self.sync()
        log.info("endpoint registry loaded", extra={"endpoints": len(self.index)})

    async def stop(self) -> None:
        """Stop tailing and disconnect."""
        if self._tail_task is not None:
            self._tail_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._tail_task
        if self._producer is not None:
            await self._producer.stop()
        if self._consumer is not None:
            await self._consumer.stop()

    @property
    def failure(self) -> BaseException | None:
        """Why the tail reader died, or None while it is healthy."""
        return self._failure

    # -- reads ---------------------------------------------------------------

    def get(self, endpoint_id: str) -> Endpoint | None:
        """The endpoint with this id as this process last saw it."""
        return self.index.get(endpoint_id)

    async def sync(self) -> None:
        """Return once the view holds every write acknowledged before this call."""
        await self.barrier(self._clock())

    async def barrier(self, timestamp: float) -> None:
        """Return once the view holds every write acknowledged before `timestamp`.

        A timestamp in the future (a producer's clock ahead of ours, or set by
        hand) is treated as now: everything acknowledged before the event was
        published was acknowledged before now, and a far-future stamp must not
        stall routing.
        """
        timestamp = min(timestamp, self._clock())
        while timestamp > self._synced_at:
            await self._shared_sync()

    async def _shared_sync(self) -> None:
        # One round trip at a time, awaited by every caller that needs it; a caller
        # whose timestamp is later than its start loops in `barrier` for the next.
        if self._sync is None or self._sync.done():
            self._sync = asyncio.create_task(self._sync_once(), name="registry-sync")
        await asyncio.shield(self._sync)

    # -- writes --------------------------------------------------------------

    async def put(self, endpoint: Endpoint) -> None:
        """Write an endpoint and wait until this view shows it."""
        await self._write(endpoint.id, endpoint.to_record())

    async def delete(self, endpoint_id: str) -> None:
        """Write a tombstone and wait until this view no longer shows the endpoint."""
        await self._write(endpoint_id, None)

    async def _write(self, key: str, value: bytes | None) -> None:
        if self._producer is None:
            raise RuntimeError("registry was not started writable")
        meta = await self._producer.send_and_wait(self._tp.topic, key=key.encode(), value=value)
        await self._wait_position(meta.offset + 1)

    # -- internals -----------------------------------------------------------

    async def _sync_once(self) -> None:
        assert self._consumer is not None
        started = self._clock()
        end = (await self._consumer.end_offsets([self._tp]))[self._tp]
        await self._wait_position(end)
        self._synced_at = max(self._synced_at, started)

    async def _wait_position(self, offset: int) -> None:
        async with self._advanced:
            await self._advanced.wait_for(lambda: self._failure or self._position >= offset)
        if self._failure is not None:
            raise RegistryUnavailable("endpoint registry reader stopped") from self._failure

    async def _tail(self) -> None:
        assert self._consumer is not None
        while True:
            batch = await self._consumer.getmany(self._tp, timeout_ms=1000)
            for record in batch.get(self._tp, ()):
                self._apply(record)
            position = await self._consumer.position(self._tp)
            if position != self._position:
                async with self._advanced:
                    self._position = position
                    self._advanced.notify_all()

    def _apply(self, record: ConsumerRecord[bytes, bytes]) -> None:
        if record.key is None:
            return
        if record.value is None:
            self.index.remove(record.key.decode())
            return
        try:
            self.index.put(Endpoint.from_record(record.value))
        except (ValueError, KeyError, TypeError):
            log.error("skipping undecodable endpoint record", extra={"offset": record.offset})

    def _on_tail_done(self, task: asyncio.Task[None]) -> None:
        if task.cancelled():
            return
        self._failure = task.exception() or RuntimeError("registry tail ended")
        log.critical("endpoint registry reader died", exc_info=self._failure)

        async def wake() -> None:
            async with self._advanced:
                self._advanced.notify_all()

        asyncio.get_running_loop().create_task(wake())
