"""Endpoint health on the real stack: isolation, circuit, rate limits, AIMD, auto-disable."""

from __future__ import annotations

import asyncio
import bisect
import itertools
import time
from collections import defaultdict
from typing import Any

import aiohttp
import orjson
import pytest
from aiohttp.test_utils import TestClient, TestServer

from hookstream.api import create_app
from hookstream.config import Settings
from hookstream.consumers.worker import Worker
from hookstream.embedded import free_port
from hookstream.engine.circuit import CircuitState
from hookstream.engine.signing import verify
from hookstream.producers import EventPublisher
from hookstream.topics import TopicNames, ensure_topics
from hookstream.views.registry import EndpointRegistry
from tests.conftest import (
    AUTH,
    NO_CIRCUIT,
    EndpointFactory,
    SinkFactory,
    eventually,
    read_topic,
)

pytestmark = pytest.mark.integration


async def _scaled(settings: Settings, **changes: Any) -> Settings:
    scaled = settings.replace(retry_jitter=0.0, **changes)
    await ensure_topics(scaled)
    return scaled


async def _publish(settings: Settings, events: list[dict[str, Any]]) -> list[str]:
    async with EventPublisher(settings) as publisher:
        return await publisher.publish_many(events)


def _orders(count: int) -> list[dict[str, Any]]:
    return [{"type": "order.paid", "tenant": "acme", "data": {"n": n}} for n in range(count)]


def _worker_health(worker: Worker) -> Any:
    return worker.gates


async def test_sick_endpoints_do_not_slow_the_healthy_ones(
    settings: Settings, sink_factory: SinkFactory, endpoint_factory: EndpointFactory
) -> None:
    """20 endpoints: 2 always 500, 2 answer after 1 s, 16 healthy → the 16 get everything first."""
    cfg = await _scaled(
        settings,
        retry_schedule_s="3,3,3,3,3,3",
        retry_floor_s=3,
        circuit_open_s=1.0,
        circuit_open_max_s=2.0,
    )
    failing_sink = await sink_factory(script=lambda n: (500, {}))
    slow_sink = await sink_factory(latency_s=1.0)
    healthy_sink = await sink_factory()
    kinds = ["failing"] * 2 + ["slow"] * 2 + ["healthy"] * 16
    sinks = {"failing": failing_sink, "slow": slow_sink, "healthy": healthy_sink}
    endpoints = [
        await endpoint_factory(sinks[kind].url, "acme", [f"e{i}.*"]) for i, kind in enumerate(kinds)
    ]
    per_endpoint = 40
    worker = Worker(cfg)
    await worker.start()
    try:
        # The slow endpoints answer once first, so their gates know they take 1 s
        # (before any answer, a gate can only bound latency by the age of what
        # is in flight, and how much of the flood arrives meanwhile is timing).
        await _publish(cfg, [{"type": f"e{i}.warm", "tenant": "acme", "data": {}} for i in (2, 3)])
        await eventually(lambda: slow_sink.recorder.accepted == 2, timeout=30)
        # Interleaved, so sick and healthy endpoints' records share every partition batch.
        ids = await _publish(
            cfg,
            [
                {"type": f"e{i}.happened", "tenant": "acme", "data": {"n": n}}
                for n in range(per_endpoint)
                for i in range(len(kinds))
            ],
        )
        assert len(ids) == per_endpoint * len(kinds)
        expected_healthy = 16 * per_endpoint
        await eventually(
            lambda: healthy_sink.recorder.accepted >= expected_healthy,
            timeout=30,
            message=lambda: f"healthy got {healthy_sink.recorder.accepted} of {expected_healthy}",
        )
        # The sick ones are still at it: nothing of theirs has been given up on yet.
        dlq = worker.dead_letters
        assert dlq is not None
        assert dlq.written == 0
        assert slow_sink.recorder.accepted < 2 + 2 * per_endpoint
        assert healthy_sink.recorder.seen.most_common(1)[0][1] == 1  # no retries needed

        health = _worker_health(worker)
        for endpoint in endpoints[:2]:
            gate = health.get(endpoint.id)
            assert gate is not None
            assert gate.parked > 0, "a failing endpoint's records were parked"
        # The breaker held most records back: far fewer attempts than records.
        assert failing_sink.recorder.failed < 2 * per_endpoint
        for endpoint in endpoints[2:4]:
            gate = health.get(endpoint.id)
            assert gate is not None
            assert gate.in_flight + gate.waiting <= 2 * gate.concurrency.cap + 1
        await eventually(
            lambda: slow_sink.recorder.accepted == 2 + 2 * per_endpoint,
            timeout=60,
            message=lambda: f"slow endpoints got {slow_sink.recorder.accepted}",
        )
    finally:
        await worker.stop()


