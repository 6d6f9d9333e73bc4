"""The attempt log holds records in batches it builds: they reach the broker a linger
later or at `stop`, each once, in the endpoint's partition; a refused write is
retried or, if for good, raised (the embedded broker)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import orjson
import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaTimeoutError, TopicAuthorizationFailedError, UnknownError
from prometheus_client import CollectorRegistry

from hookstream.config import Settings
from hookstream.consumers.attempts import AttemptLog, attempt_entry
from hookstream.consumers.metrics import WorkerMetrics
from hookstream.consumers.worker import Worker
from hookstream.engine.outcome import AttemptResult, Verdict
from hookstream.kafka import key_partition
from hookstream.producers import EventPublisher
from hookstream.topics import TopicNames
from tests.conftest import EndpointFactory, SinkFactory, eventually, read_to_end, stop_within
from tests.couriers import delivery_task

OK = AttemptResult(status=204, duration_ms=3.0, excerpt=b"fine")


async def _record(log: AttemptLog, endpoint_id: str, n: int) -> None:
    task = delivery_task(endpoint_id, n)
    await log.record(task, attempt_entry(task, OK, Verdict.DELIVERED, 1.0), OK, None)


class _Refusing:
    """A producer that refuses its first `refuse` batches with `error`: when they are
    sent, or (`answered`) in the broker's answer to them."""

    def __init__(
        self, producer: AIOKafkaProducer, refuse: int, error: Exception, *, answered: bool = False
    ) -> None:
        self._producer = producer
        self.refuse = refuse
        self._error = error
        self._answered = answered

    def __getattr__(self, name: str) -> Any:
        return getattr(self._producer, name)

    async def send_batch(self, *args: Any, **kwargs: Any) -> Any:
        if self.refuse <= 0:
            return await self._producer.send_batch(*args, **kwargs)
        self.refuse -= 1
        if not self._answered:
            raise self._error
        answer: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        answer.set_exception(self._error)
        return answer


class _SlowMetadata:
    """A producer whose metadata answers after a turn of the broker (a fresh client)."""

    def __init__(self, producer: AIOKafkaProducer) -> None:
        self._producer = producer

    def __getattr__(self, name: str) -> Any:
        return getattr(self._producer, name)

    async def partitions_for(self, topic: str) -> Any:
        await asyncio.sleep(0.01)
        return await self._producer.partitions_for(topic)


@pytest.fixture
async def producer(settings: Settings) -> Any:
    started = AIOKafkaProducer(bootstrap_servers=settings.bootstrap)
    await started.start()
    yield started
    await started.stop()


async def test_records_reach_the_broker_a_linger_later_without_a_stop(
    settings: Settings, producer: AIOKafkaProducer
) -> None:
    topic = TopicNames(settings).attempts
    log = AttemptLog(producer, topic, linger_s=0.005)
    for n in range(300):
        await _record(log, f"ep_{n % 7}", n)

    async def all_there() -> bool:
        return len(await read_to_end(settings, topic)) == 300

    await eventually(all_there, timeout=30, interval=0.2, message="attempt records not sent")
    records = await read_to_end(settings, topic)
    assert sorted(orjson.loads(r.value)["message_id"] for r in records if r.value) == sorted(
        f"msg_ep_{n % 7}_{n}" for n in range(300)
    )
    for record in records:
        assert record.key is not None
        assert record.partition == key_partition(record.key.decode(), settings.partitions)
    await log.stop()
    assert len(await read_to_end(settings, topic)) == 300  # nothing twice


async def test_stop_sends_what_is_held(settings: Settings, producer: AIOKafkaProducer) -> None:
    topic = TopicNames(settings).attempts
    log = AttemptLog(producer, topic, linger_s=3600)  # only `stop` sends
    for n in range(50):
        await _record(log, "ep_a", n)
    await log.stop()
    await producer.flush()
    values = [orjson.loads(r.value) for r in await read_to_end(settings, topic) if r.value]
    assert [v["message_id"] for v in values] == [f"msg_ep_a_{n}" for n in range(50)]
    assert {v["outcome"] for v in values} == {"delivered"}


async def test_a_batch_the_producer_refuses_for_a_while_is_sent_again_once(
    settings: Settings, producer: AIOKafkaProducer
) -> None:
    topic = TopicNames(settings).attempts
    refusing = _Refusing(producer, refuse=2, error=KafkaTimeoutError())
    log = AttemptLog(refusing, topic, linger_s=0.005)
    for n in range(20):
        await _record(log, "ep_b", n)

    async def all_there() -> bool:
        return len(await read_to_end(settings, topic)) == 20

    await eventually(all_there, timeout=30, interval=0.2, message="refused batch not sent again")
    await log.stop()
    await producer.flush()
    records = await read_to_end(settings, topic)
    assert refusing.refuse == 0
    assert [orjson.loads(r.value)["message_id"] for r in records if r.value] == [
        f"msg_ep_b_{n}" for n in range(20)
    ]


