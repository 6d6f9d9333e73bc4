"""EventPublisher and its sync facade against the embedded broker."""

from __future__ import annotations

import asyncio

import orjson
import pytest
from aiokafka import AIOKafkaConsumer

from hookstream.config import Settings
from hookstream.errors import InvalidInput
from hookstream.producers import EventPublisher, SyncEventPublisher
from hookstream.topics import TopicNames
from tests.conftest import read_to_end

pytestmark = pytest.mark.integration


async def _read_events(settings: Settings, expect: int) -> list[tuple[bytes, dict[str, object]]]:
    consumer = AIOKafkaConsumer(
        TopicNames(settings).events,
        bootstrap_servers=settings.bootstrap,
        auto_offset_reset="earliest",
    )
    await consumer.start()
    out: list[tuple[bytes, dict[str, object]]] = []
    try:
        for _ in range(50):
            batch = await consumer.getmany(timeout_ms=200)
            out.extend((r.key, orjson.loads(r.value)) for rs in batch.values() for r in rs)
            if len(out) >= expect:
                break
    finally:
        await consumer.stop()
    return out


async def test_publish_returns_the_id_and_keys_by_subject(settings: Settings) -> None:
    async with EventPublisher(settings) as publisher:
        given = await publisher.publish(
            {"id": "evt-given", "type": "a.b", "tenant": "t", "subject": "s1", "data": {}}
        )
        generated = await publisher.publish({"type": "a.b", "tenant": "t", "data": {"x": "😀"}})
    assert given == "evt-given"
    assert generated.startswith("evt_")
    records = dict((body["id"], key) for key, body in await _read_events(settings, 2))
    assert records == {"evt-given": b"s1", generated: generated.encode()}


async def test_a_bad_event_in_a_batch_writes_nothing(settings: Settings) -> None:
    async with EventPublisher(settings) as publisher:
        with pytest.raises(InvalidInput, match="type"):
            await publisher.publish_many(
                [{"type": "a.b", "tenant": "t", "data": {}}, {"tenant": "t", "data": {}}]
            )
    assert await read_to_end(settings, TopicNames(settings).events) == []


async def test_an_event_over_the_size_limit_is_refused_and_its_batch_writes_nothing(
    settings: Settings,
) -> None:
    limit = settings.max_event_bytes
    big = {"type": "a.b", "tenant": "t", "data": {"pad": "x" * limit}}
    async with EventPublisher(settings) as publisher:
        with pytest.raises(InvalidInput, match=rf"^\$: \d+ bytes, over {limit}$"):
            await publisher.publish(big)
        with pytest.raises(InvalidInput, match=rf"^\[1\]: \d+ bytes, over {limit}$"):
            await publisher.publish_many([{"type": "a.b", "tenant": "t", "data": {}}, big])
    assert await read_to_end(settings, TopicNames(settings).events) == []


async def test_publishing_before_start_is_an_error(settings: Settings) -> None:
    with pytest.raises(RuntimeError, match="not started"):
        await EventPublisher(settings).publish({"type": "a.b", "tenant": "t", "data": {}})


async def test_sync_facade_publishes_from_plain_code(settings: Settings) -> None:
    def publish() -> list[str]:
        with SyncEventPublisher(settings) as publisher:
            one = publisher.publish({"type": "a.b", "tenant": "t", "data": {}})
            many = publisher.publish_many(
                {"type": "a.c", "tenant": "t", "data": {"i": i}} for i in range(3)
            )
        return [one, *many]

    ids = await asyncio.to_thread(publish)
    assert len(set(ids)) == 4
    stored = {body["id"] for _, body in await _read_events(settings, 4)}
    assert stored == set(ids)