async def test_circuit_opens_parks_probes_and_closes_when_the_receiver_recovers(
    settings: Settings, sink_factory: SinkFactory, endpoint_factory: EndpointFactory
) -> None:
    cfg = await _scaled(
        settings,
        retry_schedule_s="0.5,0.5,0.5,0.5,0.5,0.5,0.5,0.5",
        retry_floor_s=0.5,
        circuit_consecutive_failures=3,
        circuit_open_s=1.0,
        circuit_open_max_s=1.0,
    )
    down = True
    sink = await sink_factory(script=lambda n: (503, {}) if down else (204, {}))
    endpoint = await endpoint_factory(sink.url, "acme", ["*"], max_concurrency=1)
    worker = Worker(cfg)
    await worker.start()
    try:
        async with TestClient(TestServer(create_app(cfg))) as client:
            ids = await _publish(cfg, _orders(20))
            health = _worker_health(worker)

            def circuit_open() -> bool:
                gate = health.get(endpoint.id)
                return gate is not None and gate.circuit.state is not CircuitState.CLOSED

            await eventually(circuit_open, timeout=30, message="circuit never opened")
            await eventually(lambda: health.get(endpoint.id).parked >= 10, timeout=30)

            async def api_health() -> dict[str, Any]:
                response = await client.get(f"/v1/endpoints/{endpoint.id}/health", headers=AUTH)
                assert response.status == 200
                body: dict[str, Any] = await response.json()
                return body

            seen: dict[str, Any] = {}

            async def api_shows_open() -> bool:
                seen.update(await api_health())
                return bool(seen["circuit"]["state"] in {"open", "half_open"})

            deadline = time.monotonic() + 20
            while not await api_shows_open():
                assert time.monotonic() < deadline, f"API never showed the open circuit: {seen}"
                await asyncio.sleep(0.1)
            assert seen["state"] == "failing"
            assert seen["concurrency"]["maximum"] == 1

            # Open for 1 s at a time with one probe each: the attempts that reach
            # the receiver meanwhile are probes, at least the open period apart
            # (a loaded machine only spreads them further).
            opened_at = time.time()

            def probes() -> list[float]:
                return sorted(
                    r.received_at
                    for r in sink.recorder.received
                    if r.status >= 300 and r.received_at > opened_at
                )

            await eventually(lambda: len(probes()) >= 3, timeout=30, message="no probes")
            seen_probes = probes()
            gaps = [b - a for a, b in itertools.pairwise(seen_probes)]
            assert min(gaps) >= 0.9, f"probes {gaps} s apart with the circuit open for 1 s"

            down = False
            await eventually(
                lambda: sink.event_ids() == set(ids),
                timeout=30,
                message=lambda: f"{len(set(ids) - sink.event_ids())} never delivered",
            )
            await eventually(lambda: not circuit_open(), timeout=10)
            # Parking is not an attempt: each message's successful attempt number is
            # one more than the times it actually failed (1 if it was only parked).
            failures: dict[str, int] = defaultdict(int)
            for r in sink.recorder.received:
                failures[r.webhook_id] += r.status >= 300
            assert sink.recorder.failed < 20, "the breaker kept most messages from the receiver"
            for r in sink.recorder.received:
                if r.status == 204:
                    assert r.attempt == failures[r.webhook_id] + 1, r.webhook_id
            await eventually(lambda: health.get(endpoint.id).circuit.state is CircuitState.CLOSED)
            final = await api_health()
            for _ in range(50):
                if final["circuit"]["state"] == "closed":
                    break
                await asyncio.sleep(0.1)
                final = await api_health()
            assert final["circuit"]["state"] == "closed"
    finally:
        await worker.stop()


