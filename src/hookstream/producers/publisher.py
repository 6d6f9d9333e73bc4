"""Publishing events into the `events` topic.

`EventPublisher` validates the envelope, keys the record by subject (so one
subject's events stay in order), batches through the producer's linger, and
returns the event id once the broker has acknowledged the write (acks=all).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine, Iterable, Mapping
from typing import Any, TypeVar

from aiokafka import AIOKafkaProducer

from hookstream.config import Settings
from hookstream.engine.event import Event, validate_event
from hookstream.errors import FieldProblem, InvalidInput
from hookstream.kafka import producer_options
from hookstream.topics import TopicNames

T = TypeVar("T")


class EventPublisher:
    """Async publisher: `async with EventPublisher(settings) as p: await p.publish({...})`."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._topic = TopicNames(settings).events
        self._producer: AIOKafkaProducer | None = None

    async def start(self) -> None:
        """Connect to the brokers."""
        producer = AIOKafkaProducer(**producer_options(self._settings, client_id="publisher"))
        await producer.start()
        self._producer = producer

    async def stop(self) -> None:
        """Flush what is pending and disconnect."""
        if self._producer is not None:
            producer, self._producer = self._producer, None
            await producer.stop()

    async def __aenter__(self) -> EventPublisher:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def publish(self, event: Mapping[str, Any] | Event) -> str:
        """Validate and publish one event; return its id once the write is acknowledged.

        Raises hookstream.errors.InvalidInput for a bad envelope (nothing written).
        """
        ready = event if isinstance(event, Event) else validate_event(dict(event))
        (value,) = self._encode([ready])
        await (await self._send(ready, value))
        return ready.id

    async def publish_many(self, events: Iterable[Mapping[str, Any] | Event]) -> list[str]:
        """Validate every event first (all or nothing), then publish them as one batch."""
        ready = [e if isinstance(e, Event) else validate_event(dict(e)) for e in events]
        values = self._encode(ready)
        acks = [await self._send(e, v) for e, v in zip(ready, values, strict=True)]
        await asyncio.gather(*acks)
        return [e.id for e in ready]

    def _encode(self, events: list[Event]) -> list[bytes]:
        """The records' values; InvalidInput naming each event over max_event_bytes."""
        values = [e.to_json() for e in events]
        limit = self._settings.max_event_bytes
        problems = [
            FieldProblem("$" if len(values) == 1 else f"[{i}]", f"{len(v)} bytes, over {limit}")
            for i, v in enumerate(values)
            if len(v) > limit
        ]
        if problems:
            raise InvalidInput(problems)
        return values

    async def _send(self, event: Event, value: bytes) -> asyncio.Future[Any]:
        if self._producer is None:
            raise RuntimeError("EventPublisher is not started")
        future: asyncio.Future[Any] = await self._producer.send(
            self._topic, value=value, key=event.key
        )
        return future


class SyncEventPublisher:
    """A blocking facade for services without an event loop.

    Runs an EventPublisher on a private loop in a daemon thread:
    `with SyncEventPublisher(settings) as p: p.publish({...})`.
    """

    def __init__(self, settings: Settings) -> None:
        self._publisher = EventPublisher(settings)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="hookstream-publisher", daemon=True
        )

    def start(self) -> None:
        """Start the loop thread and connect."""
        self._thread.start()
        self._call(self._publisher.start())

    def stop(self) -> None:
        """Flush, disconnect and stop the loop thread."""
        try:
            self._call(self._publisher.stop())
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=10)
            self._loop.close()

    def __enter__(self) -> SyncEventPublisher:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def publish(self, event: Mapping[str, Any]) -> str:
        """Publish one event and block until acknowledged; return its id."""
        return self._call(self._publisher.publish(event))

    def publish_many(self, events: Iterable[Mapping[str, Any]]) -> list[str]:
        """Publish a batch and block until all are acknowledged; return their ids."""
        return self._call(self._publisher.publish_many(list(events)))

    def _call(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result()
