"""A process's in-memory view of a compacted, one-partition config topic.

Reads the topic from the start, then tails it. Writes go through the same
object, which returns only once its own view has caught up to the offset it
wrote (read-your-writes). Subclasses say how a record changes the view
(`apply`): endpoints (registry.py) and the catalog of tenants, event types and
API keys (catalog.py).

`barrier(ts)` gives a causal guarantee: a write acknowledged before `ts` is
visible after the call. When the view was last confirmed complete before that
moment, it asks the broker for the log end offset and reads up to it.
Concurrent callers share one such round trip. It goes through a client of its
own: a broker answers one connection's requests in order, and holds the tail's
fetch on the idle topic for `fetch_max_wait_ms`, so on the tail's connection
every barrier waited behind that fetch (docs/performance.md, "The barrier's
own connection").
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from hookstream.config import Settings
from hookstream.engine.clock import Clock, system_clock
from hookstream.errors import RegistryUnavailable
from hookstream.kafka import (
    FetchWait,
    LogEndGuard,
    consumer_options,
    producer_options,
    stop_client,
)

log = logging.getLogger(__name__)


class CompactedView:
    """The reading and writing machinery; subclasses implement `apply`."""

    def __init__(
        self,
        settings: Settings,
        topic: str,
        client_id: str,
        *,
        writable: bool = False,
        clock: Clock = system_clock,
    ):
        self._settings = settings
        self._tp = TopicPartition(topic, 0)
        self._client_id = client_id
        self._writable = writable
        self._clock = clock
        self._consumer: AIOKafkaConsumer | None = None
        self._ends: AIOKafkaConsumer | None = None  # log-end requests only, never fetches
        self._producer: AIOKafkaProducer | None = None
        self._tail_task: asyncio.Task[None] | None = None
        self._position = 0
        self._advanced = asyncio.Condition()
        self._synced_at = float("-inf")
        self._sync: asyncio.Task[None] | None = None
        self._failure: BaseException | None = None

    def apply(self, key: str, value: bytes | None, offset: int) -> None:
        """Apply one record (value None: a tombstone) to the view."""
        raise NotImplementedError

    # -- lifecycle ---------------------------------------------------------

    async def start(self) -> None:
        """Read the whole topic, then keep tailing it in the background."""
        consumer = AIOKafkaConsumer(
            **consumer_options(self._settings, client_id=self._client_id),
            group_id=None,
        )
        await consumer.start()
        self._consumer = consumer
        consumer.assign([self._tp])
        await consumer.seek_to_beginning(self._tp)
        self._position = await consumer.position(self._tp)
        self._ends = AIOKafkaConsumer(
            **consumer_options(self._settings, client_id=f"{self._client_id}-ends"),
            group_id=None,
        )
        await self._ends.start()
        if self._writable:
            self._producer = AIOKafkaProducer(
                **producer_options(self._settings, client_id=self._client_id)
            )
            await self._producer.start()
        self._tail_task = asyncio.create_task(self._tail(), name=f"{self._client_id}-tail")
        self._tail_task.add_done_callback(self._on_tail_done)
        await self.sync()

    async def stop(self) -> None:
        """Stop tailing and disconnect."""
        if self._tail_task is not None:
            self._tail_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._tail_task
        if self._producer is not None:
            await self._producer.stop()
        for client in (self._ends, self._consumer):
            if client is not None:
                await stop_client(client)

    @property
    def failure(self) -> BaseException | None:
        """Why the tail reader died, or None while it is healthy."""
        return self._failure

    # -- reads ---------------------------------------------------------------

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
            self._sync = asyncio.create_task(self._sync_once(), name=f"{self._client_id}-sync")
        await asyncio.shield(self._sync)

    # -- writes --------------------------------------------------------------

    async def write(self, key: str, value: bytes | None) -> None:
        """Write a record (None: a tombstone) and wait until this view has applied it."""
        if self._producer is None:
            raise RuntimeError(f"{self._client_id} was not started writable")
        meta = await self._producer.send_and_wait(self._tp.topic, key=key.encode(), value=value)
        await self._wait_position(meta.offset + 1)

    # -- internals -----------------------------------------------------------

    async def _sync_once(self) -> None:
        assert self._ends is not None
        started = self._clock()
        end = (await self._ends.end_offsets([self._tp]))[self._tp]
        await self._wait_position(end)
        self._synced_at = max(self._synced_at, started)

    async def _wait_position(self, offset: int) -> None:
        async with self._advanced:
            await self._advanced.wait_for(lambda: self._failure or self._position >= offset)
        if self._failure is not None:
            raise RegistryUnavailable(f"{self._client_id} reader stopped") from self._failure

    async def _tail(self) -> None:
        assert self._consumer is not None
        guard = LogEndGuard(self._client_id, self._settings)
        wait = FetchWait(self._consumer, self._settings)
        while True:
            await guard.check(self._consumer)
            batch = await self._consumer.getmany(self._tp, timeout_ms=1000)
            guard.saw(batch)
            wait.saw(batch)
            for record in batch.get(self._tp, ()):
                if record.key is not None:
                    self.apply(record.key.decode(errors="replace"), record.value, record.offset)
            position = await self._consumer.position(self._tp)
            if position != self._position:
                async with self._advanced:
                    self._position = position
                    self._advanced.notify_all()

    def _on_tail_done(self, task: asyncio.Task[None]) -> None:
        if task.cancelled():
            return
        self._failure = task.exception() or RuntimeError(f"{self._client_id} tail ended")
        log.critical("config reader died", exc_info=self._failure)

        async def wake() -> None:
            async with self._advanced:
                self._advanced.notify_all()

        asyncio.get_running_loop().create_task(wake())
