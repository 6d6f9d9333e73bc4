"""Replay: an endpoint's past events re-sent from the log, in order, with their webhook-ids.

The endpoints here are created once the live router has routed every event
published before them (`_routed`), so it never sent them anything: every
delivery they get is the replay's.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
from aiohttp.test_utils import TestClient, TestServer
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from redis.asyncio import Redis

from hookstream.api import create_app, replay_tasks
from hookstream.api.replay_tasks import ReplayTasks
from hookstream.config import Settings
from hookstream.consumers.worker import Worker
from hookstream.embedded import free_port
from hookstream.engine.clock import rfc3339
from hookstream.engine.delivery import message_id_for
from hookstream.engine.destinations import DEV_EGRESS
from hookstream.engine.endpoint import new_endpoint
from hookstream.engine.replay import replay_spec
from hookstream.kafka import consumer_options, log_ends, producer_options
from hookstream.producers import EventPublisher
from hookstream.redis_keys import RedisKeys
from hookstream.topics import TopicNames
from hookstream.views.catalog import Catalog
from hookstream.views.registry import EndpointRegistry
from tests.conftest import AUTH, SinkFactory, eventually, read_to_end

pytestmark = pytest.mark.integration


def _events(count: int, kind: str = "a.b") -> list[dict[str, Any]]:
    return [{"type": kind, "tenant": "acme", "data": {"i": i}} for i in range(count)]


async def _publish(settings: Settings, events: list[dict[str, Any]]) -> list[str]:
    async with EventPublisher(settings) as publisher:
        return await publisher.publish_many(events)


async def _routed(settings: Settings) -> None:
    """Wait until the router group has committed every `events` record written so far."""
    names = TopicNames(settings)
    ends = await log_ends(settings, names.events)
    assert ends is not None
    consumer = AIOKafkaConsumer(
        **consumer_options(settings, client_id="test-routed"), group_id=names.router_group
    )
    await consumer.start()
    try:

        async def caught_up() -> bool:
            for partition, end in ends.items():
                committed = await consumer.committed(TopicPartition(names.events, partition))
                if end and (committed or 0) < end:
                    return False
            return True

        await eventually(caught_up, timeout=60, message="the router did not catch up")
    finally:
        await consumer.stop()


async def _after_a_tick() -> float:
    """A moment strictly between what was published before and what comes after."""
    await asyncio.sleep(0.05)
    moment = time.time()
    await asyncio.sleep(0.05)
    return moment


async def _finished(
    client: TestClient[Any, Any], task_id: str, timeout: float = 60
) -> dict[str, Any]:
    progress: dict[str, Any] = {}

    async def done() -> bool:
        nonlocal progress
        progress = await (await client.get(f"/v1/tasks/{task_id}", headers=AUTH)).json()
        return bool(progress["state"] != "running")

    await eventually(done, timeout=timeout, message=lambda: f"still running: {progress}")
    return progress


async def _replayed_ids(settings: Settings, endpoint_id: str) -> list[str]:
    """Event ids of the delivery records for `endpoint_id`, in their order in `deliveries`."""
    records = await read_to_end(settings, TopicNames(settings).deliveries)
    found = [dict(r.headers) for r in records]
    return [h["event_id"].decode() for h in found if h["endpoint_id"].decode() == endpoint_id]


async def _create(client: TestClient[Any, Any], url: str, **fields: Any) -> dict[str, Any]:
    response = await client.post("/v1/endpoints", json={"url": url, **fields}, headers=AUTH)
    assert response.status == 201, await response.text()
    created: dict[str, Any] = await response.json()
    return created


async def test_a_window_is_replayed_in_order_and_again_with_the_same_ids(
    fast: Settings, worker: Worker, client: TestClient[Any, Any], sink_factory: SinkFactory
) -> None:
    kinds = ["order.paid", "order.shipped", "invoice.sent"]
    early = await _publish(
        fast,
        [
            {"type": kinds[i % 3], "tenant": "acme", "subject": f"o-{i % 4}", "data": {"i": i}}
            for i in range(30)
        ],
    )
    since = await _after_a_tick()
    window = await _publish(
        fast,
        [
            {"type": kinds[i % 3], "tenant": "acme", "subject": f"o-{i % 4}", "data": {"i": 30 + i}}
            for i in range(60)
        ]
        + [{"type": "order.paid", "tenant": "globex", "data": {"i": -1}}],
    )
    until = await _after_a_tick()
    await _publish(fast, [{"type": "order.paid", "tenant": "acme", "data": {"i": 999}}])
    await _routed(fast)

    secrets: list[str] = []
    sink = await sink_factory(secrets=secrets)
    endpoint = await _create(
        client, sink.url, tenant="acme", event_types=["order.*"], filter={"data.i": {"$gte": 0}}
    )
    secrets.append(endpoint["secret"])
    body = {"since": rfc3339(since), "until": rfc3339(until)}
    started = await client.post(f"/v1/endpoints/{endpoint['id']}/replay", json=body, headers=AUTH)
    assert started.status == 202
    progress = await _finished(client, (await started.json())["task_id"])
    wanted = [e for n, e in enumerate(window[:60]) if kinds[n % 3].startswith("order.")]
    assert progress["state"] == "done"
    assert progress["kind"] == "replay"
    assert progress["count"] == len(wanted) == 40
    assert progress["scanned"] == 61

    await eventually(lambda: sink.event_ids() == set(wanted), timeout=60)
    assert all(r.verified for r in sink.recorder.received)
    assert not set(early) & sink.event_ids()
    # In the events' order: by the time each was logged, and each subject in the order
    # it was published (events published in one millisecond to different partitions
    # have no order between them in the log).
    replayed = await _replayed_ids(fast, endpoint["id"])
    assert sorted(replayed) == sorted(wanted)
    logged = {
        orjson.loads(r.value)["id"]: (r.timestamp, r.key)
        for r in await read_to_end(fast, TopicNames(fast).events)
    }
    times = [logged[e][0] for e in replayed]
    assert times == sorted(times)
    for subject in {logged[e][1] for e in wanted}:
        assert [e for e in replayed if logged[e][1] == subject] == [
            e for e in wanted if logged[e][1] == subject
        ]
    first_ids = {r.webhook_id for r in sink.recorder.received}
    assert first_ids == {message_id_for(e, endpoint["id"]) for e in wanted}

    # The same window again, narrowed to one type: the same webhook-ids.
    again = await client.post(
        f"/v1/endpoints/{endpoint['id']}/replay",
        json={**body, "event_types": ["order.paid"]},
        headers=AUTH,
    )
    second = await _finished(client, (await again.json())["task_id"])
    paid = [e for n, e in enumerate(window[:60]) if kinds[n % 3] == "order.paid"]
    assert second["count"] == len(paid) == 20
    await eventually(lambda: len(sink.recorder.received) == 60, timeout=60)
    assert {r.webhook_id for r in sink.recorder.received[40:]} == {
        message_id_for(e, endpoint["id"]) for e in paid
    }


async def test_replay_since_at_registration_and_sources_topics(
    fast: Settings, worker: Worker, client: TestClient[Any, Any], sink_factory: SinkFactory
) -> None:
    """`replay_since` replays at creation; a source's topic is replayed as well as `events`."""
    topic = f"{fast.topic_prefix}legacy.orders"
    producer = AIOKafkaProducer(**producer_options(fast, client_id="test-legacy"))
    await producer.start()
    try:
        from aiokafka.admin import AIOKafkaAdminClient, NewTopic

        from hookstream.topics import TopicSpec  # noqa: F401  (the topic is made below)

        admin = AIOKafkaAdminClient(bootstrap_servers=fast.bootstrap)
        await admin.start()
        await admin.create_topics([NewTopic(topic, 2, 1)])
        await admin.close()
        created = await client.post(
            "/v1/sources",
            json={
                "id": "legacy",
                "topic": topic,
                "format": "json",
                "start": "earliest",
                "map": {"type": "/kind", "tenant": "=acme", "id": "/uuid", "data": "/payload"},
            },
            headers=AUTH,
        )
        assert created.status == 201, await created.text()
        since = await _after_a_tick()
        ids = await _publish(fast, _events(5, "order.paid"))
        for i in range(5):
            await producer.send_and_wait(
                topic, value=b'{"kind":"order.paid","uuid":"legacy-%d","payload":{"n":%d}}' % (i, i)
            )
    finally:
        await producer.stop()
    await _routed(fast)
    sink = await sink_factory()
    endpoint = await _create(
        client, sink.url, tenant="acme", event_types=["order.*"], replay_since=rfc3339(since)
    )
    task = endpoint["replay"]
    progress = await _finished(client, task["task_id"])
    assert progress["count"] == 10
    expected = set(ids) | {f"legacy-{i}" for i in range(5)}
    await eventually(lambda: expected <= sink.event_ids(), timeout=60)
    assert sink.event_ids() == expected


