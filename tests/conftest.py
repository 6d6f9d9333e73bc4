"""Fixtures shared by every test: real servers on loopback, polling helpers.

One embedded broker + Valkey pair per test session; each test gets its own
topic prefix (fresh topics and consumer groups), so tests never see each
other's records.
"""

from __future__ import annotations

import asyncio
import inspect
import itertools
import os
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from aiohttp import web, web_app
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.test_utils import TestClient, TestServer
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.coordinator.assignors.range import RangePartitionAssignor
from aiokafka.structs import ConsumerRecord

from hookstream.api import create_app
from hookstream.config import Settings
from hookstream.consumers.worker import Worker
from hookstream.embedded import EmbeddedStack, free_port
from hookstream.engine.destinations import DEV_EGRESS
from hookstream.engine.endpoint import Endpoint, new_endpoint
from hookstream.sink import SinkRecorder, create_sink_app
from hookstream.stacks import every_suspended, suspended_at
from hookstream.topics import TopicNames, ensure_topics
from hookstream.views.registry import EndpointRegistry

ADMIN_KEY = "test-admin-key-0123456789"
AUTH = {"Authorization": f"Bearer {ADMIN_KEY}"}  # the admin key, as a header
# A circuit breaker that never trips, for tests about what happens without it.
NO_CIRCUIT: dict[str, Any] = {"circuit_consecutive_failures": 10**6, "circuit_min_volume": 10**6}
_prefixes = itertools.count()


async def eventually(
    condition: Callable[[], bool | Awaitable[bool]],
    *,
    timeout: float = 60.0,
    interval: float = 0.05,
    message: str | Callable[[], str] = "condition not met",
) -> None:
    """Poll `condition` (plain or async) until true; fail with `message` after `timeout` s."""
    deadline = time.monotonic() + timeout
    while True:
        met = condition()
        if inspect.isawaitable(met):
            met = await met
        if met:
            return
        if time.monotonic() > deadline:
            pytest.fail(message() if callable(message) else message)
        await asyncio.sleep(interval)


async def read_topic(
    settings: Settings, topic: str, expect: int, timeout: float = 60
) -> list[ConsumerRecord[bytes, bytes]]:
    """Every record of `topic` up to its end, once at least `expect` are there.

    Read to the end offsets, not to the first `expect`: a record written beyond
    the ones awaited is in the answer, so counts can be asserted exactly."""
    deadline = time.monotonic() + timeout
    while True:
        consumer = AIOKafkaConsumer(
            topic, bootstrap_servers=settings.bootstrap, auto_offset_reset="earliest"
        )
        await consumer.start()
        records: list[ConsumerRecord[bytes, bytes]] = []
        try:
            for _ in range(100):
                batch = await consumer.getmany(timeout_ms=100)
                records.extend(r for rs in batch.values() for r in rs)
                if len(records) >= expect:
                    return await read_to_end(settings, topic)
        finally:
            await consumer.stop()
        if time.monotonic() > deadline:
            pytest.fail(f"only {len(records)} of {expect} records in {topic}")


