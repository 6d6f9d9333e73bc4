"""A retry-tier partition whose head is not ready is held with what was fetched
behind it (decision 036): each record is fetched once, and still started when due."""

from __future__ import annotations

import time
from collections import Counter
from typing import Any

from aiokafka import AIOKafkaProducer

from hookstream.config import Settings
from hookstream.consumers.worker import Worker
from hookstream.engine.delivery import DeliveryTask, webhook_body
from hookstream.engine.event import validate_event
from hookstream.engine.retry import placement
from hookstream.topics import TopicNames
from tests.conftest import EndpointFactory, SinkFactory, eventually, read_to_end, stop_within

PARKED = 40


async def test_a_tier_of_parks_due_one_after_another_is_fetched_once(
    settings: Settings, sink_factory: SinkFactory, endpoint_factory: EndpointFactory
) -> None:
    sink = await sink_factory()
    endpoint = await endpoint_factory(sink.url, "acme", ["order.*"])
    # Waits 8 ms apart that all land in the 1 s tier: its head is ready every 8 ms.
    waits = [0.85 + n * 0.008 for n in range(PARKED)]
    tiers = settings.retry_policy.tiers()
    assert {placement(tiers, w)[0] for w in waits} == {1.0}
    tier_topic = TopicNames(settings).retry_tiers[1.0]
    worker = Worker(settings)
    await worker.start()
    try:
        dispatcher, tiers_writer = worker.dispatcher, worker.retry_tiers
        assert dispatcher is not None
        assert tiers_writer is not None
        consumer = dispatcher._consumer
        assert consumer is not None
        returned: Counter[str] = Counter()
        fetch = consumer.getmany
        calls = 0

        async def counting(*args: Any, **kwargs: Any) -> Any:
            nonlocal calls
            calls += 1
            batch = await fetch(*args, **kwargs)
            for tp, records in batch.items():
                returned[tp.topic] += len(records)
            return batch

        consumer.getmany = counting
        # The fetch that was waiting when it was wrapped has ended: every later one counts.
        await eventually(lambda: calls > 0)
        due: dict[str, float] = {}
        for n, wait in enumerate(waits):
            event = validate_event({"type": "order.paid", "tenant": "acme", "data": {"n": n}})
            task = DeliveryTask.for_event(event, endpoint.id, webhook_body(event))
            due[task.message_id] = time.time() + wait
            await tiers_writer.park(task, wait, reserved=False)
        await eventually(
            lambda: len(sink.recorder.received) >= PARKED,
            message=lambda: f"{len(sink.recorder.received)} of {PARKED} delivered",
        )
        assert returned[tier_topic] == PARKED, returned
        assert dispatcher.fetched_again == 0
        received = sink.recorder.received
        assert {r.webhook_id for r in received} == set(due)
        # Started when due, not before (the write is after `due` was taken).
        assert all(r.received_at >= due[r.webhook_id] - 0.01 for r in received)
        assert all(r.received_at <= due[r.webhook_id] + 1.0 for r in received)
    finally:
        await stop_within(worker)


async def test_a_deliveries_record_due_later_goes_to_a_tier_and_holds_nothing_up(
    settings: Settings, sink_factory: SinkFactory, endpoint_factory: EndpointFactory
) -> None:
    # A record on `deliveries` itself that is due in an hour (not one the router
    # writes: written by hand, or by another tool), with an ordinary one behind
    # it in the same partition. The ordinary one is delivered now; the other
    # waits in a tier, not in front of the partition.
    sink = await sink_factory()
    endpoint = await endpoint_factory(sink.url, "acme", ["order.*"])
    names = TopicNames(settings)
    later, now, due_at_ms = _an_hour_off_and_one_now(endpoint.id)
    await _write(settings, names.deliveries, (later, []), (now, []))
    worker = Worker(settings)
    await worker.start()
    try:
        await eventually(
            lambda: len(sink.recorder.received) >= 1,
            message=lambda: "the record behind the one due later was not delivered",
        )
        tiers = worker.retry_tiers
        assert tiers is not None
        await eventually(lambda: tiers.hops == 1, message=lambda: f"{tiers.hops} hops")
        assert [r.webhook_id for r in sink.recorder.received] == [now.message_id]
    finally:
        await stop_within(worker)
    placed = await read_to_end(settings, *names.retry_tiers.values())
    assert [dict(r.headers)["message_id"].decode() for r in placed] == [later.message_id]
    assert int(dict(placed[0].headers)["due_at"]) == due_at_ms


async def test_a_tier_record_ready_far_later_than_its_tier_holds_nothing_up(
    settings: Settings, sink_factory: SinkFactory, endpoint_factory: EndpointFactory
) -> None:
    # A record in the 1 s tier that says it is ready in an hour (no worker writes
    # that: a tier record is ready within its tier's delay and slack), with a
    # park due in 1 s behind it. The tier is held for its own longest hold, then
    # the far one goes on to the tier its wait fits and the park is delivered.
    sink = await sink_factory()
    endpoint = await endpoint_factory(sink.url, "acme", ["order.*"])
    names = TopicNames(settings)
    far, soon, hour_ms = _an_hour_off_and_one_now(endpoint.id)
    worker = Worker(settings)
    await worker.start()
    try:
        tiers = worker.retry_tiers
        assert tiers is not None
        await _write(settings, names.retry_tiers[1.0], (far, [("ready_at", b"%d" % hour_ms)]))
        parked_at = time.time()
        await tiers.park(soon, 1.0, reserved=False)
        await eventually(
            lambda: len(sink.recorder.received) >= 1,
            message=lambda: "the park behind the far record was not delivered",
        )
        assert [r.webhook_id for r in sink.recorder.received] == [soon.message_id]
        # Its own second, and at most the far one's hold of 1.2 s ahead of it.
        assert sink.recorder.received[0].received_at - parked_at < 1.0 + 1.2 + 2.0
        await eventually(lambda: tiers.hops == 1, message=lambda: f"{tiers.hops} hops")
    finally:
        await stop_within(worker)
    placed = await read_to_end(settings, *names.retry_tiers.values())
    hopped = [r for r in placed if r.topic != names.retry_tiers[1.0]]
    assert [dict(r.headers)["message_id"].decode() for r in hopped] == [far.message_id]
    assert int(dict(hopped[0].headers)["due_at"]) == hour_ms


def _an_hour_off_and_one_now(endpoint_id: str) -> tuple[DeliveryTask, DeliveryTask, int]:
    """Two deliveries to `endpoint_id`: one due in an hour, one due now; and the hour
    (epoch ms)."""
    later, now = (
        DeliveryTask.for_event(event, endpoint_id, webhook_body(event))
        for event in (
            validate_event({"type": "order.paid", "tenant": "acme", "data": {"n": n}})
            for n in range(2)
        )
    )
    hour_ms = int((time.time() + 3600) * 1000)
    return later.parked(due_at_ms=hour_ms, reserved=False), now, hour_ms


async def _write(
    settings: Settings, topic: str, *records: tuple[DeliveryTask, list[tuple[str, bytes]]]
) -> None:
    """Write each task to `topic` as a worker would, with extra headers, in order."""
    producer = AIOKafkaProducer(bootstrap_servers=settings.bootstrap)
    await producer.start()
    try:
        for task, extra in records:
            await producer.send_and_wait(
                topic,
                value=task.body,
                key=task.endpoint_id.encode(),
                headers=[*task.headers(), *extra],
            )
    finally:
        await producer.stop()
