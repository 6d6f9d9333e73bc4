"""Scenario: three tenants, six endpoints with different globs, 1,000 events.

Every endpoint receives exactly the events it matches, at least once, signed
so that its secret verifies, and never an event of another tenant.
"""

from __future__ import annotations

import asyncio
import random
import sys
import time
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.errors import KafkaTimeoutError, UnknownError

from hookstream.config import Settings
from hookstream.consumers.worker import Worker
from hookstream.engine.delivery import DeliveryTask, message_id_for, webhook_body
from hookstream.engine.event import validate_event
from hookstream.engine.matching import compile_globs
from hookstream.producers import EventPublisher
from hookstream.topics import TopicNames
from tests.conftest import EndpointFactory, SinkFactory, eventually, slow_down

pytestmark = pytest.mark.integration

ENDPOINTS = [
    ("acme", ["*"]),
    ("acme", ["invoice.*"]),
    ("globex", ["user.*"]),
    ("globex", ["invoice.paid", "order.shipped"]),
    ("initech", ["order.*"]),
    ("initech", ["*.deleted"]),
]
TYPES = ["invoice.paid", "invoice.voided", "user.created", "user.deleted", "order.shipped"]
TENANTS = ["acme", "globex", "initech"]


async def test_every_endpoint_receives_exactly_its_matching_events(
    settings: Settings, sink_factory: SinkFactory, endpoint_factory: EndpointFactory
) -> None:
    sinks, endpoints = [], []
    for tenant, globs in ENDPOINTS:
        # Each sink verifies with its own endpoint's secret only; the secret is
        # generated with the endpoint, before any event is published.
        secrets: list[str] = []
        sink = await sink_factory(secrets=secrets)
        endpoint = await endpoint_factory(sink.url, tenant, globs)
        secrets.append(endpoint.secret)
        sinks.append(sink)
        endpoints.append(endpoint)

    rng = random.Random(7)
    events = [
        {"type": rng.choice(TYPES), "tenant": rng.choice(TENANTS), "data": {"n": i}}
        for i in range(1000)
    ]
    worker = Worker(settings)
    await worker.start()
    try:
        started = time.perf_counter()
        async with EventPublisher(settings) as publisher:
            ids = await publisher.publish_many(events)
        published_s = time.perf_counter() - started

        expected = []
        for endpoint in endpoints:
            regex = compile_globs(endpoint.event_types)
            expected.append(
                {
                    event_id
                    for event_id, event in zip(ids, events, strict=True)
                    if event["tenant"] == endpoint.tenant and regex.match(str(event["type"]))
                }
            )
        total = sum(len(e) for e in expected)
        assert total > 500  # the mix really exercises every endpoint

        await eventually(
            lambda: all(s.event_ids() >= e for s, e in zip(sinks, expected, strict=True)),
            timeout=120,
            message=lambda: (
                f"missing: {[len(e - s.event_ids()) for s, e in zip(sinks, expected, strict=True)]}"
            ),
        )
        delivered_s = time.perf_counter() - started
    finally:
        await worker.stop()

    for sink, endpoint, wanted in zip(sinks, endpoints, expected, strict=True):
        assert sink.event_ids() == wanted, f"{endpoint.id} got events it does not match"
        assert sink.recorder.rejected == 0
        assert all(r.verified for r in sink.recorder.received)
        for received in sink.recorder.received:
            assert received.webhook_id == message_id_for(received.event_id, endpoint.id)
            payload = received.payload()
            assert payload["type"] in TYPES
            assert set(payload) == {"type", "timestamp", "data"}
    print(
        f"\n[throughput] published 1000 events in {published_s:.2f}s "
        f"({1000 / published_s:.0f}/s); {total} deliveries done after {delivered_s:.2f}s "
        f"({total / delivered_s:.0f}/s end to end)",
        file=sys.stderr,
    )


async def test_an_endpoint_created_just_before_an_event_receives_it(
    settings: Settings, sink_factory: SinkFactory, endpoint_factory: EndpointFactory
) -> None:
    """Read-your-writes across processes: the router waits for the registry to catch up.

    The worker's registry tail is slowed to one poll every 5 s, so each event
    reaches the router (whose fetches wait at most 20 ms here) before the worker has
    read the endpoint created just before it; only the registry barrier makes
    the delivery happen.
    """
    worker = Worker(settings)
    await worker.start()
    await slow_down(worker.registry, 5.0)
    try:
        for round_ in range(3):
            sink = await sink_factory()
            await endpoint_factory(sink.url, f"tenant{round_}", ["*"])
            async with EventPublisher(settings) as publisher:
                event_id = await publisher.publish(
                    {"type": "a.b", "tenant": f"tenant{round_}", "data": {}}
                )
            await eventually(lambda: event_id in sink.event_ids(), timeout=30)  # noqa: B023
    finally:
        await worker.stop()


