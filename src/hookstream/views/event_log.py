"""Reading the event log back by time: what a replay re-sends.

`EventLog.read` walks `events` and the sources' topics between two record
times and yields their events merged into one sequence by record time (then
topic, partition, offset), so a replay sends them in the order they were
published. It stops at each partition's end as it was when the read began, so
it always ends. The broker's time index gives only a lower bound (the embedded
broker answers offset 0), so every record is checked against the window.
Records that are not events (poison, dead-lettered when they were routed)
are skipped and counted.

A read resumes from `positions` ("topic:partition" → next offset): the merge
emits in one global order, so starting each partition where it stopped
continues the same sequence.
"""

from __future__ import annotations

import heapq
from collections.abc import AsyncGenerator, Mapping
from dataclasses import dataclass

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.structs import ConsumerRecord

from hookstream.config import Settings
from hookstream.engine.event import Event, decode_event
from hookstream.engine.source import RecordMapper
from hookstream.errors import InvalidInput
from hookstream.kafka import consumer_options, log_ends, start_whole

FETCH = 500


@dataclass(frozen=True, slots=True)
class LoggedEvent:
    """One event read back, with where it sits in the log."""

    event: Event
    timestamp_ms: int
    topic: str
    partition: int
    offset: int

    @property
    def where(self) -> str:
        """Its partition's position key: `topic:partition`."""
        return f"{self.topic}:{self.partition}"


@dataclass(slots=True)
class ReadStats:
    """What a read has looked at so far."""

    scanned: int = 0  # records in the window
    skipped: int = 0  # of those, not events


class EventLog:
    """Reads `events_topic` and the topics of `sources` (topic → mapper) back by time."""

    def __init__(
        self, settings: Settings, events_topic: str, sources: Mapping[str, RecordMapper]
    ) -> None:
        self._settings = settings
        self._events = events_topic
        self._sources = dict(sources)

    async def read(
        self,
        since_ms: int,
        until_ms: int | None,
        stats: ReadStats,
        positions: Mapping[str, int] | None = None,
    ) -> AsyncGenerator[LoggedEvent, None]:
        """Events with since_ms <= record time < until_ms, in record-time order."""
        consumer = AIOKafkaConsumer(
            **{**consumer_options(self._settings, client_id="event-log"), "fetch_max_wait_ms": 10},
            group_id=None,
        )
        try:
            await start_whole(consumer)
            ends: dict[TopicPartition, int] = {}
            for topic in (self._events, *sorted(self._sources)):
                for partition, end in ((await log_ends(self._settings, topic)) or {}).items():
                    ends[TopicPartition(topic, partition)] = end
            todo = [tp for tp, end in ends.items() if end > 0]
            if not todo:
                return
            consumer.assign(todo)
            found = await consumer.offsets_for_times({tp: since_ms for tp in todo})
            for tp in todo:
                hit = found.get(tp)
                start = hit.offset if hit is not None else ends[tp]
                resumed = (positions or {}).get(f"{tp.topic}:{tp.partition}")
                consumer.seek(tp, max(start, resumed) if resumed is not None else start)
            streams = [
                self._partition(consumer, tp, ends[tp], (since_ms, until_ms), stats) for tp in todo
            ]
            async for logged in _merge(streams):
                yield logged
        finally:
            await consumer.stop()

    async def _partition(
        self,
        consumer: AIOKafkaConsumer,
        tp: TopicPartition,
        end: int,
        window: tuple[int, int | None],
        stats: ReadStats,
    ) -> AsyncGenerator[LoggedEvent, None]:
        since_ms, until_ms = window
        while await consumer.position(tp) < end:
            batch = await consumer.getmany(tp, timeout_ms=1000, max_records=FETCH)
            for record in batch.get(tp, ()):
                if record.offset >= end:
                    return
                if record.timestamp < since_ms or (
                    until_ms is not None and record.timestamp >= until_ms
                ):
                    continue
                stats.scanned += 1
                event = self._decode(record)
                if event is None:
                    stats.skipped += 1
                    continue
                yield LoggedEvent(event, record.timestamp, tp.topic, tp.partition, record.offset)

    def _decode(self, record: ConsumerRecord[bytes, bytes]) -> Event | None:
        try:
            return event_of(record, self._sources.get(record.topic), self._settings.max_event_bytes)
        except InvalidInput:
            return None


def event_of(
    record: ConsumerRecord[bytes, bytes], mapper: RecordMapper | None, max_bytes: int
) -> Event:
    """The event a record of `events` (no mapper) or of a source carries; InvalidInput
    says why it carries none. The router and replays read records alike."""
    if mapper is None:
        return decode_event(record.value, max_bytes=max_bytes)
    return mapper.event(
        record.key,
        record.value,
        list(record.headers or ()),
        timestamp_ms=record.timestamp,
        partition=record.partition,
        offset=record.offset,
        max_bytes=max_bytes,
    )


async def _merge(
    streams: list[AsyncGenerator[LoggedEvent, None]],
) -> AsyncGenerator[LoggedEvent, None]:
    """Merge per-partition streams by (record time, topic, partition, offset)."""
    heads: list[tuple[tuple[int, str, int, int], int, LoggedEvent]] = []

    async def advance(n: int) -> None:
        logged = await anext(streams[n], None)
        if logged is not None:
            key = (logged.timestamp_ms, logged.topic, logged.partition, logged.offset)
            heapq.heappush(heads, (key, n, logged))

    for n in range(len(streams)):
        await advance(n)
    try:
        while heads:
            _, n, logged = heapq.heappop(heads)
            yield logged
            await advance(n)
    finally:
        for stream in streams:
            await stream.aclose()
