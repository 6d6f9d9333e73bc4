"""The sender's own HTTP/1.1 client against raw loopback servers: framing, keep-alive,
per-host caps and cancels, on asyncio's loop and on uvloop (the worker's)."""

from __future__ import annotations

import asyncio
import socket
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import aiohttp
import pytest
import uvloop

from hookstream.config import Settings
from hookstream.egress import build_session
from hookstream.egress.pool import ConnectionPool
from hookstream.egress.resolver import GuardedResolver
from hookstream.egress.sender import HttpSender
from hookstream.engine.destinations import DEV_EGRESS
from hookstream.engine.outcome import AttemptResult, OutgoingRequest
from tests.certificates import certificates

pytestmark = pytest.mark.integration

Reply = Callable[[bytes], Awaitable[bytes | None]]  # request head → raw reply (None: say nothing)


class Receiver:
    """A raw HTTP server on loopback: counts connections and keeps each request head."""

    def __init__(
        self, reply: Reply, host: str = "127.0.0.1", tls: ssl.SSLContext | None = None
    ) -> None:
        self._reply = reply
        self._host = host
        self._tls = tls
        self.connections = 0
        self.open = 0
        self.most_open = 0
        self.heads: list[bytes] = []
        self.bodies: list[bytes] = []
        self._server: asyncio.Server | None = None
        self._writers: list[asyncio.StreamWriter] = []

    async def __aenter__(self) -> str:
        self._server = await asyncio.start_server(self._serve, self._host, 0, ssl=self._tls)
        port = self._server.sockets[0].getsockname()[1]
        host = f"[{self._host}]" if ":" in self._host else self._host
        scheme = "https" if self._tls else "http"
        return f"{scheme}://{host}:{port}/hook?x=1"

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        for writer in self._writers:
            writer.transport.abort()
        await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.append(writer)
        self.connections += 1
        self.open += 1
        self.most_open = max(self.most_open, self.open)
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = next(
                    int(line.split(b":")[1])
                    for line in head.split(b"\r\n")
                    if line.lower().startswith(b"content-length:")
                )
                self.heads.append(head)
                self.bodies.append(await reader.readexactly(length))
                reply = await self._reply(head)
                if reply is None:
                    break
                writer.write(reply)
                await writer.drain()
                if b"connection: close" in reply.lower() or reply.startswith(b"HTTP/1.0"):
                    break
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.CancelledError):
            pass
        finally:
            self.open -= 1
            writer.close()


def fixed(raw: bytes) -> Reply:
    async def reply(_: bytes) -> bytes:
        return raw

    return reply


NO_CONTENT = fixed(b"HTTP/1.1 204 No Content\r\n\r\n")


def held_until(gate: asyncio.Event) -> Reply:
    """204 No Content, once `gate` is set."""

    async def reply(_: bytes) -> bytes:
        await gate.wait()
        return b"HTTP/1.1 204 No Content\r\n\r\n"

    return reply


@pytest.fixture
async def pool() -> AsyncIterator[ConnectionPool]:
    async with build_session(Settings(dev_mode=True)) as pool:
        yield pool


def sender_for(pool: ConnectionPool, *, timeout_s: float = 2.0, excerpt: int = 64) -> HttpSender:
    return HttpSender(pool, timeout_s=timeout_s, excerpt_bytes=excerpt, policy=DEV_EGRESS)


def request(
    url: str, body: bytes = b'{"n":1}', headers: dict[str, str] | None = None
) -> OutgoingRequest:
    return OutgoingRequest(
        url=url, headers={"content-type": "application/json", **(headers or {})}, body=body
    )


async def test_one_connection_is_reused_and_the_request_is_whole(pool: ConnectionPool) -> None:
    receiver = Receiver(NO_CONTENT)
    async with receiver as url:
        sender = sender_for(pool)
        for n in range(3):
            assert (await sender.send(request(url, b"%d" % n, {"webhook-id": "msg_1"}))).ok
    assert receiver.connections == 1
    assert receiver.bodies == [b"0", b"1", b"2"]
    head = receiver.heads[0].decode()
    port = url.split(":")[2].split("/")[0]
    assert head.startswith("POST /hook?x=1 HTTP/1.1\r\n")
    assert f"\r\nHost: 127.0.0.1:{port}\r\n" in head
    assert "\r\nwebhook-id: msg_1\r\n" in head
    assert "\r\nContent-Length: 1\r\n" in head
    assert "\r\nUser-Agent: hookstream/" in head


