"""Faults: receivers that misbehave at the socket level.

Each is a raw TCP server on loopback playing one misbehaviour; each attempt
against it ends as a failed attempt with a clear error class, within the
timeout, with memory bounded. (Answering slower than the timeout, closing
mid-response and redirecting to an internal address are in
tests/integration/test_sender.py.)
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import tracemalloc
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from hookstream.config import Settings
from hookstream.egress import build_session
from hookstream.egress.sender import DRAIN_LIMIT_BYTES, HttpSender
from hookstream.engine.destinations import DEV_EGRESS
from hookstream.engine.outcome import OutgoingRequest

pytestmark = pytest.mark.integration

TIMEOUT_S = 1.0
# Ended by this timeout, not another: at least TIMEOUT_S, and far below the
# 15 s default, with room for a loaded machine's late timers.
ENDED_BY_TIMEOUT = (TIMEOUT_S - 0.05, TIMEOUT_S + 4)
MIB = 1024 * 1024

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


class RawServer:
    """A TCP server running `handler` per connection; counts the bytes it wrote."""

    def __init__(self, handler: Handler) -> None:
        self._handler = handler
        self.written = 0
        self.server: asyncio.Server | None = None
        self._writers: list[asyncio.StreamWriter] = []

    async def __aenter__(self) -> str:
        async def run(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            self._writers.append(writer)
            with contextlib.suppress(ConnectionError, asyncio.CancelledError):
                await _read_request(reader)
                await self._handler(reader, writer)
            writer.close()

        self.server = await asyncio.start_server(run, "127.0.0.1", 0)
        port = self.server.sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}/hook"

    async def __aexit__(self, *exc: object) -> None:
        assert self.server is not None
        self.server.close()
        # Connections still open (a handler waiting forever) are aborted.
        for writer in self._writers:
            writer.transport.abort()
        await self.server.wait_closed()

    async def write(self, writer: asyncio.StreamWriter, data: bytes) -> None:
        writer.write(data)
        await writer.drain()
        self.written += len(data)


async def _read_request(reader: asyncio.StreamReader) -> None:
    head = await reader.readuntil(b"\r\n\r\n")
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            await reader.readexactly(int(line.split(b":")[1]))


@pytest.fixture
async def sender() -> AsyncIterator[HttpSender]:
    async with build_session(Settings(dev_mode=True)) as session:
        yield HttpSender(session, timeout_s=TIMEOUT_S, excerpt_bytes=4096, policy=DEV_EGRESS)


def _request(url: str) -> OutgoingRequest:
    return OutgoingRequest(url=url, headers={"content-type": "application/json"}, body=b"{}")


async def test_a_receiver_that_accepts_and_never_answers_is_a_timeout(sender: HttpSender) -> None:
    async def silent(reader: asyncio.StreamReader, _: asyncio.StreamWriter) -> None:
        await reader.read()  # until the client gives up and closes

    async with RawServer(silent) as url:
        started = time.monotonic()
        result = await sender.send(_request(url))
    assert (result.ok, result.status, result.error_class) == (False, None, "timeout")
    took = time.monotonic() - started
    assert ENDED_BY_TIMEOUT[0] <= took < ENDED_BY_TIMEOUT[1], took


async def test_a_reply_dribbled_byte_by_byte_is_cut_at_the_timeout(sender: HttpSender) -> None:
    reply = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
    server: RawServer

    async def dribble(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        for byte in reply:
            await server.write(writer, bytes([byte]))
            await asyncio.sleep(0.1)

    server = RawServer(dribble)
    async with server as url:
        started = time.monotonic()
        result = await sender.send(_request(url))
    assert (result.ok, result.error_class) == (False, "timeout")
    took = time.monotonic() - started
    assert ENDED_BY_TIMEOUT[0] <= took < ENDED_BY_TIMEOUT[1], took
    assert server.written < len(reply), "the whole reply arrived: nothing was cut"


@pytest.mark.parametrize(
    ("header", "size"),
    [(b"Content-Length: %d" % (50 * MIB), 50 * MIB), (b"Transfer-Encoding: chunked", 100 * MIB)],
    ids=["50MB-content-length", "100MB-chunked"],
)
async def test_a_huge_reply_body_fails_the_attempt_with_memory_bounded(
    sender: HttpSender, header: bytes, size: int
) -> None:
    chunked = b"chunked" in header
    server: RawServer

    async def flood(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await server.write(writer, b"HTTP/1.1 200 OK\r\n" + header + b"\r\n\r\n")
        block = b"x" * (256 * 1024)
        frame = b"%x\r\n%s\r\n" % (len(block), block) if chunked else block
        while server.written < size:
            await server.write(writer, frame)

    server = RawServer(flood)
    tracemalloc.start()
    try:
        async with server as url:
            result = await sender.send(_request(url))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert (result.ok, result.status, result.error_class) == (False, None, "response_too_large")
    assert "longer than" in (result.error or "")
    assert peak < 8 * MIB, f"peak traced memory {peak / MIB:.1f} MiB for one reply"
    # The connection was dropped: the receiver could not push the whole body.
    assert server.written < size / 2
    assert result.duration_ms < TIMEOUT_S * 1000


async def test_a_reply_under_the_limit_is_read_to_its_end(sender: HttpSender) -> None:
    body = b"y" * (DRAIN_LIMIT_BYTES - 10)
    server: RawServer

    async def big_but_fine(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await server.write(writer, b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(body))
        await server.write(writer, body)

    server = RawServer(big_but_fine)
    async with server as url:
        result = await sender.send(_request(url))
    assert (result.ok, result.status, result.error_class) == (True, 200, None)
    assert result.excerpt == body[:4096]
