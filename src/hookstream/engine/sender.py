"""The HTTP seam: `send(request) -> AttemptResult`, over an injected aiohttp session.

Delivery code does not know more about the destination than this. The session
(keep-alive, per-host limits, guarded resolver) is built by the caller.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

import aiohttp

from hookstream.engine.destinations import EgressPolicy, numeric_host
from hookstream.engine.outcome import AttemptResult
from hookstream.errors import (
    DeliveryError,
    DestinationForbidden,
    EndpointConnectionError,
    EndpointTimeout,
    EndpointUnreachable,
    ResponseTooLarge,
)


@dataclass(frozen=True, slots=True)
class OutgoingRequest:
    """A signed webhook ready to POST."""

    url: str
    headers: Mapping[str, str]
    body: bytes


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
            if not self._policy.allow_private:
                _refuse_internal_literal(request.url, self._policy)
            async with self._session.post(
                request.url,
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


@functools.lru_cache(maxsize=4096)
def _internal_literal(url: str, policy: EgressPolicy) -> str | None:
    host = urlsplit(url).hostname
    numeric = numeric_host(host) if host else None
    return numeric if numeric is not None and not policy.permits(numeric) else None


def _refuse_internal_literal(url: str, policy: EgressPolicy) -> None:
    """aiohttp connects to an IP-literal host without asking the resolver, so
    GuardedResolver never sees it: check it here, on every attempt."""
    internal = _internal_literal(url, policy)
    if internal is not None:
        raise DestinationForbidden(f"{internal} is not a public address")


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