async def test_a_delivery_routed_elsewhere_for_an_endpoint_this_worker_has_not_read_yet_arrives(
    settings: Settings, sink_factory: SinkFactory, endpoint_factory: EndpointFactory
) -> None:
    """Another worker's router may know an endpoint before this worker's registry does.

    The worker's registry is slowed to one poll every 5 s; a delivery record
    for a brand-new endpoint is written as another worker's router would write
    it. The dispatcher must catch up, not drop it as "deleted".
    """
    worker = Worker(settings)
    await worker.start()
    await slow_down(worker.registry, 5.0)
    try:
        sink = await sink_factory()
        endpoint = await endpoint_factory(sink.url, "acme", ["*"])
        event = validate_event({"type": "a.b", "tenant": "acme", "data": {}})
        task = DeliveryTask.for_event(event, endpoint.id, webhook_body(event))
        producer = AIOKafkaProducer(bootstrap_servers=settings.bootstrap)
        await producer.start()
        try:
            await producer.send_and_wait(
                TopicNames(settings).deliveries,
                task.body,
                key=endpoint.id.encode(),
                headers=task.headers(),
            )
        finally:
            await producer.stop()
        await eventually(lambda: event.id in sink.event_ids(), timeout=30)
        assert worker.courier is not None
        assert worker.courier.dropped == 0
    finally:
        await worker.stop()


class _FailingAcks:
    """The router's producer, whose first `fail` produce batches of delivery records
    (`send_batch`) or routed notices (`send`) are answered with `error`."""

    def __init__(self, producer: AIOKafkaProducer, fail: int, error: type[Exception]) -> None:
        self._producer = producer
        self.fail = fail
        self._error = error

    def __getattr__(self, name: str) -> Any:
        return getattr(self._producer, name)

    def _failed(self) -> asyncio.Future[Any]:
        self.fail -= 1
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        future.set_exception(self._error())
        return future

    async def send_batch(self, *args: Any, **kwargs: Any) -> Any:
        return self._failed() if self.fail > 0 else await self._producer.send_batch(*args, **kwargs)

    async def send(self, *args: Any, **kwargs: Any) -> Any:
        return self._failed() if self.fail > 0 else await self._producer.send(*args, **kwargs)


@pytest.mark.parametrize(
    ("what", "error", "fail"),
    [
        ("deliveries", KafkaTimeoutError, 15),
        # The embedded broker's answer to a write that raced another to an offset:
        # a worker's router died of it after a broker restart.
        ("deliveries", UnknownError, 15),
        ("notices", UnknownError, 3),
    ],
)
async def test_a_batch_not_acknowledged_is_routed_again_and_nothing_is_lost(
    what: str,
    error: type[Exception],
    fail: int,
    fast: Settings,
    sink_factory: SinkFactory,
    endpoint_factory: EndpointFactory,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # The first batches' acknowledgements (of their delivery records, or of their
    # routed notices) fail: each is routed again after RETRY_AFTER_S (same message
    # ids), every event arrives, and the router's commits reach the end of every
    # partition.
    settings = fast.replace(router_batch_records=40)
    sink = await sink_factory()
    await endpoint_factory(sink.url, "acme", ["*"])
    worker = Worker(settings)
    await worker.start()
    router = worker.router
    if what == "deliveries":
        failing = _FailingAcks(router._producer, fail, error)
        router._producer = failing
    else:
        notices = router._notices
        assert notices is not None
        failing = _FailingAcks(notices._producer, fail, error)
        notices._producer = failing
    try:
        async with EventPublisher(settings) as publisher:
            ids = await publisher.publish_many(
                {"type": "order.paid", "tenant": "acme", "data": {"i": i}} for i in range(400)
            )
        await eventually(
            lambda: sink.event_ids() == set(ids),
            timeout=90,
            message=lambda: f"{len(set(ids) - sink.event_ids())} of 400 never delivered",
        )
        assert failing.fail == 0
        assert "delivery records not acknowledged; routing the batch again" in caplog.text
        assert worker.failure() is None
        names = TopicNames(settings)
        group = AIOKafkaConsumer(bootstrap_servers=settings.bootstrap, group_id=names.router_group)
        await group.start()
        try:
            tps = [TopicPartition(names.events, p) for p in range(settings.partitions)]

            async def committed_to_end() -> bool:
                # 400 records at offsets from 0, no transactions: 400 past them all.
                return sum([await group.committed(tp) or 0 for tp in tps]) == 400

            await eventually(committed_to_end, timeout=30, interval=0.5, message="commits lag")
        finally:
            await group.stop()
    finally:
        await worker.stop()
