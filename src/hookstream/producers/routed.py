"""Routed notices: which messages were written to `deliveries`, a batch per record.

The attempt index shows a message as pending from the moment it is routed
until its first attempt ends. It used to learn that by reading every delivery
record a second time, the whole body included, only for three ids in its
headers. Instead, each writer of `deliveries` (the router, a replay, a
redrive) adds one notice record per batch to the `attempts` topic, which the
index reads anyway (decision 030). A notice is soft state like the index: its
acknowledgement is awaited with the batch's, so a committed batch always has
its notice, but nothing is delivered from it.
"""

from __future__ import annotations

from collections.abc import Awaitable

import orjson
from aiokafka import AIOKafkaProducer
from aiokafka.structs import RecordMetadata

from hookstream.engine.delivery import DeliveryTask

ROUTED_HEADER = ("kind", b"routed")  # attempt records carry no headers
PER_NOTICE = 1000  # messages per record: about 100 KB, under Kafka's default 1 MB limit


class RoutedNotices:
    """Collects the messages of a batch; `send` writes them as notice records."""

    def __init__(self, producer: AIOKafkaProducer, topic: str) -> None:
        self._producer = producer
        self._topic = topic
        self._routed: list[tuple[str, str, str]] = []

    def add(self, task: DeliveryTask) -> None:
        """A message written (or being written) to `deliveries`."""
        self._routed.append((task.message_id, task.event_id, task.endpoint_id))

    async def send(self, routed_at: float) -> list[Awaitable[RecordMetadata]]:
        """Queue what was added as notices; their acknowledgements, for the caller to await."""
        routed, self._routed = self._routed, []
        acks = []
        for start in range(0, len(routed), PER_NOTICE):
            value = orjson.dumps({"routed": routed[start : start + PER_NOTICE], "at": routed_at})
            acks.append(
                await self._producer.send(self._topic, value=value, headers=[ROUTED_HEADER])
            )
        return acks
