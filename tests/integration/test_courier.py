"""The courier's act side on the real broker, with a scripted `Sender`.

Each test hands one delivery record to a courier whose writers (retry tiers,
dead letters, disabler, operational events, attempt log) are the real ones,
and reads back what landed in Kafka: the decision table of test_settle.py,
acted on.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import orjson
import pytest
from aiokafka import AIOKafkaProducer, TopicPartition
from aiokafka.structs import ConsumerRecord
from redis.asyncio import Redis

from hookstream.config import Settings
from hookstream.consumers.attempts import AttemptLog
from hookstream.consumers.courier import Courier
from hookstream.consumers.dead_letters import DeadLetters
from hookstream.consumers.disabling import EndpointDisabler
from hookstream.consumers.gates import EndpointGates
from hookstream.consumers.health import HealthBook
from hookstream.consumers.ops_events import ATTEMPTS_EXHAUSTED, ENDPOINT_DISABLED, OpsEvents
from hookstream.consumers.retry_tiers import RetryTiers
from hookstream.engine.delivery import DeliveryTask
from hookstream.engine.outcome import AttemptResult
from hookstream.redis_keys import RedisKeys
from hookstream.topics import TopicNames
from hookstream.views.registry import EndpointRegistry
from tests.conftest import EndpointFactory, read_to_end
from tests.couriers import ScriptedSender, courier_for, delivery_task

pytestmark = pytest.mark.integration

TP = TopicPartition("deliveries", 0)


@dataclass
class Landed:
    """What the act side wrote, by topic."""

    tiers: list[ConsumerRecord[bytes, bytes]]
    dlq: list[ConsumerRecord[bytes, bytes]]
    ops: list[dict[str, Any]]
    attempts: list[dict[str, Any]]


@dataclass
class Rig:
    """The real writers on the embedded broker, and a courier built over them."""

    settings: Settings
    registry: EndpointRegistry
    endpoint: EndpointFactory
    producer: AIOKafkaProducer
    attempt_logs: list[AttemptLog] = field(default_factory=list)

    def courier(self, sender: ScriptedSender, settings: Settings | None = None) -> Courier:
        settings = settings or self.settings
        names = TopicNames(settings)
        ops = OpsEvents(self.producer, names.ops)
        self.attempt_logs.append(AttemptLog(self.producer, names.attempts, linger_s=0.005))
        return courier_for(
            settings,
            self.registry,
            sender,
            tiers=RetryTiers(names.retry_tiers, self.producer),
            dead_letters=DeadLetters(self.producer, names.dlq, max_value_bytes=1 << 20),
            disabler=EndpointDisabler(self.registry, ops),
            ops=ops,
            attempt_log=self.attempt_logs[-1],
        )

    async def landed(self) -> Landed:
        for attempt_log in self.attempt_logs:  # its records are held, not awaited
            await attempt_log.stop()
        await self.producer.flush()
        settings, names = self.settings, TopicNames(self.settings)
        return Landed(
            tiers=await read_to_end(settings, *names.retry_tiers.values()),
            dlq=await read_to_end(settings, names.dlq),
            ops=[orjson.loads(r.value) for r in await read_to_end(settings, names.ops)],
            attempts=[orjson.loads(r.value) for r in await read_to_end(settings, names.attempts)],
        )


@pytest.fixture
async def rig(
    settings: Settings, registry: EndpointRegistry, endpoint_factory: EndpointFactory
) -> AsyncIterator[Rig]:
    producer = AIOKafkaProducer(bootstrap_servers=settings.bootstrap)
    await producer.start()
    yield Rig(settings, registry, endpoint_factory, producer)
    await producer.stop()


def _record(task: DeliveryTask, offset: int = 0) -> ConsumerRecord[bytes, bytes]:
    key = task.endpoint_id.encode()
    return ConsumerRecord(
        TP.topic, TP.partition, offset, 0, 0, key, task.body,
        None, len(key), len(task.body), task.headers(),
    )  # fmt: skip


def _answer(status: int) -> ScriptedSender:
    return ScriptedSender(lambda _: AttemptResult(status=status, duration_ms=2.0))


async def test_a_2xx_is_logged_delivered_and_nothing_else_is_written(rig: Rig) -> None:
    endpoint = await rig.endpoint("http://127.0.0.1:9/hook", "acme", ["*"])
    sender = _answer(204)
    await rig.courier(sender).deliver(TP, _record(delivery_task(endpoint.id, 1)))
    landed = await rig.landed()
    assert sender.webhook_ids() == [f"msg_{endpoint.id}_1"]
    assert [(a["attempt"], a["outcome"], a["status"]) for a in landed.attempts] == [
        (1, "delivered", 204)
    ]
    assert (landed.tiers, landed.dlq, landed.ops) == ([], [], [])


async def test_a_5xx_is_written_to_a_tier_as_the_next_attempt_with_its_history(rig: Rig) -> None:
    endpoint = await rig.endpoint("http://127.0.0.1:9/hook", "acme", ["*"])
    await rig.courier(_answer(500)).deliver(TP, _record(delivery_task(endpoint.id, 1)))
    landed = await rig.landed()
    (tier,) = landed.tiers
    retry = DeliveryTask.from_record(tier.headers, tier.value)
    assert (retry.attempt, retry.message_id) == (2, f"msg_{endpoint.id}_1")
    assert [h["status"] for h in orjson.loads(retry.history)] == [500]
    assert retry.due_at_ms > 0
    assert "ready_at" in dict(tier.headers)
    assert [a["outcome"] for a in landed.attempts] == ["retry"]
    assert landed.attempts[0]["next_attempt_at"] is not None
    assert (landed.dlq, landed.ops) == ([], [])


async def test_the_last_attempt_is_dead_exhausted_and_its_tenant_told(rig: Rig) -> None:
    endpoint = await rig.endpoint("http://127.0.0.1:9/hook", "acme", ["*"], max_attempts=2)
    await rig.courier(_answer(503)).deliver(TP, _record(delivery_task(endpoint.id, 1, attempt=2)))
    landed = await rig.landed()
    (letter,) = landed.dlq
    assert dict(letter.headers)["reason"] == b"attempts exhausted (2); last: http 503"
    # The attempt log says dead too, so the API shows the message dead, not retrying.
    assert [a["outcome"] for a in landed.attempts] == ["dead"]
    assert [(o["type"], o["data"]["message_id"]) for o in landed.ops] == [
        (ATTEMPTS_EXHAUSTED, f"msg_{endpoint.id}_1")
    ]
    assert landed.tiers == []
    assert not rig.registry.get(endpoint.id).disabled  # type: ignore[union-attr]


async def test_a_410_dead_letters_and_disables_its_endpoint_once(rig: Rig) -> None:
    endpoint = await rig.endpoint("http://127.0.0.1:9/hook", "acme", ["*"])
    courier = rig.courier(_answer(410))
    await courier.deliver(TP, _record(delivery_task(endpoint.id, 1), offset=0))
    after = rig.registry.get(endpoint.id)
    assert after is not None
    assert after.disabled
    assert after.disabled_reason == "it answered 410 Gone"
    # The next record of the disabled endpoint is not sent: dead-lettered as disabled.
    await courier.deliver(TP, _record(delivery_task(endpoint.id, 2), offset=1))
    landed = await rig.landed()
    assert [dict(r.headers)["reason"] for r in landed.dlq] == [
        b"http 410: endpoint gone",
        b"endpoint disabled: it answered 410 Gone",
    ]
    assert [o["type"] for o in landed.ops] == [ENDPOINT_DISABLED]
    assert len(landed.attempts) == 1


async def test_a_parked_delivery_keeps_its_attempt_and_is_not_sent(rig: Rig) -> None:
    # One request a second, a burst of one: the second record would wait ~1 s
    # for its slot, past a hold of 0.1 s, so the gate parks it.
    held = rig.settings.replace(endpoint_hold_max_s=0.1)
    endpoint = await rig.endpoint("http://127.0.0.1:9/hook", "acme", ["*"], rate_limit=1)
    sender = _answer(204)
    courier = rig.courier(sender, held)
    await courier.deliver(TP, _record(delivery_task(endpoint.id, 1, attempt=3), offset=0))
    await courier.deliver(TP, _record(delivery_task(endpoint.id, 2, attempt=3), offset=1))
    landed = await rig.landed()
    assert sender.webhook_ids() == [f"msg_{endpoint.id}_1"]
    (tier,) = landed.tiers
    parked = DeliveryTask.from_record(tier.headers, tier.value)
    assert (parked.message_id, parked.attempt, parked.reserved) == (
        f"msg_{endpoint.id}_2",
        3,
        True,
    )
    gate = courier.gates.get(endpoint.id)
    assert gate is not None
    assert gate.parked == 1


async def test_unreadable_and_orphaned_records_are_dead_lettered_or_dropped(rig: Rig) -> None:
    sender = _answer(204)
    courier = rig.courier(sender)
    garbage = ConsumerRecord(
        TP.topic, TP.partition, 41, 0, 0, b"ep_x", b"{}", None, 4, 2, [("attempt", b"x")]
    )
    await courier.deliver(TP, garbage)
    # An endpoint that no longer exists: dropped after the registry barrier.
    await courier.deliver(TP, _record(delivery_task("ep_gone", 1), offset=42))
    landed = await rig.landed()
    (letter,) = landed.dlq
    headers = dict(letter.headers)
    assert headers["reason"].startswith(b"unreadable delivery record")
    assert (headers["topic"], headers["partition"], headers["offset"]) == (
        b"deliveries",
        b"0",
        b"41",
    )
    assert courier.dropped == 2
    assert sender.sent == []
    assert courier.gates.all() == []  # neither reached a gate


async def test_the_health_book_publishes_what_the_gates_scored_and_a_new_owner_reads_it(
    rig: Rig,
) -> None:
    endpoint = await rig.endpoint("http://127.0.0.1:9/hook", "acme", ["*"])
    courier = rig.courier(_answer(500))
    redis = Redis.from_url(rig.settings.redis_url)
    book = HealthBook(rig.settings, courier.gates, rig.producer, redis)
    await book.start()
    try:
        for n in range(3):
            await courier.deliver(TP, _record(delivery_task(endpoint.id, n), offset=n))
        await book.publish()
        raw = await redis.get(RedisKeys(rig.settings).health(endpoint.id))
    finally:
        await book.stop()
        await redis.aclose()
    assert raw is not None
    snapshot = orjson.loads(raw)
    assert snapshot["window"]["failures"] == 3
    assert snapshot["failing_since"] is not None
    failing_since = courier.gates.get(endpoint.id).failing_since  # type: ignore[union-attr]

    # Another worker takes the endpoint over: its gate starts from the same
    # failing-since time, read from the health topic, so auto-disable keeps counting.
    successor = EndpointGates(rig.settings.gate_settings)
    other = HealthBook(rig.settings, successor, rig.producer, None)
    await other.start()
    try:
        gate = successor.gate(endpoint)
    finally:
        await other.stop()
    assert gate.failing_since == pytest.approx(failing_since)