async def test_an_endpoint_limited_to_50_per_second_receives_50_per_second_under_a_flood(
    fast: Settings, sink_factory: SinkFactory, endpoint_factory: EndpointFactory
) -> None:
    sink = await sink_factory()
    await endpoint_factory(sink.url, "acme", ["*"], rate_limit=50)
    worker = Worker(fast)
    await worker.start()
    try:
        count = 400
        ids = await _publish(fast, _orders(count))
        await eventually(
            lambda: sink.event_ids() == set(ids),
            timeout=60,
            message=lambda: f"{len(sink.event_ids())} of {count} delivered",
        )
    finally:
        await worker.stop()
    times = sorted(r.received_at for r in sink.recorder.received)
    assert len(times) == count  # each exactly once: parking is not an attempt
    # Never above the limit: no window of 1 s, wherever it starts, holds more
    # than 50 plus the burst (2) and a little arrival jitter.
    busiest = max(bisect.bisect_left(times, t + 1.0) - i for i, t in enumerate(times))
    assert busiest <= 55, f"{busiest} deliveries within 1 s"
    # And not far below it: parks come back within max(1 s, 10%) of their slot
    # (decision 018), which a loaded machine may stretch, never the limiter.
    rate = (count - 1) / (times[-1] - times[0])
    assert 40 <= rate <= 52, f"{rate:.1f} deliveries/s"


async def test_429_with_retry_after_shrinks_concurrency_and_delays_the_retry(
    settings: Settings, sink_factory: SinkFactory, endpoint_factory: EndpointFactory
) -> None:
    cfg = await _scaled(
        settings,
        retry_schedule_s="1,1",
        retry_floor_s=0.5,
        endpoint_initial_concurrency=16,
        **NO_CIRCUIT,
    )
    sink = await sink_factory(script=lambda n: (429, {"Retry-After": "2"}) if n == 1 else (204, {}))
    endpoint = await endpoint_factory(sink.url, "acme", ["*"])
    worker = Worker(cfg)
    await worker.start()
    try:
        ids = await _publish(cfg, _orders(20))
        await eventually(lambda: sink.recorder.failed >= 20, timeout=30)
        gate = _worker_health(worker).get(endpoint.id)
        assert gate is not None
        assert gate.concurrency.cap <= 8, "a 429 halves the cap (16 → 8)"
        await eventually(lambda: sink.event_ids() == set(ids), timeout=30)
    finally:
        await worker.stop()
    arrivals: dict[str, list[float]] = defaultdict(list)
    for r in sink.recorder.received:
        arrivals[r.webhook_id].append(r.received_at)
    for webhook_id, times in arrivals.items():
        assert len(times) == 2, webhook_id
        # Retry-After 2 s beats the 1 s schedule (clamped at twice the schedule, 2 s).
        assert times[1] - times[0] >= 1.9, f"retried after {times[1] - times[0]:.2f} s"


