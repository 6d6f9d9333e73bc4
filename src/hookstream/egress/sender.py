"""The HTTP seam: `send(request) -> AttemptResult`, over an injected aiohttp session.

Delivery code does not know more about the destination than this. Every
attempt takes the endpoint URL through `engine.destinations.destination`, the
canonical form the SSRF check judged, and hands aiohttp that URL object, so
the host checked is the host connected to.
"""

from __future__ import annotations

import time

import aiohttp
import yarl
from aiohttp.abc import AbstractResolver

from hookstream import __version__
from hookstream.config import Settings
from hookstream.egress.resolver import GuardedResolver
from hookstream.engine.destinations import EgressPolicy, destination
from hookstream.engine.outcome import AttemptResult, OutgoingRequest
from hookstream.errors import (
    DeliveryError,
    DestinationForbidden,
    EndpointConnectionError,
    EndpointTimeout,
    EndpointUnreachable,
    InvalidInput,
    ResponseTooLarge,
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
        session: aiohttp.ClientSession,
        *,
        timeout_s: float,
        excerpt_bytes: int,
        policy: EgressPolicy,
    ) -> None:
        self._session = session
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._excerpt_bytes = excerpt_bytes
        self._policy = policy

    async def send(self, request: OutgoingRequest) -> AttemptResult:
        """One attempt; every failure becomes an AttemptResult, nothing raises."""
        started = time.perf_counter()
        try:
            target = _target(request.url, self._policy)
            async with self._session.post(
                target,
                data=request.body,
                headers=request.headers,
                allow_redirects=False,
                timeout=self._timeout,
            ) as response:
                if (response.content_length or 0) > DRAIN_LIMIT_BYTES:
                    raise _too_large()
                excerpt = await response.content.read(self._excerpt_bytes)
                if not await _drain(response.content, len(excerpt)):
                    raise _too_large()
                abort = response.headers.get("webhook-delivery", "").lower() == "abort-message"
                return AttemptResult(
                    status=response.status,
                    duration_ms=_ms_since(started),
                    excerpt=excerpt,
                    abort_requested=abort,
                    retry_after=response.headers.get("Retry-After"),
                )
        except TimeoutError as exc:
            error: DeliveryError = EndpointTimeout(str(exc) or "timed out")
        except (DestinationForbidden, ResponseTooLarge) as exc:
            error = exc
        except aiohttp.ClientConnectorError as exc:
            if isinstance(exc.os_error, DestinationForbidden):
                error = exc.os_error
            else:
                error = EndpointUnreachable(str(exc))
        except aiohttp.ClientError as exc:
            error = EndpointConnectionError(f"{type(exc).__name__}: {exc}")
        return AttemptResult(
            status=None,
            duration_ms=_ms_since(started),
            error_class=error.error_class,
            error=str(error)[:500],
            retriable_error=error.retriable,
        )


# Reading the rest of a normal reply keeps the keep-alive connection reusable and
# turns a reply cut off mid-body into a connection error instead of a success.
# Past this many bytes the attempt fails and the connection is dropped unread
# (it is closed on exit), so memory per attempt stays bounded.
DRAIN_LIMIT_BYTES = 1024 * 1024


def _target(url: str, policy: EgressPolicy) -> yarl.URL:
    """The checked URL object to connect to. aiohttp connects to an IP-literal host
    without asking the resolver, so the literal is judged here, on every attempt."""
    try:
        return destination(url, policy).url
    except InvalidInput as exc:
        raise DestinationForbidden("; ".join(p.message for p in exc.problems)) from None


def _too_large() -> ResponseTooLarge:
    return ResponseTooLarge(f"reply body longer than {DRAIN_LIMIT_BYTES} bytes")


async def _drain(content: aiohttp.StreamReader, already: int) -> bool:
    """Read the reply to its end; False if it runs past DRAIN_LIMIT_BYTES."""
    total = already
    while True:
        chunk = await content.read(64 * 1024)
        if not chunk:
            return True
        total += len(chunk)
        if total > DRAIN_LIMIT_BYTES:
            return False


def _ms_since(started: float) -> float:
    return (time.perf_counter() - started) * 1000.0


def build_session(
    settings: Settings, resolver: AbstractResolver | None = None
) -> aiohttp.ClientSession:
    """The one session deliveries share; the caller closes it.

    Keep-alive with a per-host connection cap, a DNS cache, the SSRF-guarded
    resolver (`resolver` replaces the system one under the guard, for tests),
    no cookie jar (receivers must not set state), and no automatic
    decompression (only an excerpt of the reply is kept).
    """
    connector = aiohttp.TCPConnector(
        limit=settings.in_flight,
        limit_per_host=settings.http_connections_per_host,
        ttl_dns_cache=60,
        resolver=GuardedResolver(resolver or aiohttp.DefaultResolver(), settings.egress),
        enable_cleanup_closed=True,
    )
    return aiohttp.ClientSession(
        connector=connector,
        cookie_jar=aiohttp.DummyCookieJar(),
        auto_decompress=False,
        headers={"User-Agent": USER_AGENT},
    )


def build_sender(
    settings: Settings, resolver: AbstractResolver | None = None
) -> tuple[HttpSender, aiohttp.ClientSession]:
    """The sender the worker and the API use, and its session (the caller closes it)."""
    session = build_session(settings, resolver)
    sender = HttpSender(
        session,
        timeout_s=settings.http_timeout_s,
        excerpt_bytes=settings.response_excerpt_bytes,
        policy=settings.egress,
    )
    return sender, session