async def test_replay_errors_and_cancel(
    fast: Settings, worker: Worker, client: TestClient[Any, Any], sink_factory: SinkFactory
) -> None:
    await _publish(fast, _events(300))
    await _routed(fast)  # before the endpoint: only a replay sends these to it
    sink = await sink_factory()
    endpoint = await _create(client, sink.url, tenant="acme", event_types=["*"])
    path = f"/v1/endpoints/{endpoint['id']}/replay"

    async def problem(body: Any, status: int = 422) -> list[str]:
        response = await client.post(path, json=body, headers=AUTH)
        assert response.status == status, (body, await response.text())
        found = await response.json(content_type=None)
        return [e["field"] for e in found.get("errors", [])]

    assert await problem({}) == ["since"]
    assert await problem({"since": "yesterday"}) == ["since"]
    assert await problem({"since": "2026-01-02T00:00:00"}) == ["since"]  # no offset
    assert await problem({"since": "2026-01-02T00:00:00Z", "until": "2026-01-02T00:00:00Z"}) == [
        "until"
    ]
    assert await problem({"since": "2026-01-02T00:00:00Z", "colour": "red"}) == ["colour"]
    assert await problem({"since": "2026-01-02T00:00:00Z", "until": "2026-01-01T00:00:00Z"}) == [
        "until"
    ]
    assert await problem({"since": "2026-01-02T00:00:00Z", "event_types": ["a..b", "ok.*"]}) == [
        "event_types[0]"
    ]
    assert (
        await client.post(
            "/v1/endpoints/ep_nope/replay", json={"since": "2026-01-02T00:00:00Z"}, headers=AUTH
        )
    ).status == 404
    bad_since = await client.post(
        "/v1/endpoints",
        json={"url": sink.url, "tenant": "acme", "replay_since": "soon"},
        headers=AUTH,
    )
    assert bad_since.status == 422
    assert [e["field"] for e in (await bad_since.json(content_type=None))["errors"]] == [
        "replay_since"
    ]
    disabled = await client.patch(
        f"/v1/endpoints/{endpoint['id']}", json={"disabled": True}, headers=AUTH
    )
    assert disabled.status == 200
    assert (
        await client.post(path, json={"since": "2026-01-02T00:00:00Z"}, headers=AUTH)
    ).status == 409
    await client.patch(f"/v1/endpoints/{endpoint['id']}", json={"disabled": False}, headers=AUTH)

    # A slow replay, cancelled: it ends `cancelled` and sends no more.
    slow = fast.replace(replay_rate_per_s=20.0)
    async with TestClient(TestServer(create_app(slow))) as slow_client:
        started = await slow_client.post(path, json={"since": "2000-01-01T00:00:00Z"}, headers=AUTH)
        task_id = (await started.json())["task_id"]
        await eventually(lambda: len(sink.recorder.received) >= 5, timeout=60)
        cancel = await slow_client.delete(f"/v1/tasks/{task_id}", headers=AUTH)
        assert cancel.status == 202
        progress = await _finished(slow_client, task_id, timeout=30)
        assert progress["state"] == "cancelled"
        assert 5 <= progress["count"] < 300
        assert (await slow_client.delete(f"/v1/tasks/{task_id}", headers=AUTH)).status == 409
    assert (await client.delete("/v1/tasks/task_nope", headers=AUTH)).status == 404
    sent = len(await _replayed_ids(fast, endpoint["id"]))
    await asyncio.sleep(1.5)  # a cancelled replay would have sent 30 more by now
    assert len(await _replayed_ids(fast, endpoint["id"])) == sent == progress["count"]


