"""Internal addresses spelled so that a check and the HTTP client might disagree.

Scenario: an attacker with an API key registers (or PATCHes to) a URL whose
host is loopback or the metadata address written in Unicode digits, other
dots, legacy numeric forms or with a zone id. Strict mode refuses each at
registration and at PATCH with a 422 naming `url`; an endpoint stored before
the check existed is refused on every attempt, test sends and the worker
alike. Delivery-time targets are loopback listeners that count raw TCP
connections, so "not connected" is observed, not assumed.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from hookstream.api import create_app
from hookstream.config import Settings
from hookstream.consumers.worker import Worker
from hookstream.egress import build_sender
from hookstream.engine.destinations import DEV_EGRESS
from hookstream.engine.endpoint import new_endpoint
from hookstream.engine.outcome import OutgoingRequest
from hookstream.producers import EventPublisher
from hookstream.topics import TopicNames
from hookstream.views.registry import EndpointRegistry
from tests.conftest import AUTH, MappedResolver, eventually, read_topic

pytestmark = pytest.mark.integration


# Each means 127.0.0.1 to the HTTP client (yarl's UTS #46 mapping, or the resolver's
# legacy IPv4 reading); `{port}` is a loopback listener's.
LOOPBACK_SPELLINGS = [
    "\U0001fbf1\U0001fbf2\U0001fbf7.0.0.1",  # segmented digits
    "\uff11\uff12\uff17.\uff10.\uff10.\uff11",  # fullwidth digits
    "\u2460\u2461\u2466.0.0.1",  # circled digits
    "\U0001d7d9\U0001d7da\U0001d7df.0.0.1",  # mathematical double-struck
    "127\u30020\u30020\u30021",  # ideographic full stops
    "127\uff0e0\uff0e0\uff0e1",  # fullwidth full stops
    "1\uff12\U0001fbf7\uff61\u24ea.0.1",  # mixed scripts and a halfwidth stop
    "127.0.0.1.",  # trailing dot
    "127.0.0.1\u3002",  # trailing ideographic dot
    "2130706433",
    "0x7f.1",
    "0177.0.0.1",
    "[::ffff:127.0.0.1]",
    "[::ffff:7f00:1]",
    "[::1]",
]
METADATA_SPELLINGS = [
    "\U0001fbf1\U0001fbf6\U0001fbf9.\U0001fbf2\U0001fbf5\U0001fbf4.169.254",
    "\uff11\uff16\uff19.254.169.254",
    "169\u3002254\u3002169\u3002254",
    "0xa9fea9fe",
    "[::ffff:a9fe:a9fe]",
    "[fe80::1%25eth0]",
    "168.63.129.16",
]
NOT_CANONICAL = [
    "%31%32%37.0.0.1",
    "a" * 64 + ".example.com",
    "a..example.com",
    "exa\x0bmple.com",
    "exa\x7fmple.com",
    "999.0.0.1",
]


def _strict(settings: Settings) -> Settings:
    return settings.replace(dev_mode=False, allow_http=True)


@pytest.fixture
async def strict_api(settings: Settings) -> AsyncIterator[TestClient[Any, Any]]:
    app = create_app(_strict(settings), resolver=MappedResolver({"hooks.example": ["8.8.8.8"]}))
    async with TestClient(TestServer(app)) as client:
        yield client


async def _listener() -> tuple[asyncio.Server, int, list[int]]:
    """A loopback TCP listener that counts connections and closes them."""
    connections: list[int] = []

    async def accept(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connections.append(1)
        writer.close()

    server = await asyncio.start_server(accept, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    return server, port, connections


def _url(host: str, port: int) -> str:
    return f"http://{host}:{port}/hook"


async def test_every_spelling_is_refused_at_registration(
    strict_api: TestClient[Any, Any],
) -> None:
    for host in LOOPBACK_SPELLINGS + METADATA_SPELLINGS + NOT_CANONICAL:
        response = await strict_api.post(
            "/v1/endpoints",
            json={"url": _url(host, 9000), "tenant": "acme", "event_types": ["*"]},
            headers=AUTH,
        )
        assert response.status == 422, host
        assert response.content_type == "application/problem+json"
        body = await response.json(content_type=None)
        assert {e["field"] for e in body["errors"]} == {"url"}, host
    listed = await (await strict_api.get("/v1/endpoints", headers=AUTH)).json()
    assert listed["data"] == []


async def test_every_spelling_is_refused_at_patch(strict_api: TestClient[Any, Any]) -> None:
    created = await strict_api.post(
        "/v1/endpoints",
        json={"url": "http://hooks.example/in", "tenant": "acme", "event_types": ["*"]},
        headers=AUTH,
    )
    assert created.status == 201
    endpoint_id = (await created.json())["id"]
    for host in LOOPBACK_SPELLINGS + METADATA_SPELLINGS + NOT_CANONICAL:
        response = await strict_api.patch(
            f"/v1/endpoints/{endpoint_id}", json={"url": _url(host, 80)}, headers=AUTH
        )
        assert response.status == 422, host
        body = await response.json(content_type=None)
        assert body["errors"][0]["field"] == "url", host
    stored = await (await strict_api.get(f"/v1/endpoints/{endpoint_id}", headers=AUTH)).json()
    assert stored["url"] == "http://hooks.example/in"


async def test_the_sender_refuses_every_spelling_on_every_attempt(settings: Settings) -> None:
    server, port, connections = await _listener()
    sender, session = build_sender(_strict(settings))
    try:
        for host in LOOPBACK_SPELLINGS:
            for _ in range(2):
                result = await sender.send(OutgoingRequest(_url(host, port), {}, b"{}"))
                assert result.error_class == "destination_forbidden", host
                assert not result.retriable_error
    finally:
        await session.close()
        server.close()
        await server.wait_closed()
    assert connections == []


# Those the client really connects to when nothing refuses them (aiohttp itself
# rejects some legacy forms, such as 2130706433, as "not a canonical IPv4 address").
REACHES_LOOPBACK = [*LOOPBACK_SPELLINGS[:7], "0x7f.1", "[::ffff:127.0.0.1]", "[::ffff:7f00:1]"]


async def test_the_spellings_do_reach_loopback_when_allowed(settings: Settings) -> None:
    """The control: in dev mode these URLs connect, so the refusals above are real."""
    server, port, connections = await _listener()
    sender, session = build_sender(settings)  # dev mode
    connected = []
    try:
        for host in REACHES_LOOPBACK:
            before = len(connections)
            await sender.send(OutgoingRequest(_url(host, port), {}, b"{}"))
            await eventually(lambda: len(connections) > before, timeout=10)  # noqa: B023
            connected.append(host)
    finally:
        await session.close()
        server.close()
        await server.wait_closed()
    assert connected == REACHES_LOOPBACK


async def test_a_stored_endpoint_spelled_as_loopback_is_dead_lettered_not_connected(
    settings: Settings,
) -> None:
    """An endpoint written before the check (straight to the registry) is refused by the worker."""
    strict = _strict(settings)
    server, port, connections = await _listener()
    registry = EndpointRegistry(strict, writable=True)
    await registry.start()
    worker = Worker(strict)
    try:
        hosts = LOOPBACK_SPELLINGS[:5]
        for host in hosts:
            endpoint = new_endpoint(
                {"url": _url(host, port), "tenant": "acme", "event_types": ["*"]},
                policy=DEV_EGRESS,
            )
            await registry.put(endpoint)
        await worker.start()
        async with EventPublisher(strict) as publisher:
            await publisher.publish({"type": "invoice.paid", "tenant": "acme", "data": {}})
        dead = await read_topic(strict, TopicNames(strict).dlq, len(hosts))
        reasons = [dict(r.headers)["reason"].decode() for r in dead]
        assert len(reasons) == len(hosts)
        assert all("destination_forbidden" in reason for reason in reasons), reasons
    finally:
        await worker.stop()
        await registry.stop()
        server.close()
        await server.wait_closed()
    assert connections == []
