"""Records of one topic built into produce batches by the caller, a batch per partition.

The router writes every delivery record of a fetched batch and then waits for
all of their acknowledgements before it commits. Through `producer.send`,
each record paid for its own metadata check, partition lookup, serialisation
check and acknowledgement future. Here each record is appended to its
partition's open `BatchBuilder`; a full one is sent at once, and `send` sends
the rest. The acknowledgements are one per produce batch (decision 043).

Records go to the partition `producer.send` would pick (`KeyedPartitioner`),
in the order they were added, so a key's records keep their order. A batch
the producer did not take (a timeout while the one ahead drains) is kept and
sent first by the next `send`.
"""

from __future__ import annotations

from collections.abc import Awaitable

from aiokafka import AIOKafkaProducer
from aiokafka.producer.message_accumulator import BatchBuilder
from aiokafka.structs import RecordMetadata

from hookstream.kafka import KeyedPartitioner


class PartitionBatches:
    """One topic's records, appended per partition; acknowledgements per batch sent."""

    def __init__(self, producer: AIOKafkaProducer, topic: str, partitioner: KeyedPartitioner):
        self._producer = producer
        self._topic = topic
        self._partitioner = partitioner
        self._partitions: list[int] = []
        self._open: dict[int, BatchBuilder] = {}
        self._unsent: list[tuple[int, BatchBuilder]] = []  # closed, not taken by the producer
        self._acks: list[Awaitable[RecordMetadata]] = []

    async def start(self) -> None:
        """Learn the topic's partitions (before the first `add`; again is harmless)."""
        self._partitions = sorted(await self._producer.partitions_for(self._topic))

    @property
    def holding(self) -> bool:
        """True while records wait for `send`."""
        return bool(self._open or self._unsent)

    async def add(self, key: bytes, value: bytes, headers: list[tuple[str, bytes]]) -> None:
        """Append one record to its partition's batch; a batch that is full is sent.
        A KafkaError means the record was not added: add it again. (`headers` is a
        list: aiokafka's record builder takes no other sequence.)"""
        partition = self._partitioner(key, self._partitions, self._partitions)
        builder = self._open.get(partition)
        if builder is None:
            builder = self._open[partition] = self._producer.create_batch()
        if builder.append(key=key, value=value, timestamp=None, headers=headers) is None:
            await self._send(partition)  # full (a batch always takes its first record)
            builder = self._open[partition] = self._producer.create_batch()
            builder.append(key=key, value=value, timestamp=None, headers=headers)

    async def send(self) -> list[Awaitable[RecordMetadata]]:
        """Send every batch held; the acknowledgements of all sent since the last call.
        A KafkaError leaves what was not sent held for the next call."""
        while self._unsent:
            await self._enqueue(*self._unsent.pop(0))
        for partition in list(self._open):
            await self._send(partition)
        acks, self._acks = self._acks, []
        return acks

    async def _send(self, partition: int) -> None:
        builder = self._open.pop(partition)
        builder.close()  # nothing more goes in: the producer sends it without a linger
        await self._enqueue(partition, builder)

    async def _enqueue(self, partition: int, builder: BatchBuilder) -> None:
        try:
            ack = await self._producer.send_batch(builder, self._topic, partition=partition)
        except BaseException:
            self._unsent.append((partition, builder))
            raise
        self._acks.append(ack)
