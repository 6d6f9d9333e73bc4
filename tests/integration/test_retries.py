"""Retries through Kafka tiers, dead letters, 410, abort, Retry-After — nothing lost.

Tiers are scaled down (hundreds of milliseconds) so the schedule runs in seconds.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import signal
import subprocess
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

import orjson
import pytest

from hookstream.config import Settings
from hookstream.consumers.worker import Worker
from hookstream.embedded import EmbeddedStack
from hookstream.engine.delivery import message_id_for
from hookstream.producers import EventPublisher
from hookstream.producers.routed import ROUTED_HEADER
from hookstream.topics import TopicNames, ensure_topics
from hookstream.views.registry import EndpointRegistry
from tests.conftest import (
    NO_CIRCUIT,
    EndpointFactory,
    SinkFactory,
    endpoints_in,
    eventually,
    read_to_end,
    read_topic,
    settings_for,
)

pytestmark = pytest.mark.integration


async def _publish(settings: Settings, count: int, tenant: str = "acme") -> list[str]:
    async with EventPublisher(settings) as publisher:
        return await publisher.publish_many(
            {"type": "order.paid", "tenant": tenant, "data": {"i": i}} for i in range(count)
        )


async def test_fail_three_times_then_delivered_on_attempt_4_with_one_webhook_id(
    fast: Settings, worker: Worker, sink_factory: SinkFactory, endpoint_factory: EndpointFactory
) -> None:
    sink = await sink_factory(script=lambda n: (500, {}) if n <= 3 else (204, {}))
    endpoint = await endpoint_factory(sink.url, "acme", ["*"])
    ids = await _publish(fast, 30)
    await eventually(lambda: sink.event_ids() == set(ids), timeout=60)

    by_event: dict[str, list[Any]] = defaultdict(list)
    for r in sink.recorder.received:
        by_event[r.event_id].append(r)
    for event_id, deliveries in by_event.items():
        assert [d.attempt for d in deliveries] == [1, 2, 3, 4]
        assert [d.status for d in deliveries] == [500, 500, 500, 204]
        assert {d.webhook_id for d in deliveries} == {message_id_for(event_id, endpoint.id)}
        # A fresh timestamp (and so signature) on every attempt.
        stamps = [d.headers["webhook-timestamp"] for d in deliveries]
        assert stamps == sorted(stamps)

    attempts = await read_topic(fast, TopicNames(fast).attempts, 120)
    logged: dict[str, list[tuple[int, int, str]]] = defaultdict(list)
    noticed: set[str] = set()  # routed notices share the topic (decision 030)
    for record in attempts:
        body = orjson.loads(record.value)
        if ROUTED_HEADER in (record.headers or ()):
            noticed.update(event_id for _, event_id, _ in body["routed"])
            continue
        logged[body["event_id"]].append((body["attempt"], body["status"], body["outcome"]))
    assert set(logged) == set(ids)
    assert noticed == set(ids)
    for entries in logged.values():
        assert sorted(entries) == [
            (1, 500, "retry"),
            (2, 500, "retry"),
            (3, 500, "retry"),
            (4, 204, "delivered"),
        ]


async def test_a_receiver_down_for_the_whole_schedule_dead_letters_every_message(
    fast: Settings, worker: Worker, sink_factory: SinkFactory, endpoint_factory: EndpointFactory
) -> None:
    sink = await sink_factory(script=lambda n: (500, {}))
    endpoint = await endpoint_factory(sink.url, "acme", ["*"])
    ids = await _publish(fast, 20)
    dead = await read_topic(fast, TopicNames(fast).dlq, 20)
    assert {dict(r.headers)["event_id"].decode() for r in dead} == set(ids)
    for record in dead:
        headers = dict(record.headers)
        assert headers["reason"].decode().startswith("attempts exhausted (5)")
        history = orjson.loads(headers["history"])
        assert [h["attempt"] for h in history] == [1, 2, 3, 4, 5]
        assert {h.get("status") for h in history} == {500}, history
        assert record.key == endpoint.id.encode()
    # Each dead letter follows its fifth failed attempt: 20 x 5 attempts, 20 x 4 retries.
    assert sink.recorder.failed == 100
    assert worker.retry_tiers is not None
    assert worker.retry_tiers.scheduled == 80


async def test_410_disables_the_endpoint_and_parks_its_messages(
    fast: Settings, worker: Worker, sink_factory: SinkFactory, endpoint_factory: EndpointFactory
) -> None:
    sink = await sink_factory(script=lambda n: (410, {}))
    endpoint = await endpoint_factory(sink.url, "acme", ["*"])
    ids = await _publish(fast, 5)
    dead = await read_topic(fast, TopicNames(fast).dlq, 5)
    assert {dict(r.headers)["event_id"].decode() for r in dead} == set(ids)
    reasons = {dict(r.headers)["reason"].decode() for r in dead}
    assert reasons <= {"http 410: endpoint gone", "endpoint disabled: it answered 410 Gone"}
    assert "http 410: endpoint gone" in reasons

    def disabled() -> bool:
        current = worker.registry.get(endpoint.id)
        return current is not None and current.disabled

    await eventually(disabled, timeout=10)
    # Events after the 410 are not routed to the disabled endpoint at all: a
    # healthy endpoint of the same tenant gets a later marker event meanwhile.
    before = len(sink.recorder.received)
    later = await _publish(fast, 3)
    marker_sink = await sink_factory()
    await endpoint_factory(marker_sink.url, "acme", ["*"])
    marker = await _publish(fast, 1)
    await eventually(lambda: marker[0] in marker_sink.event_ids(), timeout=30)
    assert len(sink.recorder.received) == before
    assert not (set(later) & {r.event_id for r in sink.recorder.received})


async def test_abort_message_header_stops_retries(
    fast: Settings, worker: Worker, sink_factory: SinkFactory, endpoint_factory: EndpointFactory
) -> None:
    sink = await sink_factory(script=lambda n: (500, {"webhook-delivery": "abort-message"}))
    await endpoint_factory(sink.url, "acme", ["*"])
    ids = await _publish(fast, 3)
    dead = await read_topic(fast, TopicNames(fast).dlq, 3)
    assert {dict(r.headers)["reason"].decode() for r in dead} == {
        "receiver asked to abort the message"
    }
    assert {dict(r.headers)["event_id"].decode() for r in dead} == set(ids)
    assert sink.recorder.failed == 3  # one attempt each, never retried


async def test_retry_after_is_honoured_and_clamped_to_twice_the_schedule(
    settings: Settings, sink_factory: SinkFactory, endpoint_factory: EndpointFactory
) -> None:
    slow = settings.replace(
        retry_schedule_s="0.5", retry_jitter=0.0, retry_floor_s=0.5, **NO_CIRCUIT
    )
    await ensure_topics(slow)
    sink = await sink_factory(
        script=lambda n: (503, {"Retry-After": "30"}) if n == 1 else (204, {})
    )
    await endpoint_factory(sink.url, "acme", ["*"])
    worker = Worker(slow)
    await worker.start()
    try:
        ids = await _publish(slow, 1)
        await eventually(lambda: sink.event_ids() == set(ids), timeout=30)
    finally:
        await worker.stop()
    first, second = sink.recorder.received
    gap = second.received_at - first.received_at
    # Not the scheduled 0.5 s (Retry-After raised it), not 30 s (clamped to 2 x 0.5 s).
    assert 0.95 <= gap < 10, gap


async def test_sigkill_with_1000_messages_in_a_retry_tier_loses_none(
    settings: Settings, sink_factory: SinkFactory, endpoint_factory: EndpointFactory, tmp_path: Path
) -> None:
    # The tier must outlast the first round of 1,000 attempts even on a
    # loaded two-core runner, or early messages come back before the kill.
    tiered = settings.replace(
        retry_schedule_s="20", retry_jitter=0.0, retry_floor_s=20, **NO_CIRCUIT
    )
    await ensure_topics(tiered)
    sink = await sink_factory(script=lambda n: (500, {}) if n == 1 else (204, {}))
    await endpoint_factory(sink.url, "acme", ["*"])
    ids = await _publish(tiered, 1000)
    log = tmp_path / "worker.log"
    env = {**os.environ, **tiered.to_env()}

    def start() -> subprocess.Popen[bytes]:
        with log.open("ab") as out:
            return subprocess.Popen(
                [sys.executable, "-m", "hookstream", "worker"],
                env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=out,
            )  # fmt: skip

    worker = start()
    try:
        # Every message failed once, so every one waits in the 20 s tier.
        await eventually(lambda: sink.recorder.failed >= 1000, timeout=90, message="first attempts")
        assert sink.event_ids() == set()
        worker.send_signal(signal.SIGKILL)
        await asyncio.to_thread(worker.wait)
        worker = start()
        await eventually(
            lambda: sink.event_ids() == set(ids),
            timeout=150,
            message=lambda: f"{len(set(ids) - sink.event_ids())} never delivered",
        )
    finally:
        worker.send_signal(signal.SIGTERM)
        await asyncio.wait_for(asyncio.to_thread(worker.wait), 60)


async def test_an_endpoint_without_retries_is_attempted_once(
    fast: Settings, worker: Worker, sink_factory: SinkFactory, endpoint_factory: EndpointFactory
) -> None:
    sink = await sink_factory(script=lambda n: (500, {}))
    await endpoint_factory(sink.url, "acme", ["*"], retry_policy="none")
    ids = await _publish(fast, 4)
    dead = await read_topic(fast, TopicNames(fast).dlq, 4)
    assert {dict(r.headers)["event_id"].decode() for r in dead} == set(ids)
    assert {dict(r.headers)["reason"].decode() for r in dead} == {
        "attempts exhausted (1); last: http 500"
    }
    assert sink.recorder.failed == 4


async def test_max_attempts_cuts_the_schedule(
    fast: Settings, worker: Worker, sink_factory: SinkFactory, endpoint_factory: EndpointFactory
) -> None:
    sink = await sink_factory(script=lambda n: (500, {}))
    await endpoint_factory(sink.url, "acme", ["*"], max_attempts=2)
    await _publish(fast, 3)
    dead = await read_topic(fast, TopicNames(fast).dlq, 3)
    assert {len(orjson.loads(dict(r.headers)["history"])) for r in dead} == {2}
    assert sink.recorder.failed == 6


async def test_a_linear_endpoint_waits_the_same_interval_every_time(
    settings: Settings, sink_factory: SinkFactory, endpoint_factory: EndpointFactory
) -> None:
    linear = settings.replace(
        retry_schedule_s="0.2", retry_jitter=0.0, retry_floor_s=0.2, retry_linear_interval_s=0.6
    )
    await ensure_topics(linear)
    sink = await sink_factory(script=lambda n: (500, {}) if n <= 3 else (204, {}))
    await endpoint_factory(sink.url, "acme", ["*"], retry_policy="linear", max_attempts=4)
    worker = Worker(linear)
    await worker.start()
    try:
        ids = await _publish(linear, 1)
        await eventually(lambda: sink.event_ids() == set(ids), timeout=30)
    finally:
        await worker.stop()
    times = [r.received_at for r in sink.recorder.received]
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert len(gaps) == 3
    assert all(0.55 <= gap < 5 for gap in gaps), gaps


async def test_no_mix_sharing_a_tier_holds_a_record_past_its_due_time(
    stack: EmbeddedStack, sink_factory: SinkFactory
) -> None:
    # One partition, so every endpoint's retries share each tier's partition; a
    # 4 s schedule with a Retry-After of 7 s (tier 4 s, not due for 7 s) ahead
    # of plain 4 s retries and of rate-limit parks of 1-5 s.
    mixed = settings_for(stack).replace(
        partitions=1, retry_schedule_s="4,4", retry_jitter=0.0, retry_floor_s=8, **NO_CIRCUIT
    )
    await ensure_topics(mixed)
    names = TopicNames(mixed)
    registry = EndpointRegistry(mixed, writable=True)
    await registry.start()
    endpoint_factory = endpoints_in(registry)
    after = await sink_factory(
        script=lambda n: (503, {"Retry-After": "7"}) if n == 1 else (204, {})
    )
    plain = await sink_factory(script=lambda n: (500, {}) if n == 1 else (204, {}))
    limited = await sink_factory()
    await endpoint_factory(after.url, "acme", ["after.*"])
    await endpoint_factory(plain.url, "acme", ["plain.*"])
    await endpoint_factory(limited.url, "acme", ["limited.*"], rate_limit=1)
    worker = Worker(mixed)
    await worker.start()
    try:
        async with EventPublisher(mixed) as publisher:
            await publisher.publish({"type": "after.x", "tenant": "acme", "data": {}})
            await eventually(lambda: after.recorder.failed == 1, timeout=30)
            await publisher.publish_many(
                [{"type": "plain.x", "tenant": "acme", "data": {"i": i}} for i in range(5)]
                + [{"type": "limited.x", "tenant": "acme", "data": {"i": i}} for i in range(6)]
            )
        await eventually(
            lambda: (
                len(after.event_ids()) + len(plain.event_ids()) + len(limited.event_ids()) == 12
            ),
            timeout=60,
        )
    finally:
        await worker.stop()
        await registry.stop()
    assert worker.retry_tiers is not None
    assert worker.retry_tiers.hops > 0

    tier_records = await read_to_end(mixed, *names.retry_tiers.values())
    # Latest due time per (webhook-id, attempt); parks may be parked again, later.
    due: dict[tuple[str, int], float] = {}
    by_tier: dict[str, list[float]] = defaultdict(list)
    for record in sorted(tier_records, key=lambda r: (r.topic, r.offset)):
        headers = dict(record.headers)
        key = (headers["message_id"].decode(), int(headers["attempt"]))
        due[key] = max(due.get(key, 0.0), int(headers["due_at"]) / 1000)
        by_tier[record.topic].append(int(headers["due_at"]) / 1000)
    # The mix happened: in some tier a record waits behind one due later.
    assert any(
        max(dues[:i]) > dues[i] + 1 for dues in by_tier.values() for i in range(1, len(dues))
    ), by_tier
    parks = [k for k in due if k[1] == 1]
    assert len(parks) >= 3, due  # rate-limited first attempts that were parked

    received = [r for sink in (after, plain, limited) for r in sink.recorder.received]
    lateness = {
        (r.webhook_id, r.attempt): r.received_at - due[(r.webhook_id, r.attempt)]
        for r in received
        if (r.webhook_id, r.attempt) in due
    }
    assert len(lateness) == len(due), "every tier record's attempt arrived"
    # Never early; never later than max(1 s, 10% of a wait of at most 10 s).
    assert all(-0.05 <= late <= 1.0 for late in lateness.values()), lateness
    # And the schedule itself was kept: Retry-After 7 s, plain 4 s.
    first, second = after.recorder.received
    assert 7.0 <= second.received_at - first.received_at <= 8.0
    for webhook_id in {r.webhook_id for r in plain.recorder.received}:
        one, two = (r for r in plain.recorder.received if r.webhook_id == webhook_id)
        assert 4.0 <= two.received_at - one.received_at <= 5.0