async def test_auto_disable_dead_letters_pending_messages_and_tells_the_ops_endpoint(
    settings: Settings, sink_factory: SinkFactory, endpoint_factory: EndpointFactory
) -> None:
    cfg = await _scaled(
        settings,
        retry_schedule_s="0.3,0.3,0.3,0.3,0.3,0.3,0.3,0.3,0.3,0.3",
        retry_floor_s=0.3,
        auto_disable_after_s=1.5,
        **NO_CIRCUIT,
    )
    dead_sink = await sink_factory(script=lambda n: (500, {}))
    ops_sink = await sink_factory()
    bystander = await sink_factory()
    doomed = await endpoint_factory(dead_sink.url, "acme", ["order.*"])
    short = await endpoint_factory(dead_sink.url, "acme", ["invoice.*"], max_attempts=2)
    ops = await endpoint_factory(ops_sink.url, "acme", ["*"], operational=True)
    await endpoint_factory(bystander.url, "acme", ["*"])
    ops_secret = ops.secret
    worker = Worker(cfg)
    await worker.start()
    try:
        orders = await _publish(cfg, _orders(5))
        invoice = await _publish(cfg, [{"type": "invoice.sent", "tenant": "acme", "data": {}}])

        def disabled() -> bool:
            current = worker.registry.get(doomed.id)
            return current is not None and current.disabled

        await eventually(disabled, timeout=30, message="never auto-disabled")
        current = worker.registry.get(doomed.id)
        assert current is not None
        assert current.disabled_reason == "no successful attempt for 1.5s"

        dead = await read_topic(cfg, TopicNames(cfg).dlq, 6, timeout=30)
        reasons = {
            dict(r.headers)["event_id"].decode(): dict(r.headers)["reason"].decode() for r in dead
        }
        assert set(reasons) == {*orders, *invoice}
        for event_id in orders:
            assert reasons[event_id] == "endpoint disabled: no successful attempt for 1.5s"
        assert reasons[invoice[0]].startswith("attempts exhausted (2)")

        ops_events = await read_topic(cfg, TopicNames(cfg).ops, 2, timeout=30)
        kinds = sorted(orjson.loads(r.value)["type"] for r in ops_events)
        assert kinds == ["endpoint.disabled", "message.attempt.exhausted"]

        def ops_types() -> list[str]:
            return sorted(r.payload()["type"] for r in ops_sink.recorder.received)

        await eventually(
            lambda: ops_types() == ["endpoint.disabled", "message.attempt.exhausted"],
            timeout=30,
            message=lambda: f"ops endpoint got {ops_types()}",
        )
        by_type = {r.payload()["type"]: r.payload() for r in ops_sink.recorder.received}
        assert by_type["endpoint.disabled"]["data"]["endpoint_id"] == doomed.id
        assert by_type["message.attempt.exhausted"]["data"]["endpoint_id"] == short.id
        # Delivered like any webhook: signed with the operational endpoint's secret.
        for received in ops_sink.recorder.received:
            verify([ops_secret], received.headers, received.body, now=time.time())
        # Ordinary endpoints never see hookstream's own events.
        assert all(
            r.payload()["type"] in {"order.paid", "invoice.sent"}
            for r in bystander.recorder.received
        )
    finally:
        await worker.stop()


async def test_enable_restores_delivery_and_health_answers_for_unobserved_endpoints(
    fast: Settings,
    client: TestClient[Any, Any],
    registry: EndpointRegistry,
    sink_factory: SinkFactory,
    endpoint_factory: EndpointFactory,
) -> None:
    sink = await sink_factory()
    endpoint = await endpoint_factory(sink.url, "acme", ["*"], rate_limit=5)
    response = await client.get(f"/v1/endpoints/{endpoint.id}/health", headers=AUTH)
    assert response.status == 200
    body = await response.json()
    assert (body["state"], body["observed_at"], body["rate_limit"]) == ("healthy", None, 5.0)

    missing = await client.get("/v1/endpoints/ep_nope/health", headers=AUTH)
    assert missing.status == 404
    assert missing.content_type == "application/problem+json"
    assert (await client.post("/v1/endpoints/ep_nope/enable", headers=AUTH)).status == 404
    assert (await client.get(f"/v1/endpoints/{endpoint.id}/health")).status == 401

    # Disabled (as a 410 or auto-disable would), then enabled through the API.
    noop = await client.post(f"/v1/endpoints/{endpoint.id}/enable", headers=AUTH)
    assert noop.status == 200  # enabling an enabled endpoint changes nothing
    await registry.put(endpoint.with_changes(disabled=True, disabled_reason="it answered 410 Gone"))

    async def shown() -> dict[str, Any]:
        response = await client.get(f"/v1/endpoints/{endpoint.id}/health", headers=AUTH)
        result: dict[str, Any] = await response.json()
        return result

    deadline = time.monotonic() + 10
    while (body := await shown())["state"] != "disabled":  # the API's view catches up
        assert time.monotonic() < deadline, body
        await asyncio.sleep(0.05)
    assert body["disabled_reason"] == "it answered 410 Gone"
    enabled = await client.post(f"/v1/endpoints/{endpoint.id}/enable", headers=AUTH)
    assert enabled.status == 200
    assert (await enabled.json())["disabled"] is False
    assert (await shown())["state"] == "healthy"

    worker = Worker(fast)
    await worker.start()
    try:
        ids = await _publish(fast, [{"type": "order.paid", "tenant": "acme", "data": {}}])
        await eventually(lambda: sink.event_ids() == set(ids), timeout=30)

        deadline = time.monotonic() + 10
        while (body := await shown())["observed_at"] is None:
            assert time.monotonic() < deadline, "the worker never published a snapshot"
            await asyncio.sleep(0.1)
        assert body["window"]["successes"] == 1
        assert body["state"] == "healthy"
        assert body["last_success_at"] is not None
    finally:
        await worker.stop()