async def read_to_end(
    settings: Settings, *topics: str, timeout: float = 60
) -> list[ConsumerRecord[bytes, bytes]]:
    """Every record of `topics` up to their end offsets: none missed, so counts
    can be asserted exactly. The end is the larger of ListOffsets and the fetch
    high watermark (decision 008)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        await consumer.topics()  # metadata for every topic
        tps = [
            TopicPartition(topic, p)
            for topic in topics
            for p in sorted(consumer.partitions_for_topic(topic) or ())
        ]
        assert tps, f"no partitions found for {topics}"
        listed = await consumer.end_offsets(tps)
        tps = [tp for tp in tps if listed[tp] > 0]  # 0 is empty on every broker
        records: list[ConsumerRecord[bytes, bytes]] = []
        if not tps:
            return records
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        deadline = time.monotonic() + timeout

        async def behind(tp: TopicPartition) -> bool:
            high = consumer.highwater(tp)
            return high is None or await consumer.position(tp) < max(listed[tp], high)

        while [tp for tp in tps if await behind(tp)]:
            if time.monotonic() > deadline:
                pytest.fail(f"{topics} not read to their end offsets in {timeout} s")
            batch = await consumer.getmany(timeout_ms=200)
            records.extend(r for rs in batch.values() for r in rs)
        return records
    finally:
        await consumer.stop()


async def write_raw(
    settings: Settings,
    topic: str,
    records: list[tuple[bytes, bytes]],
    partition: int | None = None,
) -> None:
    """Write (key, value) records to `topic` as a foreign producer would, bypassing checks."""
    producer = AIOKafkaProducer(bootstrap_servers=settings.bootstrap)
    await producer.start()
    try:
        for key, value in records:
            await producer.send_and_wait(topic, value, key=key, partition=partition)
    finally:
        await producer.stop()


async def run_until_poisoned(settings: Settings, good: str, sink: Any, poison: int) -> Worker:
    """Run a worker until `good` is delivered to `sink` and `poison` records were dead-lettered."""
    worker = Worker(settings)
    await worker.start()
    try:
        await eventually(lambda: good in sink.event_ids(), timeout=60)
        await eventually(lambda: worker.router.poison == poison, timeout=30)
    finally:
        await worker.stop()
    return worker


@pytest.fixture(autouse=True)
def _release_finished_apps() -> Iterator[None]:
    """Let each test's aiohttp applications be freed when it ends.

    aiohttp keeps every app's middleware chain in a module-level cache of 1,024
    entries, keyed by the app. In a process that serves one app that costs
    nothing; in a test session it kept each test's API app alive, with the
    Kafka clients, views and metadata it holds. The session's memory then grew
    past 3 GB, and each full pass of the collector paused the event loop for
    longer: over a second by the middle of a run, and growing with the heap.
    """
    yield
    web_app._cached_build_middleware.cache_clear()


@pytest.fixture(scope="session")
def stack() -> Iterator[EmbeddedStack]:
    """The embedded broker and Valkey, started once per test session."""
    with EmbeddedStack() as running:
        yield running


def settings_for(stack: EmbeddedStack) -> Settings:
    """Settings pointing at `stack` with a topic prefix no other test uses."""
    base = Settings(
        topic_prefix=f"t{os.getpid()}-{next(_prefixes)}.",
        partitions=4,
        dev_mode=True,
        admin_key=ADMIN_KEY,
        http_timeout_s=5.0,
        commit_interval_ms=200,
        log_level="WARNING",
    )
    return stack.settings(base)


@pytest.fixture
async def settings(stack: EmbeddedStack) -> Settings:
    """Settings pointing at the stack, with topics of this test's own prefix created."""
    configured = settings_for(stack)
    await ensure_topics(configured)
    return configured


@dataclass
class RunningSink:
    """A sink server started for a test."""

    url: str
    recorder: SinkRecorder

    def event_ids(self) -> set[str]:
        """Distinct event ids delivered (answered 2xx)."""
        return {r.event_id for r in self.recorder.received if r.status < 300}


SinkFactory = Callable[..., Awaitable[RunningSink]]


@pytest.fixture
async def sink_factory() -> AsyncIterator[SinkFactory]:
    """Start sinks on free loopback ports; all are stopped after the test."""
    runners: list[web.AppRunner] = []

    async def start(secrets: list[str] | None = None, **options: Any) -> RunningSink:
        recorder = SinkRecorder()
        runner = web.AppRunner(create_sink_app(secrets, recorder, **options), access_log=None)
        await runner.setup()
        port = free_port()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        runners.append(runner)
        return RunningSink(url=f"http://127.0.0.1:{port}/hook", recorder=recorder)

    yield start
    for runner in runners:
        await runner.cleanup()


@pytest.fixture
async def registry(settings: Settings) -> AsyncIterator[EndpointRegistry]:
    """A writable registry, as the API holds one."""
    reg = EndpointRegistry(settings, writable=True)
    await reg.start()
    yield reg
    await reg.stop()


@pytest.fixture
async def fast(settings: Settings) -> Settings:
    """Settings with retries scaled down: four retries 200 ms apart, no jitter, 500 ms floor.

    Retry tests count every attempt of receivers scripted to fail, so the
    circuit breaker stays out of their way here (NO_CIRCUIT); the health tests
    set their own breaker.
    """
    scaled = settings.replace(
        retry_schedule_s="0.2,0.2,0.2,0.2", retry_jitter=0.0, retry_floor_s=0.5, **NO_CIRCUIT
    )
    await ensure_topics(scaled)
    return scaled


