"""Attempts and message status through the API; Redis is soft state only."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import orjson
import pytest
from aiohttp.test_utils import TestClient, TestServer
from aiokafka import TopicPartition
from aiokafka.structs import ConsumerRecord
from redis.asyncio import Redis

from hookstream.api import create_app
from hookstream.config import Settings
from hookstream.consumers.attempt_index import KEEP_PER_ENDPOINT, MESSAGE_TTL_S, AttemptIndex, score
from hookstream.consumers.worker import Worker
from hookstream.engine.delivery import message_id_for
from hookstream.producers import EventPublisher
from hookstream.producers.routed import ROUTED_HEADER
from hookstream.redis_keys import RedisKeys
from hookstream.topics import TopicNames, ensure_topics
from tests.conftest import AUTH, EndpointFactory, SinkFactory, eventually

pytestmark = pytest.mark.integration


async def _publish(settings: Settings, count: int) -> list[str]:
    async with EventPublisher(settings) as publisher:
        return await publisher.publish_many(
            {"type": "order.paid", "tenant": "acme", "data": {"i": i}} for i in range(count)
        )


async def test_attempts_are_visible_with_numbers_and_statuses(
    fast: Settings,
    client: TestClient[Any, Any],
    sink_factory: SinkFactory,
    endpoint_factory: EndpointFactory,
) -> None:
    sink = await sink_factory(script=lambda n: (500, {}) if n <= 3 else (204, {}))
    endpoint = await endpoint_factory(sink.url, "acme", ["*"])
    worker = Worker(fast)
    await worker.start()
    try:
        ids = await _publish(fast, 10)
        await eventually(lambda: sink.event_ids() == set(ids), timeout=60)
        index = worker.attempt_index
        assert index is not None
        await eventually(lambda: index.indexed >= 40, timeout=30, message="index lags")
    finally:
        await worker.stop()

    message_id = message_id_for(ids[0], endpoint.id)
    response = await client.get(f"/v1/messages/{message_id}", headers=AUTH)
    assert response.status == 200
    body = await response.json()
    assert body["state"] == "delivered"
    assert body["event_id"] == ids[0]
    assert [(a["attempt"], a["status"]) for a in body["attempts"]] == [
        (1, 500),
        (2, 500),
        (3, 500),
        (4, 204),
    ]

    # Newest first, across pages of 7, nothing repeated or missed.
    seen: list[dict[str, Any]] = []
    url: str | None = f"/v1/endpoints/{endpoint.id}/attempts?limit=7"
    while url:
        page = await (await client.get(url, headers=AUTH)).json()
        seen.extend(page["data"])
        url = page["next"]
    assert len(seen) == 40
    starts = [a["started_at"] for a in seen]
    assert starts == sorted(starts, reverse=True)
    assert len({(a["message_id"], a["attempt"]) for a in seen}) == 40


async def test_a_retrying_message_shows_its_next_attempt(
    settings: Settings, sink_factory: SinkFactory, endpoint_factory: EndpointFactory
) -> None:
    slow = settings.replace(retry_schedule_s="120", retry_jitter=0.0, retry_floor_s=120)
    await ensure_topics(slow)
    sink = await sink_factory(script=lambda n: (503, {}))
    endpoint = await endpoint_factory(sink.url, "acme", ["*"])
    worker = Worker(slow)
    await worker.start()
    try:
        ids = await _publish(slow, 1)
        index = worker.attempt_index
        assert index is not None
        await eventually(lambda: index.indexed >= 1, timeout=30)
    finally:
        await worker.stop()
    async with TestClient(TestServer(create_app(slow))) as client:
        body = await (
            await client.get(f"/v1/messages/{message_id_for(ids[0], endpoint.id)}", headers=AUTH)
        ).json()
    assert body["state"] == "retrying"
    started = body["attempts"][0]["started_at"]
    assert body["next_attempt_at"] == pytest.approx(started + 120, abs=1)


async def test_unknown_messages_and_bad_pages_are_problems(
    client: TestClient[Any, Any], endpoint_factory: EndpointFactory
) -> None:
    assert (await client.get("/v1/messages/msg_nope", headers=AUTH)).status == 404
    assert (await client.get("/v1/endpoints/ep_nope/attempts", headers=AUTH)).status == 404
    endpoint = await endpoint_factory("http://127.0.0.1:9/x", "acme", ["*"])
    for query in ("limit=0", "limit=999", "limit=x", "after=yesterday"):
        response = await client.get(f"/v1/endpoints/{endpoint.id}/attempts?{query}", headers=AUTH)
        assert response.status == 400, query
        assert response.content_type == "application/problem+json"


async def test_redis_flushall_mid_run_loses_no_webhook(
    fast: Settings, sink_factory: SinkFactory, endpoint_factory: EndpointFactory
) -> None:
    sink = await sink_factory(script=lambda n: (500, {}) if n <= 2 else (204, {}))
    await endpoint_factory(sink.url, "acme", ["*"])
    worker = Worker(fast)
    await worker.start()
    redis = Redis.from_url(fast.redis_url)
    try:
        ids = await _publish(fast, 200)
        await eventually(lambda: sink.recorder.failed >= 100, timeout=60)
        await redis.flushall()
        await eventually(
            lambda: sink.event_ids() == set(ids),
            timeout=90,
            message=lambda: f"{len(set(ids) - sink.event_ids())} never delivered",
        )
    finally:
        await redis.aclose()
        await worker.stop()


async def test_pages_neither_repeat_nor_miss_attempts_sharing_a_start_time(
    fast: Settings, client: TestClient[Any, Any], endpoint_factory: EndpointFactory
) -> None:
    endpoint = await endpoint_factory("http://127.0.0.1:9/x", "acme", ["*"])
    redis = Redis.from_url(fast.redis_url)
    try:
        key = RedisKeys(fast).endpoint_attempts(endpoint.id)
        # 25 attempts over just three distinct start times.
        for i in range(25):
            started = 1_800_000_000 + i % 3
            attempt = {"message_id": f"msg_{i}", "attempt": 1, "started_at": started}
            await redis.zadd(key, {orjson.dumps(attempt): score(attempt)})
    finally:
        await redis.aclose()
    seen: list[str] = []
    url: str | None = f"/v1/endpoints/{endpoint.id}/attempts?limit=4"
    while url:
        page = await (await client.get(url, headers=AUTH)).json()
        seen.extend(a["message_id"] for a in page["data"])
        url = page["next"]
    assert sorted(seen) == sorted(f"msg_{i}" for i in range(25))


async def test_a_routed_message_is_pending_until_its_first_attempt_ends(
    fast: Settings,
    worker: Worker,
    client: TestClient[Any, Any],
    sink_factory: SinkFactory,
    endpoint_factory: EndpointFactory,
) -> None:
    # The receiver answers after 20 s; the worker gives up after 5 (http_timeout_s).
    sink = await sink_factory(latency_s=20)
    endpoint = await endpoint_factory(sink.url, "acme", ["*"])
    ids = await _publish(fast, 1)
    url = f"/v1/messages/{message_id_for(ids[0], endpoint.id)}"
    states: list[str] = []

    async def state() -> str:
        response = await client.get(url, headers=AUTH)
        body: dict[str, Any] = await response.json(content_type=None)
        return str(body.get("state", response.status))

    for _ in range(200):  # up to 20 s, polling every 0.1 s
        states.append(await state())
        if states[-1] == "retrying":
            break
        await asyncio.sleep(0.1)
    assert "pending" in states, states
    assert states[-1] == "retrying", states
    assert states.index("pending") < states.index("retrying")
    final = await (await client.get(url, headers=AUTH)).json()
    assert final["endpoint_id"] == endpoint.id


def _notice(
    topic: str, offset: int, routed: list[tuple[str, str, str]], at: float
) -> ConsumerRecord[bytes, bytes]:
    value = orjson.dumps({"routed": routed, "at": at})
    return _record(topic, offset, value, [ROUTED_HEADER])


def _record(
    topic: str, offset: int, value: bytes | None, headers: Any = ()
) -> ConsumerRecord[bytes, bytes]:
    return ConsumerRecord(
        topic, 0, offset, 1_700_000_000_000 + offset, 0, None, value, None, 0, 0, list(headers)
    )


async def test_one_index_call_writes_routed_messages_and_attempts_and_trims(
    settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    # The index's script, against Valkey: routed hashes from routed notices (first
    # routed_at kept), both sorted sets, their TTLs, the newest KEEP_PER_ENDPOINT per
    # endpoint, unreadable notices and attempt records skipped (and logged), and a
    # second write of the same batch a no-op.
    names = TopicNames(settings)
    redis = Redis.from_url(settings.redis_url)
    keys = RedisKeys(settings)
    index = AttemptIndex(settings, redis)
    routed = _notice(names.attempts, 0, [(f"msg_{i}", "ev", "ep_a") for i in range(3)], 1.7e9)
    poison = [
        _record(names.attempts, 1, value, [ROUTED_HEADER])
        for value in (b'{"routed": 7}', b"not json", b'{"routed": [], "at": "soon"}')
    ]
    broken = [
        _record(names.attempts, 2, value)
        for value in (
            b"not json",
            b"[1, 2]",
            b'{"endpoint_id": "ep_a", "message_id": "msg_x"}',
            b'{"endpoint_id": 5, "message_id": "msg_x", "started_at": 1}',
        )
    ]
    attempts = [
        _record(
            names.attempts,
            i,
            orjson.dumps(
                {
                    "endpoint_id": "ep_a" if i % 2 else "ep_b",
                    "message_id": f"msg_{i % 5}",
                    "started_at": 1_700_000_000 + i / 1000,
                    "attempt": i,
                }
            ),
        )
        for i in range(2 * KEEP_PER_ENDPOINT + 10)
    ]
    batch = {
        TopicPartition(names.attempts, 1): [routed, *poison],
        TopicPartition(names.attempts, 2): broken,
        TopicPartition(names.attempts, 0): attempts,
    }
    try:
        with caplog.at_level(logging.WARNING, logger="hookstream.consumers.attempt_index"):
            assert await index.write(batch) == len(attempts)
        skipped = [r for r in caplog.records if "unreadable" in r.getMessage()]
        assert [(r.notices, r.attempts) for r in skipped] == [(3, 4)]  # type: ignore[attr-defined]
        assert await index.write(batch) == len(attempts)  # idempotent
        first = await redis.hgetall(keys.routed("msg_0"))
        assert float(first.pop(b"routed_at")) == 1.7e9
        assert first == {b"event_id": b"ev", b"endpoint_id": b"ep_a"}
        later = {
            TopicPartition(names.attempts, 1): [
                _notice(names.attempts, 9, [("msg_0", "ev", "ep_a")], 1.8e9)
            ]
        }
        await index.write(later)
        kept: bytes = await redis.hget(keys.routed("msg_0"), "routed_at")  # type: ignore[assignment]
        assert float(kept) == 1.7e9
        assert 0 < await redis.ttl(keys.routed("msg_2")) <= MESSAGE_TTL_S
        for endpoint in ("ep_a", "ep_b"):
            rows: list[Any] = await redis.zrange(
                keys.endpoint_attempts(endpoint), 0, -1, withscores=True
            )
            assert len(rows) == KEEP_PER_ENDPOINT
            newest = [orjson.loads(m)["attempt"] for m, _ in rows]
            parity = 1 if endpoint == "ep_a" else 0
            expected = [i for i in range(len(attempts)) if i % 2 == parity][-KEEP_PER_ENDPOINT:]
            assert newest == expected
            assert [s for _, s in rows] == [score(orjson.loads(m)) for m, _ in rows]
        message = await redis.zrange(keys.message_attempts("msg_1"), 0, -1)
        assert len(message) == len(range(1, len(attempts), 5))
        assert 0 < await redis.ttl(keys.message_attempts("msg_1")) <= MESSAGE_TTL_S
    finally:
        await redis.aclose()