async def test_metrics_show_health_with_bounded_endpoint_series(
    fast: Settings, sink_factory: SinkFactory, endpoint_factory: EndpointFactory
) -> None:
    port = free_port()
    cfg = fast.replace(worker_metrics_port=port, metrics_endpoint_series=2)
    failing = await sink_factory(script=lambda n: (500, {}))
    healthy = await sink_factory()
    for i in range(3):
        await endpoint_factory(healthy.url, "acme", [f"ok{i}.*"])
    sick = await endpoint_factory(failing.url, "acme", ["bad.*"])
    worker = Worker(cfg)
    await worker.start()
    try:
        await _publish(
            cfg,
            [{"type": f"ok{i}.x", "tenant": "acme", "data": {}} for i in range(3)]
            + [{"type": "bad.x", "tenant": "acme", "data": {}}],
        )
        await eventually(lambda: healthy.recorder.accepted == 3 and failing.recorder.failed >= 1)
        async with (
            aiohttp.ClientSession() as session,
            session.get(f"http://127.0.0.1:{port}/metrics") as response,
        ):
            assert response.status == 200
            text = await response.text()
    finally:
        await worker.stop()
    lines = [line for line in text.splitlines() if not line.startswith("#")]
    scores = [line for line in lines if line.startswith("hookstream_endpoint_health_score{")]
    assert len(scores) == 2, scores  # the bound
    assert scores[0].startswith(f'hookstream_endpoint_health_score{{endpoint_id="{sick.id}"}} 0.0')
    assert "hookstream_endpoint_series_omitted 2.0" in lines
    assert 'hookstream_endpoints{state="healthy"} 3.0' in lines
    assert 'hookstream_endpoints{state="failing"} 1.0' in lines


async def test_a_burst_of_concurrent_failures_opens_the_circuit_once_then_all_recover(
    settings: Settings, sink_factory: SinkFactory, endpoint_factory: EndpointFactory
) -> None:
    """Scenario: the receiver fails the first attempt of each of 20 messages, sent at once,
    and accepts the second. The sends in flight when the circuit opens finish as failures;
    they must not count as failed probes (each would double the open period, 5 s to 300 s).
    Every message is delivered a few seconds after its scheduled retry."""
    retry_s = 2.0
    cfg = await _scaled(
        settings,
        retry_schedule_s=f"{retry_s},{retry_s},{retry_s},{retry_s}",
        retry_floor_s=retry_s,
        circuit_open_s=5.0,
        circuit_open_max_s=300.0,
    )
    sink = await sink_factory(script=lambda n: (500, {}) if n == 1 else (204, {}))
    endpoint = await endpoint_factory(sink.url, "acme", ["order.*"])
    worker = Worker(cfg)
    await worker.start()
    longest_open = 0.0
    try:
        ids = await _publish(cfg, _orders(20))

        def all_delivered() -> bool:
            nonlocal longest_open
            gate = _worker_health(worker).get(endpoint.id)
            if gate is not None and gate.circuit.opened_at is not None:
                longest_open = max(longest_open, gate.circuit.open_until - gate.circuit.opened_at)
            return sink.event_ids() == set(ids)

        await eventually(
            all_delivered,
            timeout=90,
            interval=0.05,
            message=lambda: f"{len(sink.event_ids())} of 20 delivered; open up to {longest_open}s",
        )
    finally:
        await worker.stop()
    assert sink.recorder.failed >= 5  # enough concurrent failures to open the circuit
    assert 0 < longest_open <= 2 * cfg.circuit_open_s
    first = {r.event_id: r.received_at for r in sink.recorder.received if r.attempt == 1}
    done = {r.event_id: r.received_at for r in sink.recorder.received if r.status < 300}
    late = {
        event_id: round(done[event_id] - first[event_id], 1)
        for event_id in ids
        if done[event_id] - first[event_id] > retry_s + 2 * cfg.circuit_open_s + 5
    }
    assert not late, f"delivered long after their retry was due: {late}"
