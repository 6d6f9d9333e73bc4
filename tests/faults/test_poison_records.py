"""Fault: poison records written straight into `events` and `deliveries`.

Records that are not valid JSON, too big, or lack required fields go to the
dead-letter topic with a reason and the topic they came from; the partition's
offset moves past them (records behind them are delivered) and the worker
keeps running. (Malformed events are also covered by
tests/integration/test_poison.py.)
"""

from __future__ import annotations

import orjson
import pytest
from aiokafka import AIOKafkaProducer

from hookstream.config import Settings
from hookstream.consumers.worker import Worker
from hookstream.engine.delivery import DeliveryTask, message_id_for
from hookstream.engine.event import validate_event
from hookstream.producers import EventPublisher
from hookstream.topics import TopicNames
from tests.conftest import EndpointFactory, SinkFactory, eventually, read_topic

pytestmark = pytest.mark.integration

MAX_EVENT_BYTES = 2000


async def test_poison_records_are_dead_lettered_with_a_reason_and_the_flow_goes_on(
    settings: Settings, sink_factory: SinkFactory, endpoint_factory: EndpointFactory
) -> None:
    settings = settings.replace(max_event_bytes=MAX_EVENT_BYTES)
    names = TopicNames(settings)
    sink = await sink_factory()
    endpoint = await endpoint_factory(sink.url, "acme", ["*"])
    key = endpoint.id.encode()  # the same deliveries partition as the endpoint's own
    event = validate_event({"type": "a.b", "tenant": "acme", "data": {}})
    good = DeliveryTask.for_event(event, endpoint.id, b'{"type":"a.b","data":{}}', 0)
    without_headers = [h for h in good.headers() if h[0] not in ("endpoint_id", "tenant")]
    big_event = {"type": "a.b", "tenant": "acme", "data": {"pad": "x" * MAX_EVENT_BYTES}}
    producer = AIOKafkaProducer(bootstrap_servers=settings.bootstrap)
    await producer.start()
    try:
        for value, headers in [
            (b"{not json", good.headers()),
            (b'{"data": 1}', without_headers),
            (b'{"pad": "' + b"y" * (MAX_EVENT_BYTES + 70_000) + b'"}', good.headers()),
        ]:
            await producer.send_and_wait(names.deliveries, value, key=key, headers=headers)
        await producer.send_and_wait(names.events, orjson.dumps(big_event), key=b"big")
    finally:
        await producer.stop()
    # Behind the poison, in the same partitions: events that must be delivered.
    async with EventPublisher(settings) as publisher:
        after = await publisher.publish_many(
            {"type": "a.b", "tenant": "acme", "data": {"i": i}} for i in range(20)
        )

    worker = Worker(settings)
    await worker.start()
    try:
        await eventually(
            lambda: set(after) <= sink.event_ids(),
            timeout=60,
            message=lambda: f"{len(set(after) - sink.event_ids())} events behind the poison lost",
        )
        await eventually(lambda: worker.courier is not None and worker.courier.dropped == 3)
        assert worker.router.poison == 1
        assert worker.failure() is None
    finally:
        await worker.stop()
    poisoned = message_id_for(event.id, endpoint.id)
    assert poisoned not in {r.webhook_id for r in sink.recorder.received}

    dead = await read_topic(settings, names.dlq, 4)
    by_source: dict[str, list[str]] = {}
    for record in dead:
        found = dict(record.headers)
        by_source.setdefault(found["source"].decode(), []).append(found["reason"].decode())
    reasons = sorted(by_source["deliveries"])
    assert len(reasons) == 3
    assert any("not a JSON object" in r for r in reasons), reasons
    assert any("lacks endpoint_id, tenant" in r for r in reasons), reasons
    assert any("over the limit" in r for r in reasons), reasons
    (too_big,) = by_source["events"]
    assert f"over the limit of {MAX_EVENT_BYTES}" in too_big