async def test_an_ipv6_literal_is_sent_with_brackets_in_host() -> None:
    with socket.socket(socket.AF_INET6) as probe:
        try:
            probe.bind(("::1", 0))
        except OSError:
            pytest.skip("this machine has no IPv6 loopback")
    receiver = Receiver(NO_CONTENT, host="::1")
    async with build_session(Settings(dev_mode=True)) as pool, receiver as url:
        assert (await sender_for(pool).send(request(url))).status == 204
    assert b"\r\nHost: [::1]:" in receiver.heads[0]


@pytest.mark.parametrize(
    ("raw", "status", "excerpt"),
    [
        (b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello", 200, b"hello"),
        (
            b"HTTP/1.1 201 Created\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"3\r\nabc\r\n4\r\ndefg\r\n0\r\n\r\n",
            201,
            b"abcdefg",
        ),
        (
            b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 202 Accepted\r\nContent-Length: 2\r\n\r\nok",
            202,
            b"ok",
        ),
        (b"HTTP/1.0 200 OK\r\n\r\nuntil the end", 200, b"until the end"),
        (b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nclosed after", 200, b"closed after"),
        (b"HTTP/1.1 503 Busy\r\nRetry-After: 7\r\nContent-Length: 0\r\n\r\n", 503, b""),
    ],
    ids=[
        "content-length",
        "chunked",
        "interim-100",
        "http10-until-close",
        "close-until-eof",
        "503",
    ],
)
async def test_each_framing_gives_status_and_excerpt(
    pool: ConnectionPool, raw: bytes, status: int, excerpt: bytes
) -> None:
    async def reply_then_close(_: bytes) -> bytes | None:
        return raw

    async with Receiver(reply_then_close) as url:
        sender = sender_for(pool)
        first = await sender.send(request(url))
        second = await sender.send(request(url))  # on the same or a new connection
    for result in (first, second):
        assert (result.status, result.excerpt, result.error_class) == (status, excerpt, None)
    if status == 503:
        assert first.retry_after == "7"


async def test_a_receiver_that_closes_without_answering_is_a_connection_error(
    pool: ConnectionPool,
) -> None:
    async def hang_up(_: bytes) -> None:
        return None

    async with Receiver(hang_up) as url:
        result = await sender_for(pool).send(request(url))
    assert (result.status, result.error_class, result.retriable_error) == (
        None,
        "connection_error",
        True,
    )


async def test_a_malformed_reply_is_a_connection_error(pool: ConnectionPool) -> None:
    async with Receiver(fixed(b"SMTP ready\r\n\r\n")) as url:
        result = await sender_for(pool).send(request(url))
    assert result.error_class == "connection_error"
    assert "malformed reply" in result.error


@pytest.mark.parametrize("value", ["a\r\nx-injected: 1", "a\nb", "a\rb", "a\0b"])
async def test_a_header_that_would_split_the_request_is_refused_unsent(
    pool: ConnectionPool, value: str
) -> None:
    receiver = Receiver(NO_CONTENT)
    async with receiver as url:
        result = await sender_for(pool).send(request(url, headers={"x-custom": value}))
    assert (result.status, result.error_class, result.retriable_error) == (
        None,
        "request_refused",
        False,
    )
    assert receiver.heads == []


async def test_the_per_host_cap_bounds_open_connections() -> None:
    gate = asyncio.Event()
    held = held_until(gate)
    receiver = Receiver(held)
    async with (
        build_session(Settings(dev_mode=True, http_connections_per_host=2)) as pool,
        receiver as url,
    ):
        sender = sender_for(pool, timeout_s=10)
        sends = [asyncio.ensure_future(sender.send(request(url))) for _ in range(6)]
        await _until(lambda: receiver.open == 2)
        await asyncio.sleep(0.1)  # a third connection would have opened by now
        assert receiver.open == 2
        gate.set()
        results = await asyncio.gather(*sends)
    assert [r.status for r in results] == [204] * 6
    assert receiver.most_open == 2


async def test_cancelled_sends_give_their_slots_back() -> None:
    gate = asyncio.Event()
    held = held_until(gate)
    async with (
        build_session(Settings(dev_mode=True, http_connections_per_host=1)) as pool,
        Receiver(held) as url,
    ):
        sender = sender_for(pool, timeout_s=10)
        in_flight = asyncio.ensure_future(sender.send(request(url)))
        waiting = [asyncio.ensure_future(sender.send(request(url))) for _ in range(3)]
        await asyncio.sleep(0.1)
        for task in (in_flight, *waiting):
            task.cancel()
        await asyncio.gather(in_flight, *waiting, return_exceptions=True)
        gate.set()
        result = await asyncio.wait_for(sender.send(request(url)), 5)
    assert result.status == 204


async def test_a_wait_for_a_connection_counts_in_the_attempts_timeout() -> None:
    # One connection, held by a receiver that answers the first request late:
    # those queued behind it time out at their own deadlines, in the pool, and
    # their places go; once the held one is answered, the next send works.
    gate = asyncio.Event()
    held = held_until(gate)
    receiver = Receiver(held)
    async with (
        build_session(Settings(dev_mode=True, http_connections_per_host=1)) as pool,
        receiver as url,
    ):
        holder = asyncio.ensure_future(sender_for(pool, timeout_s=10).send(request(url)))
        await _until(lambda: receiver.open == 1)
        loop = asyncio.get_running_loop()
        started = loop.time()
        queued = [sender_for(pool, timeout_s=t).send(request(url)) for t in (0.3, 0.6, 0.9)]
        timed_out = []
        for result in asyncio.as_completed(queued):
            timed_out.append(((await result).error_class, round(loop.time() - started, 1)))
        assert [e for e, _ in timed_out] == ["timeout"] * 3
        assert all(0.2 <= t <= 1.5 for _, t in timed_out)
        assert [t for _, t in timed_out] == sorted(t for _, t in timed_out)
        assert not pool._waiters  # nobody left in line
        gate.set()
        assert (await asyncio.wait_for(holder, 5)).status == 204
        after = await asyncio.wait_for(sender_for(pool).send(request(url)), 5)
    assert after.status == 204
    assert receiver.most_open == 1


async def test_a_timeout_mid_reply_drops_the_connection_and_the_next_attempt_works() -> None:
    calls = 0

    async def slow_once(_: bytes) -> bytes:
        nonlocal calls
        calls += 1
        if calls == 1:
            await asyncio.sleep(3)
        return b"HTTP/1.1 204 No Content\r\n\r\n"

    receiver = Receiver(slow_once)
    async with build_session(Settings(dev_mode=True)) as pool, receiver as url:
        sender = sender_for(pool, timeout_s=0.5)
        first = await sender.send(request(url))
        second = await sender.send(request(url))
    assert first.error_class == "timeout"
    assert second.status == 204
    assert receiver.connections == 2  # the timed-out connection was not reused


async def test_tls_is_verified_against_the_trust_store(tmp_path: Path) -> None:
    files = certificates(tmp_path)
    server_tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_tls.load_cert_chain(files["cert"], files["key"])
    receiver = Receiver(NO_CONTENT, tls=server_tls)
    async with receiver as url:
        # The system's trust store does not know this CA: refused before any request.
        async with build_session(Settings(dev_mode=True)) as pool:
            refused = await sender_for(pool).send(request(url))
        assert (refused.error_class, refused.retriable_error) == ("unreachable", True)
        assert "CERTIFICATE_VERIFY_FAILED" in refused.error
        assert receiver.heads == []
        trusting = ssl.create_default_context(cafile=str(files["ca"]))
        async with ConnectionPool(
            GuardedResolver(aiohttp.DefaultResolver(), DEV_EGRESS),
            limit_per_host=4,
            limit_bytes=1024,
            ssl_context=trusting,
        ) as pool:
            delivered = await sender_for(pool).send(request(url))
    assert delivered.status == 204
    assert len(receiver.heads) == 1


def test_the_sender_works_on_uvloop() -> None:
    """The worker runs uvloop, whose transports are not asyncio's classes."""

    async def main() -> tuple[list[AttemptResult], int]:
        receiver = Receiver(fixed(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"))
        async with build_session(Settings(dev_mode=True)) as pool, receiver as url:
            sender = sender_for(pool)
            results = list(await asyncio.gather(*(sender.send(request(url)) for _ in range(20))))
        return results, receiver.connections

    results, connections = uvloop.run(main())
    assert [(r.status, r.excerpt) for r in results] == [(200, b"ok")] * 20
    assert 1 <= connections <= 20


async def _until(condition: Callable[[], bool], within_s: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + within_s
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)
