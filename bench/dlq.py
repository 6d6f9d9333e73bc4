"""The DLQ at scale: page times and a filtered redrive's start with a million letters.

    .venv/bin/hookstream bench --scenario dlq [--dlq-letters 1000000]

The index is filled through `DeadLetterIndex.add`, the call the indexer makes
once per fetched batch, so a million letters need not sit in the embedded
broker's memory first; the indexer's own rate from the topic is measured on
`TOPIC_LETTERS` letters written to `dlq`. Pages are read through the API over
HTTP, as an operator's client reads them.
"""

from __future__ import annotations

import asyncio
import os
import time
from typing import Any

import aiohttp
from aiohttp import web
from aiokafka import AIOKafkaProducer
from redis.asyncio import Redis

from bench.common import p50_p99
from bench.harness import Servers, cluster_security
from hookstream.api import create_app
from hookstream.config import Settings
from hookstream.consumers.dead_letter_index import DeadLetterIndexer
from hookstream.embedded import free_port
from hookstream.engine.delivery import DeliveryTask, message_id_for
from hookstream.engine.letters import letter_id
from hookstream.kafka import producer_options
from hookstream.redis_keys import RedisKeys
from hookstream.topics import TopicNames, ensure_topics
from hookstream.views.dlq_index import DeadLetterIndex

ENDPOINTS = 100  # so one endpoint's letters are 1% of them: 10,000 of a million
TENANTS = 10
TYPES = 20
SPAN_MS = 30 * 24 * 3600 * 1000  # letters spread over the default 30-day retention
TOPIC_LETTERS = 20_000
SAMPLES = 40
KEY = "bench-dlq-admin-key-0123456789"


