"""Poison records do not stop the flow: bad events go to the DLQ, good ones are delivered."""

from __future__ import annotations

import orjson
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from hookstream.config import Settings
from hookstream.consumers.worker import Worker
from hookstream.engine.event import validate_event
from hookstream.producers import EventPublisher
from hookstream.topics import TopicNames
from tests.conftest import EndpointFactory, SinkFactory, eventually

pytestmark = pytest.mark.integration


async def test_invalid_events_are_dead_lettered_and_the_rest_delivered(
    settings: Settings, sink_factory: SinkFactory, endpoint_factory: EndpointFactory
) -> None:
    names = TopicNames(settings)
    sink = await sink_factory()
    await endpoint_factory(sink.url, "acme", ["*"])
    producer = AIOKafkaProducer(bootstrap_servers=settings.bootstrap)
    await producer.start()
    try:
        await producer.send_and_wait(names.events, b"{not json", key=b"k1")
        await producer.send_and_wait(names.events, orjson.dumps({"tenant": "acme"}), key=b"k2")
    finally:
        await producer.stop()
    async with EventPublisher(settings) as publisher:
        good = await publisher.publish({"type": "a.b", "tenant": "acme", "data": {}})

    worker = Worker(settings)
    await worker.start()
    try:
        await eventually(lambda: good in sink.event_ids(), timeout=60)
        await eventually(lambda: worker.router.poison == 2, timeout=30)
    finally:
        await worker.stop()

    consumer = AIOKafkaConsumer(
        names.dlq, bootstrap_servers=settings.bootstrap, auto_offset_reset="earliest"
    )
    await consumer.start()
    try:
        batch = await consumer.getmany(timeout_ms=3000)
    finally:
        await consumer.stop()
    dead = sorted((r for rs in batch.values() for r in rs), key=lambda r: r.key)
    assert [r.key for r in dead] == [b"k1", b"k2"]
    assert dead[0].value == b"{not json"
    reasons = [dict(r.headers)["reason"].decode() for r in dead]
    assert "not valid JSON" in reasons[0]
    assert "type" in reasons[1]


async def test_an_event_stamped_in_the_future_is_routed_at_once(
    settings: Settings, sink_factory: SinkFactory, endpoint_factory: EndpointFactory
) -> None:
    """A producer clock far ahead must not stall the router's registry barrier."""
    sink = await sink_factory()
    await endpoint_factory(sink.url, "acme", ["*"])
    event = validate_event({"type": "a.b", "tenant": "acme", "data": {}})
    producer = AIOKafkaProducer(bootstrap_servers=settings.bootstrap)
    await producer.start()
    try:
        year_2100_ms = 4_102_444_800_000
        await producer.send_and_wait(
            TopicNames(settings).events, event.to_json(), key=event.key, timestamp_ms=year_2100_ms
        )
    finally:
        await producer.stop()
    worker = Worker(settings)
    await worker.start()
    try:
        await eventually(lambda: event.id in sink.event_ids(), timeout=30)
    finally:
        await worker.stop()