@pytest.fixture
async def worker(fast: Settings) -> AsyncIterator[Worker]:
    """A worker running with the scaled-down retries."""
    running = Worker(fast)
    await running.start()
    yield running
    await stop_within(running)


def dispatcher_group_member(settings: Settings) -> AIOKafkaConsumer:
    """A bare member of the dispatcher group (not started, nothing committed): its
    join and its leave are each a rebalance of the workers' dispatchers."""
    return AIOKafkaConsumer(
        bootstrap_servers=settings.bootstrap,
        group_id=TopicNames(settings).dispatcher_group,
        enable_auto_commit=False,
        partition_assignment_strategy=(RangePartitionAssignor,),
        session_timeout_ms=settings.session_timeout_ms,
        heartbeat_interval_ms=settings.heartbeat_interval_ms,
    )


async def stop_within(worker: Worker, timeout: float = 90) -> None:
    """Stop a worker; a stop that hangs fails the test naming where it waits."""
    stopping = asyncio.create_task(worker.stop())
    done, _ = await asyncio.wait({stopping}, timeout=timeout)
    if not done:
        where, tasks = suspended_at(stopping), every_suspended()
        stopping.cancel()
        pytest.fail(f"the worker did not stop within {timeout:g} s; waiting in {where}; {tasks}")
    stopping.result()


@pytest.fixture
async def client(fast: Settings) -> AsyncIterator[TestClient[Any, Any]]:
    """The API on a real socket, with the scaled-down retries' settings."""
    async with TestClient(TestServer(create_app(fast))) as test_client:
        yield test_client


async def slow_down(registry: EndpointRegistry, poll_every_s: float) -> None:
    """Make a registry's tail poll at most every `poll_every_s` (a lagging reader).

    A real consumer, only slowed: tests use it to prove that code which must
    not trust a stale view catches up instead. Returns once the slowed poll is
    in use (the poll that was in flight, up to its 1 s timeout, has ended).
    """
    consumer = registry._consumer
    assert consumer is not None
    fetch = consumer.getmany
    in_use = asyncio.Event()

    async def lagging_getmany(*args: Any, **kwargs: Any) -> Any:
        in_use.set()
        await asyncio.sleep(poll_every_s)
        return await fetch(*args, **kwargs)

    consumer.getmany = lagging_getmany
    async with asyncio.timeout(30):
        await in_use.wait()


EndpointFactory = Callable[..., Awaitable[Endpoint]]


@pytest.fixture
def endpoint_factory(registry: EndpointRegistry) -> EndpointFactory:
    """Register an endpoint (url, tenant, globs) and return it with its secret."""
    return endpoints_in(registry)


def endpoints_in(registry: EndpointRegistry) -> EndpointFactory:
    """An endpoint factory writing to `registry`."""

    async def create(url: str, tenant: str, event_types: list[str], **fields: Any) -> Endpoint:
        endpoint = new_endpoint(
            {"url": url, "tenant": tenant, "event_types": event_types, **fields},
            policy=DEV_EGRESS,
        )
        await registry.put(endpoint)
        return endpoint

    return create


class MappedResolver(AbstractResolver):
    """Test DNS: each name answers the addresses mapped to it (change `answers` to flip)."""

    def __init__(self, answers: dict[str, list[str]]) -> None:
        self.answers = answers

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        """The mapped addresses; OSError for a name not mapped (like NXDOMAIN)."""
        if host not in self.answers:
            raise OSError(f"{host}: name not known")
        return [
            ResolveResult(
                hostname=host,
                host=address,
                port=port,
                family=socket.AF_INET6 if ":" in address else socket.AF_INET,
                proto=0,
                flags=0,
            )
            for address in self.answers[host]
        ]

    async def close(self) -> None:
        """Nothing to release."""


Serve = Callable[[web.Application], Awaitable[str]]


@pytest.fixture
async def serve() -> AsyncIterator[Serve]:
    """Serve receiver apps on free loopback ports (base URL returned); stopped after the test."""
    runners: list[web.AppRunner] = []

    async def start(app: web.Application) -> str:
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        port = free_port()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        runners.append(runner)
        return f"http://127.0.0.1:{port}"

    yield start
    for runner in runners:
        await runner.cleanup()
