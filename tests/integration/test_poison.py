"""Poison records do not stop the flow: bad events go to the DLQ, good ones are delivered."""

from __future__ import annotations

import hashlib

import orjson
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from hookstream.config import Settings
from hookstream.consumers.dead_letters import DeadLetters
from hookstream.consumers.worker import Worker
from hookstream.engine.event import validate_event
from hookstream.producers import EventPublisher
from hookstream.topics import TopicNames
from tests.conftest import (
    AUTH,
    EndpointFactory,
    SinkFactory,
    eventually,
    read_topic,
    run_until_poisoned,
    write_raw,
)

pytestmark = pytest.mark.integration


async def test_invalid_events_are_dead_lettered_and_the_rest_delivered(
    settings: Settings, sink_factory: SinkFactory, endpoint_factory: EndpointFactory
) -> None:
    names = TopicNames(settings)
    sink = await sink_factory()
    await endpoint_factory(sink.url, "acme", ["*"])
    await write_raw(
        settings, names.events, [(b"k1", b"{not json"), (b"k2", orjson.dumps({"tenant": "acme"}))]
    )
    async with EventPublisher(settings) as publisher:
        good = await publisher.publish({"type": "a.b", "tenant": "acme", "data": {}})
    await run_until_poisoned(settings, good, sink, poison=2)

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


async def test_a_poison_record_at_the_size_limit_is_kept_as_its_head_and_digest(
    settings: Settings, sink_factory: SinkFactory, endpoint_factory: EndpointFactory
) -> None:
    """Scenario: a record just under the client's 4 MiB request limit lands in `events`
    and in `deliveries`. With reason headers added it no longer fits the DLQ whole;
    it must not crash-loop the worker: its head, size and digest are kept, and the
    records behind it are delivered."""
    names = TopicNames(settings)
    sink = await sink_factory()
    endpoint = await endpoint_factory(sink.url, "acme", ["*"])
    huge = b'{"type": "a.b", "tenant": "acme", "data": {"x": "' + b"y" * (4 * 1024 * 1024 - 400)
    huge += b'"}}'
    producer = AIOKafkaProducer(
        bootstrap_servers=settings.bootstrap, max_request_size=8 * 1024 * 1024
    )
    await producer.start()
    try:
        at_events = await producer.send_and_wait(names.events, huge, key=b"huge-event")
        at_deliveries = await producer.send_and_wait(
            names.deliveries, huge, key=endpoint.id.encode()
        )
    finally:
        await producer.stop()
    worker = Worker(settings)
    await worker.start()
    try:
        async with EventPublisher(settings) as publisher:
            good = await publisher.publish({"type": "a.b", "tenant": "acme", "data": {}})
        await eventually(lambda: good in sink.event_ids(), timeout=90)
        letters = await read_topic(settings, names.dlq, 2)
    finally:
        await worker.stop()
    digest = hashlib.sha256(huge).hexdigest().encode()
    by_source = {dict(r.headers)["source"]: r for r in letters}
    assert set(by_source) == {b"events", b"deliveries"}
    for source, at in ((b"events", at_events), (b"deliveries", at_deliveries)):
        letter = by_source[source]
        headers = dict(letter.headers)
        assert headers["truncated"] == b"1"
        assert headers["original_bytes"] == b"%d" % len(huge)
        assert headers["original_sha256"] == digest
        assert (letter.value or b"") == huge[: len(letter.value or b"")]
        assert 0 < len(letter.value or b"") < 64 * 1024
        assert headers["partition"] == b"%d" % at.partition
        assert headers["offset"] == b"%d" % at.offset
        assert headers["reason"]
    assert b"over the limit" in dict(by_source[b"events"].headers)["reason"]


async def test_a_letter_the_client_refuses_as_too_large_is_cut_to_fit(settings: Settings) -> None:
    """The broker (or client) limit may be lower than hookstream's own: a refusal for size
    stores the head and digest instead of failing the write forever."""
    names = TopicNames(settings)
    producer = AIOKafkaProducer(bootstrap_servers=settings.bootstrap, max_request_size=64 * 1024)
    await producer.start()
    try:
        letters = DeadLetters(producer, names.dlq, max_value_bytes=10 * 1024 * 1024)
        value = b"z" * (200 * 1024)
        await letters.write_record(
            b"k", value, [("h", b"v")], reason="not a valid event", source="events"
        )
    finally:
        await producer.stop()
    (letter,) = await read_topic(settings, names.dlq, 1)
    headers = dict(letter.headers)
    assert headers["truncated"] == b"1"
    assert headers["original_bytes"] == b"%d" % len(value)
    assert headers["h"] == b"v"
    assert headers["reason"] == b"not a valid event"
    assert letter.value == value[: len(letter.value or b"")]


async def test_an_event_that_fails_its_type_schema_is_refused_on_every_path(
    settings: Settings, sink_factory: SinkFactory, endpoint_factory: EndpointFactory
) -> None:
    """Scenario: `order.paid` has a schema. The API refuses a bad event with 422; one
    published with EventPublisher or written straight to Kafka is dead-lettered by the
    router with the field that failed; good events of the type are delivered."""
    from aiohttp.test_utils import TestClient, TestServer

    from hookstream.api import create_app

    names = TopicNames(settings)
    sink = await sink_factory()
    await endpoint_factory(sink.url, "acme", ["order.*"])
    schema = {
        "type": "object",
        "required": ["amount"],
        "properties": {"amount": {"type": "integer", "minimum": 0}},
    }
    auth = AUTH
    bad_data = {"amount": -5}
    async with TestClient(TestServer(create_app(settings))) as client:
        created = await client.post(
            "/v1/event-types", json={"name": "order.paid", "schema": schema}, headers=auth
        )
        assert created.status == 201
        refused = await client.post(
            "/v1/events",
            json={"type": "order.paid", "tenant": "acme", "data": bad_data},
            headers=auth,
        )
        assert refused.status == 422
        assert (await refused.json())["errors"][0]["field"] == "data.amount"
    async with EventPublisher(settings) as publisher:
        by_library = await publisher.publish(
            {"type": "order.paid", "tenant": "acme", "data": bad_data}
        )
        good = await publisher.publish(
            {"type": "order.paid", "tenant": "acme", "data": {"amount": 3}}
        )
    raw = {"id": "evt_raw_1", "type": "order.paid", "tenant": "acme", "data": {}}
    await write_raw(settings, names.events, [(b"raw", orjson.dumps(raw))])
    await run_until_poisoned(settings, good, sink, poison=2)
    dead = await read_topic(settings, names.dlq, 2)
    assert sink.event_ids() == {good}
    reasons = {
        orjson.loads(r.value or b"{}").get("id"): dict(r.headers)["reason"].decode() for r in dead
    }
    assert set(reasons) == {by_library, "evt_raw_1"}
    assert "data.amount" in reasons[by_library]
    assert "minimum" in reasons[by_library] or "less than" in reasons[by_library]
    assert "amount" in reasons["evt_raw_1"]  # required
    assert all("schema of order.paid" in reason for reason in reasons.values())
