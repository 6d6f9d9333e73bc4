"""Scenario: a receiver down for the whole schedule, then back; operators redrive.

Every message lands in the DLQ with its attempts; the API lists them by filter
in pages; after the receiver recovers, a redrive by filter delivers them all
with their original webhook-ids.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from aiokafka import AIOKafkaProducer
from redis.asyncio import Redis

from hookstream.api.redrive import RedriveTasks
from hookstream.config import Settings
from hookstream.consumers.worker import Worker
from hookstream.engine.clock import parse_rfc3339
from hookstream.engine.delivery import DeliveryTask, message_id_for
from hookstream.engine.endpoint import Endpoint
from hookstream.engine.letters import DeadLetterFilter, letter_id
from hookstream.kafka import producer_options
from hookstream.producers import EventPublisher
from hookstream.redis_keys import RedisKeys
from hookstream.topics import TopicNames
from hookstream.views.dlq_index import OPEN, REDRIVEN, DeadLetterIndex
from tests.conftest import (
    AUTH,
    EndpointFactory,
    RunningSink,
    SinkFactory,
    eventually,
    read_to_end,
)

pytestmark = pytest.mark.integration


class Outage:
    """A receiver that fails while `down` is set."""

    def __init__(self) -> None:
        self.down = True

    def __call__(self, _: int) -> tuple[int, dict[str, str]]:
        return (503, {}) if self.down else (204, {})


async def _dead_lettered(
    fast: Settings, worker: Worker, sink_factory: SinkFactory, endpoint_factory: EndpointFactory
) -> tuple[Outage, RunningSink, Endpoint, list[str]]:
    outage = Outage()
    sink = await sink_factory(script=outage)
    endpoint = await endpoint_factory(sink.url, "acme", ["*"])
    async with EventPublisher(fast) as publisher:
        ids = await publisher.publish_many(
            {"type": "order.paid" if i % 2 else "order.shipped", "tenant": "acme", "data": {"i": i}}
            for i in range(12)
        )
    letters, index = worker.dead_letters, worker.dlq_index
    assert letters is not None
    assert index is not None
    await eventually(lambda: letters.written == 12, timeout=60, message="not all dead-lettered")
    await eventually(lambda: index.indexed == 12, timeout=30, message="not all indexed")
    return outage, sink, endpoint, ids


async def _finished(client: TestClient[Any, Any], task: dict[str, Any]) -> dict[str, Any]:
    """Poll a task until it is no longer running (30 s at most); its last progress."""
    progress: dict[str, Any] = {}
    for _ in range(300):
        progress = await (await client.get(task["status"], headers=AUTH)).json()
        if progress["state"] != "running":
            break
        await asyncio.sleep(0.1)
    return progress


async def _listed(client: TestClient[Any, Any], query: str) -> list[dict[str, Any]]:
    """Every letter a DLQ query lists, following `next` links."""
    seen: list[dict[str, Any]] = []
    url: str | None = f"/v1/dlq?{query}"
    while url:
        response = await client.get(url, headers=AUTH)
        assert response.status == 200, await response.text()
        page = await response.json()
        seen.extend(page["data"])
        url = page["next"]
    return seen


async def test_list_filter_and_page_dead_letters(
    fast: Settings,
    worker: Worker,
    client: TestClient[Any, Any],
    sink_factory: SinkFactory,
    endpoint_factory: EndpointFactory,
) -> None:
    _, _, endpoint, ids = await _dead_lettered(fast, worker, sink_factory, endpoint_factory)

    seen: list[dict[str, Any]] = []
    url: str | None = f"/v1/dlq?endpoint_id={endpoint.id}&limit=5"
    pages = 0
    while url:
        response = await client.get(url, headers=AUTH)
        assert response.status == 200
        page = await response.json()
        seen.extend(page["data"])
        url = page["next"]
        pages += 1
    assert pages == 3, (pages, len(seen))
    assert sorted(d["event_id"] for d in seen) == sorted(ids)
    first = seen[0]
    assert first["reason"].startswith("attempts exhausted (5)")
    assert [a["attempt"] for a in first["attempts"]] == [1, 2, 3, 4, 5]
    assert {a["status"] for a in first["attempts"]} == {503}
    assert first["payload"]["type"] in {"order.paid", "order.shipped"}
    assert first["message_id"] == message_id_for(first["event_id"], endpoint.id)

    async def count(query: str) -> int:
        return len((await (await client.get(f"/v1/dlq?{query}", headers=AUTH)).json())["data"])

    assert await count("event_type=order.paid") == 6
    assert await count("tenant=globex") == 0
    assert await count("endpoint_id=ep_other") == 0
    assert await count("since=2000-01-01T00:00:00Z") == 12
    assert await count("since=2100-01-01T00:00:00Z") == 0
    assert await count("until=2000-01-01T00:00:00Z") == 0


async def test_redrive_by_filter_delivers_everything_after_recovery(
    fast: Settings,
    worker: Worker,
    client: TestClient[Any, Any],
    sink_factory: SinkFactory,
    endpoint_factory: EndpointFactory,
) -> None:
    outage, sink, endpoint, ids = await _dead_lettered(fast, worker, sink_factory, endpoint_factory)
    outage.down = False
    response = await client.post("/v1/dlq/redrive", json={"endpoint_id": endpoint.id}, headers=AUTH)
    assert response.status == 202
    progress = await _finished(client, await response.json())
    assert progress["state"] == "done"
    assert progress["redriven"] == 12
    await eventually(lambda: sink.event_ids() == set(ids), timeout=60)
    delivered = [r for r in sink.recorder.received if r.status < 300]
    assert {r.webhook_id for r in delivered} == {message_id_for(e, endpoint.id) for e in ids}
    assert {r.attempt for r in delivered} == {1}  # a redrive starts the schedule again


async def test_redrive_one_message(
    fast: Settings,
    worker: Worker,
    client: TestClient[Any, Any],
    sink_factory: SinkFactory,
    endpoint_factory: EndpointFactory,
) -> None:
    outage, sink, endpoint, ids = await _dead_lettered(fast, worker, sink_factory, endpoint_factory)
    outage.down = False
    message_id = message_id_for(ids[3], endpoint.id)
    response = await client.post(f"/v1/dlq/{message_id}/redrive", headers=AUTH)
    assert response.status == 202
    await eventually(lambda: ids[3] in sink.event_ids(), timeout=30)
    assert sink.event_ids() == {ids[3]}
    missing = await client.post("/v1/dlq/msg_nope/redrive", headers=AUTH)
    assert missing.status == 404


async def test_bad_filters_and_cursors_are_problems(client: TestClient[Any, Any]) -> None:
    bad_time = await client.get("/v1/dlq?since=yesterday", headers=AUTH)
    assert bad_time.status == 422
    assert [e["field"] for e in (await bad_time.json(content_type=None))["errors"]] == ["since"]
    unknown = await client.post("/v1/dlq/redrive", json={"colour": "red"}, headers=AUTH)
    assert unknown.status == 422
    assert (await client.get("/v1/dlq?after=x", headers=AUTH)).status == 400
    assert (await client.get("/v1/dlq?limit=0", headers=AUTH)).status == 400
    assert (await client.get("/v1/tasks/task_nope", headers=AUTH)).status == 404


async def test_recover_resends_an_endpoints_failures_of_a_window(
    fast: Settings,
    worker: Worker,
    client: TestClient[Any, Any],
    sink_factory: SinkFactory,
    endpoint_factory: EndpointFactory,
) -> None:
    outage, sink, endpoint, ids = await _dead_lettered(fast, worker, sink_factory, endpoint_factory)
    outage.down = False
    empty = await client.post(
        f"/v1/endpoints/{endpoint.id}/recover", json={"since": "2100-01-01T00:00:00Z"}, headers=AUTH
    )
    assert empty.status == 202
    response = await client.post(
        f"/v1/endpoints/{endpoint.id}/recover", json={"since": "2000-01-01T00:00:00Z"}, headers=AUTH
    )
    assert response.status == 202
    await eventually(lambda: sink.event_ids() == set(ids), timeout=60)
    missing_since = await client.post(f"/v1/endpoints/{endpoint.id}/recover", json={}, headers=AUTH)
    assert missing_since.status == 422
    unknown = await client.post(
        "/v1/endpoints/ep_nope/recover", json={"since": "2000-01-01T00:00:00Z"}, headers=AUTH
    )
    assert unknown.status == 404


async def test_a_redriven_letter_says_so_and_leaves_the_default_list(
    fast: Settings,
    worker: Worker,
    client: TestClient[Any, Any],
    sink_factory: SinkFactory,
    endpoint_factory: EndpointFactory,
) -> None:
    outage, sink, endpoint, ids = await _dead_lettered(fast, worker, sink_factory, endpoint_factory)
    outage.down = False
    message_id = message_id_for(ids[3], endpoint.id)
    before = time.time()
    response = await client.post(f"/v1/dlq/{message_id}/redrive", headers=AUTH)
    assert response.status == 202
    letter_id = (await response.json())["letter_id"]

    open_letters = await _listed(client, f"endpoint_id={endpoint.id}")
    assert len(open_letters) == 11
    assert message_id not in {d["message_id"] for d in open_letters}
    assert all(d["redriven_at"] is None and d["redrive"] is None for d in open_letters)
    every = await _listed(client, f"endpoint_id={endpoint.id}&include=redriven&limit=5")
    assert len(every) == 12
    assert [d["id"] for d in every] == sorted(d["id"] for d in every)  # oldest first
    newest = await _listed(
        client, f"endpoint_id={endpoint.id}&include=redriven&order=newest&limit=5"
    )
    assert [d["id"] for d in newest] == [d["id"] for d in every][::-1]
    (redriven,) = [d for d in every if d["message_id"] == message_id]
    assert redriven["id"] == letter_id
    assert parse_rfc3339(redriven["redriven_at"]).timestamp() >= before - 0.001
    assert redriven["redrive"]["outcome"] in {"pending", "delivered"}
    assert redriven["redrive"]["task_id"].startswith("redrive_")

    await eventually(lambda: ids[3] in sink.event_ids(), timeout=30)

    async def outcome() -> str:
        rows = await _listed(client, f"endpoint_id={endpoint.id}&include=redriven")
        return str(next(d for d in rows if d["message_id"] == message_id)["redrive"]["outcome"])

    await eventually(
        lambda: _is(outcome(), "delivered"), timeout=30, message="outcome never delivered"
    )
    # The filters apply to redriven letters too.
    assert len(await _listed(client, "tenant=acme&include=redriven")) == 12
    assert len(await _listed(client, "tenant=globex&include=redriven")) == 0
    bad = await client.get("/v1/dlq?include=everything", headers=AUTH)
    assert bad.status == 400
    assert "include" in (await bad.json(content_type=None))["detail"]


async def _is(value: Awaitable[str], wanted: str) -> bool:
    return await value == wanted


async def test_a_redrive_by_filter_run_twice_sends_once(
    fast: Settings,
    worker: Worker,
    client: TestClient[Any, Any],
    sink_factory: SinkFactory,
    endpoint_factory: EndpointFactory,
) -> None:
    outage, sink, endpoint, ids = await _dead_lettered(fast, worker, sink_factory, endpoint_factory)
    outage.down = False
    body = {"endpoint_id": endpoint.id, "event_type": "order.paid"}
    # Two at once, then a third after both: every letter is claimed by one of them.
    started = [await (await client.post("/v1/dlq/redrive", json=body, headers=AUTH)).json()]
    started.append(await (await client.post("/v1/dlq/redrive", json=body, headers=AUTH)).json())
    first = [await _finished(client, task) for task in started]
    assert [p["state"] for p in first] == ["done", "done"]
    assert sum(p["redriven"] for p in first) == 6
    again = await _finished(
        client, await (await client.post("/v1/dlq/redrive", json=body, headers=AUTH)).json()
    )
    assert again["state"] == "done"
    assert again["redriven"] == 0
    assert again["skipped"] == 0  # redriven letters are not even looked at

    paid = {e for n, e in enumerate(ids) if n % 2}
    await eventually(lambda: sink.event_ids() == paid, timeout=60)
    delivered = [r for r in sink.recorder.received if r.status < 300]
    assert len(delivered) == 6, "a letter was sent twice"
    assert len(await _listed(client, f"endpoint_id={endpoint.id}")) == 6  # order.shipped's
    assert len(await _listed(client, "event_type=order.paid")) == 0


async def test_the_index_rebuilds_itself_and_remembers_redrives(
    fast: Settings,
    worker: Worker,
    client: TestClient[Any, Any],
    sink_factory: SinkFactory,
    endpoint_factory: EndpointFactory,
) -> None:
    """Soft state: with every DLQ key gone from Redis (a restart, a FLUSHALL), the
    indexer reads `dlq` and `dlq-state` again from their start; the letters are
    back, and the redriven ones are still redriven."""
    outage, _, endpoint, ids = await _dead_lettered(fast, worker, sink_factory, endpoint_factory)
    outage.down = False
    redriven = {message_id_for(ids[n], endpoint.id) for n in (0, 5, 9)}
    for message_id in redriven:
        assert (await client.post(f"/v1/dlq/{message_id}/redrive", headers=AUTH)).status == 202
    before = {d["message_id"]: d["redriven_at"] for d in await _listed(client, "include=redriven")}
    assert len(before) == 12

    redis = Redis.from_url(fast.redis_url)
    try:
        keys = [k async for k in redis.scan_iter(match=f"{fast.topic_prefix}dlq:*")]
        await redis.delete(*keys)
    finally:
        await redis.aclose()

    async def remembered() -> bool:
        rows = await _listed(client, "include=redriven")
        return {d["message_id"]: d["redriven_at"] for d in rows} == before

    await eventually(remembered, timeout=60, message="the index was not rebuilt as it was")
    open_ids = {d["message_id"] for d in await _listed(client, "")}
    assert len(open_ids) == 9
    assert not open_ids & redriven


async def test_a_cancelled_redrive_loses_nothing_and_resumes(settings: Settings) -> None:
    """The API's shutdown cancels running redrives: wherever one was, what it had
    claimed is sent or open again, and a second run sends the rest."""
    redis = Redis.from_url(settings.redis_url)
    producer = AIOKafkaProducer(**producer_options(settings, client_id="test-redrive"))
    await producer.start()
    index = DeadLetterIndex(redis, RedisKeys(settings))
    await index.add([_letter(n) for n in range(3000)])
    try:
        tasks = RedriveTasks(settings, redis, producer)
        await tasks.start_redrive(DeadLetterFilter())
        await asyncio.sleep(0.02)
        await tasks.stop()
        second = RedriveTasks(settings, redis, producer)
        task_id = await second.start_redrive(DeadLetterFilter())
        key = RedisKeys(settings).task(task_id)

        async def done() -> bool:
            return await redis.hget(key, "state") == b"done"

        await eventually(done, timeout=60)
        assert await index.count(OPEN) == 0
        assert await index.count(REDRIVEN) == 3000
        sent = await read_to_end(settings, TopicNames(settings).deliveries)
        assert {dict(r.headers)["event_id"].decode() for r in sent} == {
            f"evt_{n}" for n in range(3000)
        }
        assert len(sent) <= 3000 + 1000  # at most the cancelled chunk again
    finally:
        await producer.stop()
        await redis.aclose()


def _letter(n: int) -> tuple[str, list[tuple[str, bytes]], bytes]:
    task = DeliveryTask(
        message_id=message_id_for(f"evt_{n}", "ep_x"),
        event_id=f"evt_{n}",
        endpoint_id="ep_x",
        tenant="acme",
        event_type="order.paid",
        body=b'{"n":%d}' % n,
    )
    return (
        letter_id(1_764_000_000_000 + n, n % 4, n),
        [*task.headers(), ("reason", b"x")],
        task.body,
    )
