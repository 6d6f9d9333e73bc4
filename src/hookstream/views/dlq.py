"""Reading dead letters back: the API's list and redrive.

`DeadLetterReader` scans the `dlq` topic with a filter; `redrive` sends a
letter back to `deliveries` as attempt 1, the same message (same webhook-id).
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator
from dataclasses import dataclass, replace
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.structs import ConsumerRecord

from hookstream.config import Settings
from hookstream.engine.delivery import DeliveryTask
from hookstream.errors import InvalidInput
from hookstream.kafka import consumer_options, start_whole
from hookstream.topics import TopicNames


@dataclass(frozen=True, slots=True)
class DeadLetterFilter:
    """Which dead letters an operator means; every field optional."""

    tenant: str | None = None
    endpoint_id: str | None = None
    event_type: str | None = None
    message_id: str | None = None
    since_ms: int | None = None  # dead-lettered at or after (epoch ms)
    until_ms: int | None = None  # dead-lettered before (epoch ms)

    def matches(self, task: DeliveryTask, timestamp_ms: int) -> bool:
        """True when the dead letter passes every given condition."""
        return (
            (self.tenant is None or task.tenant == self.tenant)
            and (self.endpoint_id is None or task.endpoint_id == self.endpoint_id)
            and (self.event_type is None or task.event_type == self.event_type)
            and (self.message_id is None or task.message_id == self.message_id)
            and (self.since_ms is None or timestamp_ms >= self.since_ms)
            and (self.until_ms is None or timestamp_ms < self.until_ms)
        )


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """One dead letter as read back, with where it sits in the topic."""

    task: DeliveryTask
    reason: str
    dead_at_ms: int
    partition: int
    offset: int

    def to_dict(self) -> dict[str, Any]:
        """The API's view of a dead letter."""
        try:
            payload: Any = orjson.loads(self.task.body)
        except orjson.JSONDecodeError:
            payload = None
        return {
            "message_id": self.task.message_id,
            "event_id": self.task.event_id,
            "endpoint_id": self.task.endpoint_id,
            "tenant": self.task.tenant,
            "event_type": self.task.event_type,
            "reason": self.reason,
            "dead_at_ms": self.dead_at_ms,
            "attempts": orjson.loads(self.task.history),
            "payload": payload,
        }


class DeadLetterReader:
    """Scans the `dlq` topic: `async for letter in reader.scan(filter, resume)`.

    Partitions are read in order; `resume=(partition, offset)` continues a scan
    there (earlier partitions are done). A scan stops at each partition's end
    as seen when it reached that partition, so it always terminates. The end is
    the larger of ListOffsets and the first fetch's high watermark: the embedded
    broker's ListOffsets counts a multi-record batch as one (decision 008).
    Time ranges use offsets_for_times as a lower bound only and filter each
    record by its timestamp (the embedded broker answers offset 0 there).
    """

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._topic = TopicNames(settings).dlq

    async def scan(
        self, where: DeadLetterFilter, resume: tuple[int, int] | None = None
    ) -> AsyncGenerator[DeadLetter, None]:
        """Yield matching dead letters, partition by partition, in offset order."""
        options = consumer_options(self._settings, client_id="dlq-reader")
        # An empty fetch per partition is how a scan learns the true end: keep it short.
        options["fetch_max_wait_ms"] = min(options["fetch_max_wait_ms"], 10)
        consumer = AIOKafkaConsumer(**options, group_id=None)
        try:
            await start_whole(consumer)
            await consumer.topics()  # loads the metadata that names the partitions
            partitions = sorted(consumer.partitions_for_topic(self._topic) or ())
            if resume is not None:
                partitions = [p for p in partitions if p >= resume[0]]
            tps = [TopicPartition(self._topic, p) for p in partitions]
            if not tps:
                return
            consumer.assign(tps)
            ends = await consumer.end_offsets(tps)
            starts = await self._starts(consumer, tps, where, resume)
            for tp in tps:
                if ends[tp] == 0:
                    continue  # empty on every broker
                consumer.seek(tp, starts[tp])
                async for letter in self._read(consumer, tp, ends[tp], where):
                    yield letter
        finally:
            await consumer.stop()

    async def _starts(
        self,
        consumer: AIOKafkaConsumer,
        tps: list[TopicPartition],
        where: DeadLetterFilter,
        resume: tuple[int, int] | None,
    ) -> dict[TopicPartition, int]:
        beginnings = await consumer.beginning_offsets(tps)
        starts = dict(beginnings)
        if where.since_ms is not None:
            found = await consumer.offsets_for_times({tp: where.since_ms for tp in tps})
            for tp, hit in found.items():
                if hit is not None:
                    starts[tp] = max(beginnings[tp], hit.offset)
        if resume is not None:
            first = TopicPartition(self._topic, resume[0])
            if first in starts:
                starts[first] = max(starts[first], resume[1])
        return starts

    async def _read(
        self, consumer: AIOKafkaConsumer, tp: TopicPartition, end: int, where: DeadLetterFilter
    ) -> AsyncIterator[DeadLetter]:
        end_known = False
        while True:
            batch = await consumer.getmany(tp, timeout_ms=1000)
            highwater = consumer.highwater(tp)
            if not end_known and highwater is not None:
                end, end_known = max(end, highwater), True
            for record in batch.get(tp, ()):
                if record.offset >= end:
                    return
                letter = _decode(record)
                if letter is not None and where.matches(letter.task, letter.dead_at_ms):
                    yield letter
            if end_known and await consumer.position(tp) >= end:
                return


def _decode(record: ConsumerRecord[bytes, bytes]) -> DeadLetter | None:
    try:
        task = DeliveryTask.from_record(record.headers, record.value)
    except InvalidInput:
        return None  # a poison record dead-lettered as it was: not redrivable
    reason = dict(record.headers).get("reason", b"").decode(errors="replace")
    return DeadLetter(task, reason, record.timestamp, record.partition, record.offset)


async def redrive(producer: AIOKafkaProducer, deliveries_topic: str, letter: DeadLetter) -> None:
    """Send a dead letter back to `deliveries` as attempt 1 (same webhook-id); awaits the ack."""
    task = replace(letter.task, attempt=1, due_at_ms=0, history=b"[]", reserved=False)
    await producer.send_and_wait(
        deliveries_topic, value=task.body, key=task.endpoint_id.encode(), headers=task.headers()
    )
