"""The HTTP seam: `send(request) -> AttemptResult`, over a pool of keep-alive connections.

Delivery code does not know more about the destination than this. Every
attempt takes the endpoint URL through `engine.destinations.destination`, the
canonical form the SSRF check judged, and connects to exactly that host: an
IP literal as it is, a name only at the addresses the guarded resolver kept.

The wire is our own small HTTP/1.1 client (`pool.py`, `connection.py`, llhttp
for parsing) rather than aiohttp's: a webhook is one POST of a body already
in memory, and aiohttp's general client cost the worker more CPU per attempt
than everything else the attempt does (decision 029).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping

import aiohttp
import yarl
from aiohttp.abc import AbstractResolver

from hookstream import __version__
from hookstream.config import Settings
from hookstream.egress.connection import Reply
from hookstream.egress.deadlines import Deadlines
from hookstream.egress.pool import ConnectionPool, origin_of
from hookstream.egress.resolver import GuardedResolver
from hookstream.engine.destinations import EgressPolicy, destination
from hookstream.engine.outcome import AttemptResult, OutgoingRequest
from hookstream.errors import (
    DeliveryError,
    DestinationForbidden,
    EndpointTimeout,
    InvalidInput,
    RequestRefused,
)

USER_AGENT = f"hookstream/{__version__}"


class HttpSender:
    """POSTs webhooks; never follows redirects; keeps at most `excerpt_bytes` of a reply.

    A reply body longer than DRAIN_LIMIT_BYTES makes the attempt fail
    (`response_too_large`): the receiver is misbehaving, and reading on would
    let it hold a connection and our CPU for as long as it likes.
    """

    def __init__(
        self,
        pool: ConnectionPool,
        *,
        timeout_s: float,
        excerpt_bytes: int,
        policy: EgressPolicy,
    ) -> None:
        self._pool = pool
        self._timeout_s = timeout_s
        self._excerpt_bytes = excerpt_bytes
        self._policy = policy
        self._deadlines = Deadlines()

    async def send(self, request: OutgoingRequest) -> AttemptResult:
        """One attempt; every failure becomes an AttemptResult, nothing raises."""
        started = time.perf_counter()
        try:
            target = _target(request.url, self._policy)
            origin = origin_of(target)
            head = _head(target, request.headers, len(request.body))
            # One deadline for the whole attempt, a wait for a slot and a connect included.
            loop = asyncio.get_running_loop()
            deadline = loop.time() + self._timeout_s
            connection = self._pool.take_idle(origin)
            if connection is None:
                connection = await self._pool.acquire(origin, deadline)
            try:
                reply = await _by(
                    deadline,
                    connection.request(head, request.body, self._excerpt_bytes),
                    self._deadlines,
                    loop,
                )
            except BaseException:
                connection.abort()  # mid-request: never reused
                raise
            finally:
                self._pool.release(origin, connection)
        except TimeoutError:
            error: DeliveryError = EndpointTimeout(f"no reply within {self._timeout_s} s")
        except DeliveryError as exc:
            error = exc
        else:
            delivery = reply.headers.get(b"webhook-delivery", b"")
            retry_after = reply.headers.get(b"retry-after")
            return AttemptResult(
                status=reply.status,
                duration_ms=_ms_since(started),
                excerpt=reply.excerpt,
                abort_requested=delivery.lower() == b"abort-message",
                retry_after=None if retry_after is None else retry_after.decode("latin-1"),
            )
        return AttemptResult(
            status=None,
            duration_ms=_ms_since(started),
            error_class=error.error_class,
            error=str(error)[:500],
            retriable_error=error.retriable,
        )


async def _by(
    deadline: float,
    reply: asyncio.Future[Reply],
    deadlines: Deadlines,
    loop: asyncio.AbstractEventLoop,
) -> Reply:
    """`reply`, or TimeoutError at `deadline` (loop time): the cheaper form of
    `asyncio.timeout` for a future of our own (decisions 032 and 046)."""
    deadlines.watch(reply, deadline, loop)
    try:
        return await reply
    finally:
        deadlines.forget(reply)


# Reading the rest of a normal reply keeps the keep-alive connection reusable and
# turns a reply cut off mid-body into a connection error instead of a success.
# Past this many bytes the attempt fails and the connection is dropped unread,
# so memory per attempt stays bounded.
DRAIN_LIMIT_BYTES = 1024 * 1024


def _target(url: str, policy: EgressPolicy) -> yarl.URL:
    """The checked URL object to connect to. An IP-literal host is connected to
    without asking the resolver, so the literal is judged here, on every attempt."""
    try:
        return destination(url, policy).url
    except InvalidInput as exc:
        raise DestinationForbidden("; ".join(p.message for p in exc.problems)) from None


def _head(url: yarl.URL, headers: Mapping[str, str], length: int) -> bytes:
    """The request line and headers of one POST, ready for the wire.

    A header that would split the request (CR or LF) refuses the attempt: custom
    headers are checked at registration, so one here never came through the API."""
    host = url.raw_host or ""
    if ":" in host:
        host = f"[{host}]"
    if not url.is_default_port():
        host = f"{host}:{url.port}"
    lines = [f"POST {url.raw_path_qs or '/'} HTTP/1.1\r\nHost: {host}"]
    user_agent = False
    for name, value in headers.items():
        user_agent = user_agent or name.lower() == "user-agent"
        lines.append(f"{name}: {value}")
    if not user_agent:
        lines.append(f"User-Agent: {USER_AGENT}")
    lines.append(f"Content-Length: {length}\r\n\r\n")
    text = "\r\n".join(lines)
    breaks = len(lines) + 2  # the ones written above; any other splits the request
    if text.count("\n") != breaks or text.count("\r") != breaks or "\0" in text:
        raise RequestRefused("a header holds a line break")
    return text.encode()


def _ms_since(started: float) -> float:
    return (time.perf_counter() - started) * 1000.0


def build_session(settings: Settings, resolver: AbstractResolver | None = None) -> ConnectionPool:
    """The one pool of connections deliveries share; the caller closes it.

    Keep-alive with a per-host connection cap, a DNS cache, and the SSRF-guarded
    resolver (`resolver` replaces the system one under the guard, for tests).
    """
    return ConnectionPool(
        GuardedResolver(resolver or aiohttp.DefaultResolver(), settings.egress),
        limit_per_host=settings.http_connections_per_host,
        limit_bytes=DRAIN_LIMIT_BYTES,
    )


def build_sender(
    settings: Settings, resolver: AbstractResolver | None = None
) -> tuple[HttpSender, ConnectionPool]:
    """The sender the worker and the API use, and its pool (the caller closes it)."""
    pool = build_session(settings, resolver)
    sender = HttpSender(
        pool,
        timeout_s=settings.http_timeout_s,
        excerpt_bytes=settings.response_excerpt_bytes,
        policy=settings.egress,
    )
    return sender, pool
