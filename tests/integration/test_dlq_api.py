"""Scenario: a receiver down for the whole schedule, then back; operators redrive.

Every message lands in the DLQ with its attempts; the API lists them by filter
in pages; after the receiver recovers, a redrive by filter delivers them all
with their original webhook-ids.
"""

from __future__ import annotations

import asyncio
import gc
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.conn import AIOKafkaConnection
from redis.asyncio import Redis

from hookstream.api.redrive import RedriveTasks
from hookstream.config import Settings
from hookstream.consumers.worker import Worker
from hookstream.engine.delivery import message_id_for
from hookstream.engine.endpoint import Endpoint
from hookstream.kafka import producer_options
from hookstream.producers import EventPublisher
from hookstream.views.dlq import DeadLetterFilter
from tests.conftest import AUTH, EndpointFactory, RunningSink, SinkFactory, eventually

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
    letters = worker.dead_letters
    assert letters is not None
    await eventually(lambda: letters.written == 12, timeout=60, message="not all dead-lettered")
    return outage, sink, endpoint, ids


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
    task = await response.json()

    # Poll the task until it is done, for at most 30 s.
    progress: dict[str, Any] = {}
    for _ in range(300):
        progress = await (await client.get(task["status"], headers=AUTH)).json()
        if progress["state"] == "done":
            break
        await asyncio.sleep(0.1)
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


def _open_client_id(o: object) -> str:
    """The client id of an open aiokafka consumer or connection, else ""."""
    if isinstance(o, AIOKafkaConsumer) and o._closed is False:
        return str(o._client._client_id)
    if isinstance(o, AIOKafkaConnection) and o.connected():
        return str(o._client_id)
    return ""


def _open_dlq_reader_parts() -> list[object]:
    """DLQ readers' consumers and connections still open (only scans use that id)."""
    gc.collect()
    return [o for o in gc.get_objects() if _open_client_id(o).endswith("-dlq-reader")]


async def test_a_redrive_cancelled_at_any_moment_leaves_no_reader_open(settings: Settings) -> None:
    """The API's shutdown cancels running redrives: wherever one was (starting its
    DLQ reader, scanning, writing), its reader is closed, not left to the GC."""
    redis = Redis.from_url(settings.redis_url)
    producer = AIOKafkaProducer(**producer_options(settings, client_id="test-redrive"))
    await producer.start()
    try:
        assert not _open_dlq_reader_parts()
        for step in range(200):
            tasks = RedriveTasks(settings, redis, producer)
            await tasks.start_redrive(DeadLetterFilter())
            # 0-50 ms, a quarter of a millisecond apart: before, inside
            # (aiokafka's bootstrap included) and after the reader's start().
            await asyncio.sleep(step * 0.00025)
            await tasks.stop()
        assert not _open_dlq_reader_parts(), "a cancelled redrive left its reader open"
    finally:
        await producer.stop()
        await redis.aclose()