async def _api_process(settings: Settings, log: Path) -> tuple[subprocess.Popen[bytes], str]:
    """`hookstream api` in its own process; returns it and its base URL once it answers."""
    port = free_port()
    env = {**os.environ, **settings.replace(api_port=port).to_env()}
    with log.open("ab") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "hookstream", "api"], env=env, stdout=out, stderr=out
        )
    base = f"http://127.0.0.1:{port}"

    async def answers() -> bool:
        try:
            async with aiohttp.ClientSession() as session, session.get(f"{base}/healthz") as r:
                return r.status == 200
        except aiohttp.ClientError:
            return False

    await eventually(answers, timeout=60, message=lambda: log.read_text()[-2000:])
    return proc, base


@pytest.mark.parametrize("how", ["clean stop", "SIGKILL"])
async def test_a_replay_outlives_its_api_process(
    fast: Settings, how: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Another API process resumes it from its last acknowledged save: every event is
    sent, and repeats are only what came after that save."""
    monkeypatch.setattr(replay_tasks, "ADOPT_EVERY_S", 0.5)
    ids = await _publish(fast, _events(200))
    slow = fast.replace(replay_rate_per_s=50.0)
    redis = Redis.from_url(fast.redis_url)
    registry = EndpointRegistry(slow, writable=True)
    catalog = Catalog(slow)
    producer = AIOKafkaProducer(**producer_options(slow, client_id="test-replay"))
    await registry.start()
    await catalog.start()
    await producer.start()
    proc = None
    try:
        endpoint = new_endpoint({"url": "http://127.0.0.1:9/x", "tenant": "acme"}, DEV_EGRESS)
        await registry.put(endpoint)
        spec = {"since": "2000-01-01T00:00:00Z"}
        if how == "SIGKILL":
            proc, base = await _api_process(slow, tmp_path / "api.log")
            async with aiohttp.ClientSession(headers=AUTH) as session:
                url = f"{base}/v1/endpoints/{endpoint.id}/replay"
                async with session.post(url, json=spec) as response:
                    assert response.status == 202, await response.text()
                    task_id = (await response.json())["task_id"]
        else:
            first = ReplayTasks(slow, redis, producer, registry, catalog)
            task_id = await first.start_replay(endpoint, replay_spec(endpoint.id, spec))
        key = RedisKeys(slow).task(task_id)

        async def sent_some() -> bool:
            return int(await redis.hget(key, "count") or 0) >= 40

        await eventually(sent_some, timeout=30)
        if proc is not None:
            proc.kill()  # its owner key stays until its TTL runs out
            proc.wait(timeout=30)
        else:
            await first.stop()
        assert await redis.hget(key, "state") == b"running"
        second = ReplayTasks(slow, redis, producer, registry, catalog)
        await second.start()
        try:

            async def done() -> bool:
                return await redis.hget(key, "state") == b"done"

            await eventually(done, timeout=90)
        finally:
            await second.stop()
        sent = await _replayed_ids(slow, endpoint.id)
        assert set(sent) == set(ids)
        assert len(sent) - len(ids) <= 2 * 50  # repeats: at most what two seconds held
    finally:
        if proc is not None and proc.poll() is None:
            proc.kill()
        await producer.stop()
        await catalog.stop()
        await registry.stop()
        await redis.aclose()


async def test_the_api_stops_promptly_while_its_replay_adopter_talks_to_redis(
    settings: Settings,
) -> None:
    """The adopter asks Redis for replays the moment the app starts; a stop that lands
    inside that command must still stop it (redis-py can swallow the cancel)."""
    for _ in range(25):
        async with asyncio.timeout(10):
            async with TestClient(TestServer(create_app(settings))) as client:
                assert (await client.get("/healthz")).status == 200
