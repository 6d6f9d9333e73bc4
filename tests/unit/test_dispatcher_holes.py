"""The dispatcher's seek-back over an offset hole, with a stand-in consumer.

The embedded broker can return a batch whose first offsets were not ready yet
(decision 011). The dispatcher must read the gap again rather than start the
records after it and later commit past records nobody attempted. The consumer
here is the seam: it returns one batch with a gap, then what was asked for.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from aiokafka import TopicPartition
from aiokafka.structs import ConsumerRecord

from hookstream.config import Settings
from hookstream.consumers.dispatcher import Dispatcher
from hookstream.engine.destinations import DEV_EGRESS
from hookstream.engine.endpoint import Endpoint, new_endpoint
from tests.conftest import eventually
from tests.couriers import ScriptedSender, courier_for, delivery_task

TP = TopicPartition("deliveries", 0)
ENDPOINT = new_endpoint(
    {"url": "http://127.0.0.1:9/hook", "tenant": "acme", "event_types": ["*"]},
    policy=DEV_EGRESS,
)


def _record(offset: int) -> ConsumerRecord[bytes, bytes]:
    task = delivery_task(ENDPOINT.id, offset)
    return ConsumerRecord(
        TP.topic, TP.partition, offset, 0, 0, ENDPOINT.id.encode(), task.body,
        None, len(ENDPOINT.id), 2, task.headers(),
    )  # fmt: skip


class _Consumer:
    """A log of `size` records; the first fetch leaves out `gap` as if not ready yet."""

    def __init__(self, size: int, gap: range) -> None:
        self._log = [_record(o) for o in range(size)]
        self._gap = gap
        self._position = 0
        self.seeks: list[int] = []

    async def getmany(self, *_: Any, **__: Any) -> dict[TopicPartition, list[Any]]:
        records = self._log[self._position :]
        if self._gap is not None and self._position == 0:
            records = [r for r in records if r.offset not in self._gap]
            self._gap = range(0)
        if not records:
            await asyncio.sleep(0.01)
            return {}
        self._position = records[-1].offset + 1
        return {TP: records}

    def seek(self, tp: TopicPartition, offset: int) -> None:
        self.seeks.append(offset)
        self._position = offset

    def paused(self) -> set[TopicPartition]:
        return set()  # nothing is held in these tests

    def assignment(self) -> set[TopicPartition]:
        return {TP}

    def highwater(self, tp: TopicPartition) -> int:
        return len(self._log)

    async def position(self, tp: TopicPartition) -> int:
        return self._position


class _Registry:
    def get(self, endpoint_id: str) -> Endpoint | None:
        return ENDPOINT if endpoint_id == ENDPOINT.id else None

    async def barrier(self, at: float) -> None:
        return None


def _id(offset: int) -> str:
    return delivery_task(ENDPOINT.id, offset).message_id


async def _run(consumer: _Consumer, until: int) -> list[str]:
    settings = Settings(dev_mode=True)
    sender = ScriptedSender()
    dispatcher = Dispatcher(settings, courier_for(settings, _Registry(), sender))
    dispatcher._consumer = consumer
    dispatcher._ready.set()  # as the rebalance listener does once it has assigned
    loop = asyncio.create_task(dispatcher._fetch_loop())
    try:
        await eventually(
            lambda: len(sender.sent) >= until and not dispatcher._tasks,
            timeout=10,
            message=lambda: f"delivered only {sorted(sender.webhook_ids())}",
        )
        await asyncio.sleep(0.1)  # anything else it would start, it starts now
    finally:
        loop.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await loop
    assert dispatcher.failure is None
    return sender.webhook_ids()


async def test_a_gap_in_a_batch_is_read_again_and_every_record_delivered_once() -> None:
    consumer = _Consumer(size=8, gap=range(3, 5))
    sent = await _run(consumer, until=8)
    assert consumer.seeks == [3]  # back to the first missing offset
    assert sorted(sent) == sorted(_id(o) for o in range(8))
    assert len(sent) == 8  # none twice


async def test_records_after_a_gap_are_not_started_before_it() -> None:
    consumer = _Consumer(size=8, gap=range(3, 5))
    sent = await _run(consumer, until=8)
    assert sent.index(_id(3)) < sent.index(_id(5))