def _letter(n: int, total: int, t0: int) -> tuple[str, list[tuple[str, bytes]], bytes]:
    endpoint = f"ep_{n % ENDPOINTS}"
    task = DeliveryTask(
        message_id=message_id_for(f"evt_{n}", endpoint),
        event_id=f"evt_{n}",
        endpoint_id=endpoint,
        tenant=f"tenant_{n % TENANTS}",
        event_type=f"order.e{n % TYPES}",
        body=b'{"type":"order.e%d","timestamp":"2026-12-01T00:00:00Z","data":{"n":%d,"pad":"%s"}}'
        % (n % TYPES, n, b"x" * 120),
        attempt=8,
        history=b'[{"attempt":8,"started_at":1764547200.0,"duration_ms":4.1,'
        b'"outcome":"dead","status":503}]',
    )
    headers = [*task.headers(), ("reason", b"attempts exhausted (8)")]
    return letter_id(t0 + n * SPAN_MS // total, n % 12, n // 12), headers, task.body


async def _timed(session: aiohttp.ClientSession, url: str) -> tuple[float, dict[str, Any]]:
    started = time.perf_counter()
    async with session.get(url) as response:
        body: dict[str, Any] = await response.json()
        if response.status != 200:
            raise SystemExit(f"dlq bench: {url} answered {response.status}: {body}")
    return (time.perf_counter() - started) * 1000, body


async def _page_ms(session: aiohttp.ClientSession, url: str) -> dict[str, float | None]:
    return p50_p99([(await _timed(session, url))[0] for _ in range(SAMPLES)])


async def _indexer_rate(settings: Settings, redis: Redis) -> float:
    """Letters/s the indexer takes from the `dlq` topic into Redis."""
    producer = AIOKafkaProducer(**producer_options(settings, client_id="bench-dlq"))
    await producer.start()
    try:
        names = TopicNames(settings)
        t0 = int(time.time() * 1000)
        for n in range(TOPIC_LETTERS):
            _, headers, body = _letter(n, TOPIC_LETTERS, t0)
            await producer.send(names.dlq, value=body, key=b"ep", headers=headers)
        await producer.flush()
    finally:
        await producer.stop()
    indexer = DeadLetterIndexer(settings, redis)
    started = time.perf_counter()
    await indexer.start()
    try:
        deadline = time.monotonic() + 300
        while indexer.indexed < TOPIC_LETTERS:
            if time.monotonic() > deadline or indexer.failure is not None:
                raise SystemExit(f"dlq bench: indexed {indexer.indexed} of {TOPIC_LETTERS}")
            await asyncio.sleep(0.05)
        return TOPIC_LETTERS / (time.perf_counter() - started)
    finally:
        await indexer.stop()


async def run(where: Servers, *, letters: int) -> dict[str, Any]:
    """Fill the index with `letters`, then time pages and a 1% redrive through the API."""
    settings = Settings(
        bootstrap=where.bootstrap,
        redis_url=where.redis_url,
        topic_prefix=f"benchdlq{os.getpid()}.",
        partitions=12,
        replication_factor=1,
        dev_mode=True,
        admin_key=KEY,
        log_level="WARNING",
        producer_idempotence=not where.embedded,
        # As the other scenarios: the embedded broker always waits this long (decision 006).
        fetch_max_wait_ms=20 if where.embedded else 500,
        **cluster_security(where),
    )
    redis_url = where.redis_url
    await ensure_topics(settings)
    redis = Redis.from_url(redis_url)
    index = DeadLetterIndex(redis, RedisKeys(settings))
    try:
        indexer_per_s = await _indexer_rate(settings, redis)
        settings = settings.replace(topic_prefix=settings.topic_prefix + "big.")
        await ensure_topics(settings)
        index = DeadLetterIndex(redis, RedisKeys(settings))
        memory_before = int((await redis.info("memory"))["used_memory"])
        t0 = int(time.time() * 1000) - SPAN_MS
        started = time.perf_counter()
        for first in range(0, letters, 2000):
            await index.add(
                [_letter(n, letters, t0) for n in range(first, min(letters, first + 2000))]
            )
        fill_s = time.perf_counter() - started
        memory = int((await redis.info("memory"))["used_memory"]) - memory_before
        return {
            "scenario": "dlq",
            "letters": letters,
            "index_fill_per_s": round(letters / fill_s),
            "indexer_from_topic_per_s": round(indexer_per_s),
            "redis_bytes_per_letter": round(memory / letters),
            **await _through_the_api(settings, letters, t0),
        }
    finally:
        await redis.aclose()


async def _through_the_api(settings: Settings, letters: int, t0: int) -> dict[str, Any]:
    runner = web.AppRunner(create_app(settings), access_log=None)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    base = f"http://127.0.0.1:{port}"
    try:
        async with aiohttp.ClientSession(
            base_url=base, headers={"Authorization": f"Bearer {KEY}"}
        ) as session:
            middle = letter_id(t0 + SPAN_MS // 2, 0, 0)
            window = "since=" + _rfc(t0 + SPAN_MS // 3) + "&until=" + _rfc(t0 + SPAN_MS // 2)
            pages = {
                "first": "/v1/dlq?limit=50",
                "deep": f"/v1/dlq?limit=50&after={middle}",
                "endpoint": "/v1/dlq?limit=50&endpoint_id=ep_7",
                "tenant_and_type": "/v1/dlq?limit=50&tenant=tenant_3&event_type=order.e13",
                "window": f"/v1/dlq?limit=50&endpoint_id=ep_7&{window}",
                "rare_pair": "/v1/dlq?limit=50&tenant=tenant_3&event_type=order.e4",
            }
            figures: dict[str, Any] = {}
            for name, url in pages.items():
                timing = await _page_ms(session, url)
                figures[f"page_{name}_p50_ms"] = timing["p50"]
                figures[f"page_{name}_p99_ms"] = timing["p99"]
            figures.update(await _redrive(session, expected=letters // ENDPOINTS))
            return figures
    finally:
        await runner.cleanup()


async def _redrive(session: aiohttp.ClientSession, *, expected: int) -> dict[str, Any]:
    """Redrive one endpoint's letters (1%): when the first chunk was sent, and the whole."""
    started = time.perf_counter()
    async with session.post("/v1/dlq/redrive", json={"endpoint_id": "ep_7"}) as response:
        task = await response.json()
    first_s = None
    while True:
        async with session.get(task["status"]) as response:
            progress = await response.json()
        if first_s is None and progress["redriven"] > 0:
            first_s = time.perf_counter() - started
        if progress["state"] != "running":
            break
        if time.perf_counter() - started > 600:
            raise SystemExit("dlq bench: the redrive ran over 10 minutes")
        await asyncio.sleep(0.01)
    if progress["state"] != "done" or progress["redriven"] != expected:
        raise SystemExit(f"dlq bench: the redrive ended {progress}, expected {expected}")
    return {
        "redrive_letters": expected,
        "redrive_first_chunk_s": round(first_s or 0.0, 3),
        "redrive_all_s": round(time.perf_counter() - started, 2),
    }


def _rfc(ms: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ms / 1000))