# Refused when it is sent (the producer's own check), or in the broker's answer.
@pytest.mark.parametrize("answered", [False, True])
async def test_a_write_refused_for_good_is_raised_by_the_next_record(
    answered: bool,
    settings: Settings,
    producer: AIOKafkaProducer,
    caplog: pytest.LogCaptureFixture,
) -> None:
    topic = TopicNames(settings).attempts
    log = AttemptLog(
        _Refusing(producer, 100, TopicAuthorizationFailedError(), answered=answered),
        topic,
        linger_s=0.005,
    )
    await _record(log, "ep_c", 1)

    async def record_until_refused() -> None:
        for n in range(2, 200):
            await _record(log, "ep_c", n)
            await asyncio.sleep(0.01)

    with pytest.raises(TopicAuthorizationFailedError):
        await record_until_refused()
    assert "attempt records not written" in caplog.text


@pytest.mark.parametrize("error", [UnknownError(), KafkaTimeoutError()])
async def test_a_batch_answered_with_an_error_that_may_pass_is_counted_and_the_log_goes_on(
    error: Exception,
    settings: Settings,
    producer: AIOKafkaProducer,
    caplog: pytest.LogCaptureFixture,
) -> None:
    topic = TopicNames(settings).attempts
    registry = CollectorRegistry()
    metrics = WorkerMetrics(registry)
    log = AttemptLog(
        _Refusing(producer, 1, error, answered=True),
        topic,
        linger_s=0.005,
        on_lost=metrics.attempt_batch_lost,
    )
    await _record(log, "ep_e", 0)  # its batch is answered with `error`
    await eventually(lambda: log.lost_batches == 1, timeout=10, message="no batch counted lost")
    assert registry.get_sample_value("hookstream_attempt_batches_lost_total") == 1
    assert "attempt records lost: the broker did not take a batch" in caplog.text
    for n in range(1, 11):
        await _record(log, "ep_e", n)  # not raised: the log goes on
    await log.stop()
    await producer.flush()
    records = await read_to_end(settings, topic)
    assert [orjson.loads(r.value)["message_id"] for r in records if r.value] == [
        f"msg_ep_e_{n}" for n in range(1, 11)
    ]
    assert log.lost_batches == 1
    assert registry.get_sample_value("hookstream_attempt_batches_lost_total") == 1


async def test_records_added_at_once_by_many_deliveries_on_a_new_log_all_land(
    settings: Settings, producer: AIOKafkaProducer
) -> None:
    # The first records find the log not started, and learning the topic's
    # partitions waits for the broker: every one of them is kept.
    topic = TopicNames(settings).attempts
    log = AttemptLog(_SlowMetadata(producer), topic, linger_s=0.005)
    await asyncio.gather(*(_record(log, f"ep_{n % 5}", n) for n in range(200)))
    await log.stop()
    await producer.flush()
    records = await read_to_end(settings, topic)
    assert sorted(orjson.loads(r.value)["message_id"] for r in records if r.value) == sorted(
        f"msg_ep_{n % 5}_{n}" for n in range(200)
    )


async def test_a_worker_holds_its_attempt_records_for_attempt_linger_ms(
    fast: Settings, sink_factory: SinkFactory, endpoint_factory: EndpointFactory
) -> None:
    settings = fast.replace(attempt_linger_ms=1500)
    worker = Worker(settings)
    await worker.start()
    try:
        sink = await sink_factory()
        await endpoint_factory(sink.url, tenant="acme", event_types=["tick.*"])
        async with EventPublisher(settings) as publisher:
            await publisher.publish_many([{"type": "tick.tock", "tenant": "acme", "data": {}}])
        await eventually(lambda: bool(sink.event_ids()), timeout=60, message="nothing delivered")
        received_at = sink.recorder.received[0].received_at
        topic = TopicNames(settings).attempts

        async def attempt_records() -> bool:
            records = await read_to_end(settings, topic)
            return any(not r.headers for r in records)  # routed notices carry a header

        await eventually(attempt_records, timeout=60, interval=0.05, message="no attempt record")
        # Held for the linger from the attempt's end, which is after the sink had it.
        assert time.time() - received_at >= 1.5
        # A batch its log counts lost is counted in the worker's metrics too.
        metric = "hookstream_attempt_batches_lost_total"
        assert worker.metrics_registry.get_sample_value(metric) == 0
        answer: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        answer.set_exception(UnknownError())
        assert worker._attempt_log is not None
        worker._attempt_log._answered(answer)
        assert worker.metrics_registry.get_sample_value(metric) == 1
    finally:
        await stop_within(worker)
