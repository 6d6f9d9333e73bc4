"""Odd input gets a 4xx problem+json and the server stays up; nothing is changed silently.

Scenario: a client with a key sends what a parser chokes on: JSON nested
past any sane depth (in event data, endpoint filters, filter dry runs and
event-type schemas), integers wider than 64 bits, bodies in UTF-16,
Authorization headers of raw bytes, request lines and headers past aiohttp's
limits, NULs in headers, DNS labels no resolver can encode. The API runs on a
real socket, served as `hookstream api` serves it. The same limits hold for
EventPublisher and for records written straight to Kafka (dead-lettered with
the reason).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import orjson
import pytest

from hookstream.api import create_app
from hookstream.api.serving import serve_api
from hookstream.config import Settings
from hookstream.egress import GuardedResolver
from hookstream.embedded import free_port
from hookstream.engine.destinations import STRICT_EGRESS
from hookstream.engine.json_input import MAX_DEPTH
from hookstream.errors import InvalidInput
from hookstream.producers import EventPublisher
from hookstream.topics import TopicNames
from tests.conftest import (
    AUTH,
    EndpointFactory,
    SinkFactory,
    read_topic,
    run_until_poisoned,
    write_raw,
)

pytestmark = pytest.mark.integration

PROBLEM = "application/problem+json"


class Api:
    """The API on a real socket, and a session to call it."""

    def __init__(self, base: str, port: int, session: aiohttp.ClientSession) -> None:
        self.base, self.port, self.session = base, port, session

    async def call(self, method: str, path: str, **kwargs: Any) -> tuple[int, str, Any]:
        headers = {**AUTH, **kwargs.pop("headers", {})}
        async with self.session.request(
            method, self.base + path, headers=headers, **kwargs
        ) as response:
            text = await response.text()
            body = orjson.loads(text) if text else None
            return response.status, response.content_type, body

    async def raw(self, request: bytes) -> tuple[int, str, bytes]:
        """Send bytes as they are; the status, content type and body of the answer."""
        reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
        try:
            writer.write(request)
            await writer.drain()
            answer = await asyncio.wait_for(reader.read(), timeout=30)
        finally:
            writer.close()
        head, _, body = answer.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        headers = dict(line.split(": ", 1) for line in lines[1:] if ": " in line)
        content_type = headers.get("Content-Type", "").split(";")[0]
        return int(lines[0].split()[1]), content_type, body

    async def alive(self) -> bool:
        status, _, _ = await self.call("GET", "/v1/endpoints")
        return status == 200


@pytest.fixture
async def api(settings: Settings) -> AsyncIterator[Api]:
    port = free_port()
    runner = await serve_api(create_app(settings), "127.0.0.1", port)
    try:
        async with aiohttp.ClientSession() as session:
            yield Api(f"http://127.0.0.1:{port}", port, session)
    finally:
        await runner.cleanup()


def nested(depth: int, leaf: Any = 1) -> Any:
    """`depth` levels of objects and arrays around `leaf` (the outermost is an object)."""
    value = leaf
    for level in range(depth):
        value = {"k": value} if level % 2 else [value]
    return value if depth % 2 == 0 else {"k": value}


def _event(data: Any) -> dict[str, Any]:
    return {"type": "a.b", "tenant": "acme", "data": data}


def deep_text(depth: int) -> bytes:
    """`depth` levels of arrays as JSON text (no encoder writes a thousand levels)."""
    return b"[" * (depth - 1) + b"[1]" + b"]" * (depth - 1)


@pytest.mark.parametrize("depth", [MAX_DEPTH + 1, 255, 300, 1000])
async def test_deep_nesting_is_refused_on_every_route_that_takes_json(api: Api, depth: int) -> None:
    attempts = [
        ("/v1/events", _event({"deep": "DEEP"})),
        ("/v1/events/batch", {"events": [_event({"deep": "DEEP"})]}),
        (
            "/v1/endpoints",
            {
                "url": "http://127.0.0.1:9/h",
                "tenant": "acme",
                "filter": {"data.x": {"$in": "DEEP"}},
            },
        ),
        ("/v1/filters/test", {"filter": {"data.x": {"$eq": "DEEP"}}}),
        ("/v1/event-types", {"name": "deep.type", "schema": {"properties": {"a": "DEEP"}}}),
    ]
    for path, body in attempts:
        raw = orjson.dumps(body).replace(b'"DEEP"', deep_text(depth))
        status, content_type, answer = await api.call(
            "POST", path, data=raw, headers={"Content-Type": "application/json"}
        )
        assert status == 422, (path, status, answer)
        assert content_type == PROBLEM, path
        assert any("deeper than 64" in e["message"] for e in answer["errors"]), answer
    assert await api.alive()


async def test_json_deeper_than_the_parser_reads_is_a_400(api: Api) -> None:
    raw = b'{"type": "a.b", "tenant": "acme", "data": ' + b"[" * 2000 + b"]" * 2000 + b"}"
    status, content_type, _ = await api.call(
        "POST", "/v1/events", data=raw, headers={"Content-Type": "application/json"}
    )
    assert (status, content_type) == (400, PROBLEM)
    assert await api.alive()


async def test_nesting_at_the_limit_is_accepted_and_kept(api: Api, settings: Settings) -> None:
    # The envelope is one level, `data` one more: data.deep holds MAX_DEPTH - 2 levels.
    data = {"deep": nested(MAX_DEPTH - 2)}
    status, _, answer = await api.call("POST", "/v1/events", json=_event(data))
    assert status == 202, answer
    (record,) = await read_topic(settings, TopicNames(settings).events, 1)
    assert orjson.loads(record.value or b"")["data"] == data


@pytest.mark.parametrize(
    ("number", "field"),
    [
        (2**70, "data.n"),
        (2**64, "data.n"),
        (-(2**63) - 1, "data.n"),
        (-(10**30), "data.n"),
    ],
)
async def test_integers_wider_than_64_bits_are_refused_by_name(
    api: Api, settings: Settings, number: int, field: str
) -> None:
    raw = b'{"type": "a.b", "tenant": "acme", "data": {"n": %d, "s": "%d"}}' % (number, number)
    status, content_type, answer = await api.call(
        "POST", "/v1/events", data=raw, headers={"Content-Type": "application/json"}
    )
    assert (status, content_type) == (422, PROBLEM)
    assert [e["field"] for e in answer["errors"]] == [field]
    assert "64-bit" in answer["errors"][0]["message"]
    nested_raw = b'{"events": [{"type": "a.b", "tenant": "acme", "data": {"a": [1, %d]}}]}' % number
    status, _, answer = await api.call(
        "POST", "/v1/events/batch", data=nested_raw, headers={"Content-Type": "application/json"}
    )
    assert status == 422
    assert [e["field"] for e in answer["errors"]] == ["events[0].data.a[1]"]


async def test_integers_at_the_64_bit_edges_arrive_exactly(api: Api, settings: Settings) -> None:
    raw = (
        b'{"type": "a.b", "tenant": "acme", "data": {"max": 18446744073709551615,'
        b' "min": -9223372036854775808, "digits": "123456789012345678901234567890"}}'
    )
    status, _, answer = await api.call(
        "POST", "/v1/events", data=raw, headers={"Content-Type": "application/json"}
    )
    assert status == 202, answer
    (record,) = await read_topic(settings, TopicNames(settings).events, 1)
    data = orjson.loads(record.value or b"")["data"]
    assert data == {
        "max": 2**64 - 1,
        "min": -(2**63),
        "digits": "123456789012345678901234567890",
    }
    assert b"18446744073709551615" in (record.value or b"")


@pytest.mark.parametrize("charset", ["utf-16", "utf-16-le", "utf-32", "latin-1", "UTF-8"])
async def test_a_body_is_read_in_the_charset_it_names(
    api: Api, settings: Settings, charset: str
) -> None:
    event = _event({"text": "caf\u00e9"})
    body = orjson.dumps(event).decode().encode(charset)
    status, _, answer = await api.call(
        "POST",
        "/v1/events",
        data=body,
        headers={"Content-Type": f"application/json; charset={charset}"},
    )
    assert status == 202, answer
    (record,) = await read_topic(settings, TopicNames(settings).events, 1)
    assert orjson.loads(record.value or b"")["data"] == {"text": "caf\u00e9"}


async def test_an_unknown_or_broken_charset_is_refused(api: Api) -> None:
    body = orjson.dumps(_event({}))
    status, content_type, _ = await api.call(
        "POST",
        "/v1/events",
        data=body,
        headers={"Content-Type": "application/json; charset=x-no-such-charset"},
    )
    assert (status, content_type) == (415, PROBLEM)
    status, content_type, _ = await api.call(
        "POST",
        "/v1/events",
        data=b"\x00\xd8{}",
        headers={"Content-Type": "application/json; charset=utf-16-le"},
    )
    assert (status, content_type) == (400, PROBLEM)
    assert await api.alive()


@pytest.mark.parametrize(
    "token", [b"\xff\xfe\xfd", b"\xc3\x28", "kl\u00fcch".encode(), b"hsk_\xe2\x82\xac_x", b"\x80"]
)
async def test_an_authorization_header_of_raw_bytes_is_a_401(api: Api, token: bytes) -> None:
    request = (
        b"GET /v1/endpoints HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer "
        + token
        + b"\r\nConnection: close\r\n\r\n"
    )
    status, content_type, _ = await api.raw(request)
    assert (status, content_type) == (401, PROBLEM)
    assert await api.alive()


@pytest.mark.parametrize(
    "request_bytes",
    [
        b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\nHost: x\r\n\r\n",  # request line over 8 KiB
        b"GET / HTTP/1.1\r\nHost: x\r\nX-Long: " + b"a" * 9000 + b"\r\n\r\n",  # header over 8 KiB
        b"GET / HTTP/1.1\r\nHost: x\r\nX-Nul: a\x00b\r\n\r\n",  # NUL in a header
        b"GET / HTTP/1.1\r\nHost: x\r\nBad Header: a\r\n\r\n",  # space in a header name
        b"G\x01T / HTTP/1.1\r\nHost: x\r\n\r\n",  # a method that is no token
        b"GET / HTTP/9.9\r\nHost: x\r\n\r\n",  # an unknown version
    ],
)
async def test_what_the_http_parser_refuses_is_problem_json(api: Api, request_bytes: bytes) -> None:
    status, content_type, body = await api.raw(request_bytes)
    assert 400 <= status < 500
    assert content_type == PROBLEM
    assert orjson.loads(body)["status"] == status
    assert await api.alive()


async def test_a_label_no_resolver_can_encode_is_a_failed_lookup_not_a_crash() -> None:
    resolver = GuardedResolver(aiohttp.DefaultResolver(), STRICT_EGRESS)
    with pytest.raises(OSError, match="cannot be looked up"):
        await resolver.resolve("a" * 64 + ".example.com", 443)


@pytest.mark.parametrize("host", ["a" * 64 + ".example.com", "a..example.com", ".example.com"])
async def test_long_or_empty_labels_are_refused_at_registration(api: Api, host: str) -> None:
    body = {"url": f"http://{host}/hook", "tenant": "acme"}
    status, content_type, answer = await api.call("POST", "/v1/endpoints", json=body)
    assert (status, content_type) == (422, PROBLEM)
    assert answer["errors"][0]["field"] == "url"
    assert await api.alive()


@pytest.mark.parametrize("data", [{"n": 2**70}, {"deep": nested(100)}, {"x": float("nan")}])
async def test_the_publisher_refuses_what_the_api_refuses(
    settings: Settings, data: dict[str, Any]
) -> None:
    async with EventPublisher(settings) as publisher:
        with pytest.raises(InvalidInput) as refused:
            await publisher.publish(_event(data))
        assert refused.value.problems[0].field.startswith("data.")
        marker = await publisher.publish(_event({"ok": True}))
    (record,) = await read_topic(settings, TopicNames(settings).events, 1)
    assert orjson.loads(record.value or b"")["id"] == marker


async def test_records_past_the_limits_written_to_kafka_are_dead_lettered(
    settings: Settings, sink_factory: SinkFactory, endpoint_factory: EndpointFactory
) -> None:
    names = TopicNames(settings)
    sink = await sink_factory()
    await endpoint_factory(sink.url, "acme", ["*"])
    wide = b'{"type": "a.b", "tenant": "acme", "data": {"n": 1180591620717411303424}}'
    deep = orjson.dumps(_event({"deep": nested(200)}))
    await write_raw(settings, names.events, [(b"wide", wide), (b"deep", deep)])
    async with EventPublisher(settings) as publisher:
        good = await publisher.publish(_event({"n": 2**64 - 1}))
    await run_until_poisoned(settings, good, sink, poison=2)
    dead = {r.key: r for r in await read_topic(settings, names.dlq, 2)}
    assert set(dead) == {b"wide", b"deep"}
    assert dead[b"wide"].value == wide  # kept as it was written
    assert b"data.n" in dict(dead[b"wide"].headers)["reason"]
    assert b"64-bit" in dict(dead[b"wide"].headers)["reason"]
    assert b"deeper than 64" in dict(dead[b"deep"].headers)["reason"]
    (delivered,) = [r for r in sink.recorder.received if r.event_id == good]
    assert b"18446744073709551615" in delivered.body
