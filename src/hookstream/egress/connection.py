"""One keep-alive HTTP/1.1 connection to a receiver: write a request, read its reply.

The reply is parsed by llhttp (through `httptools`), the parser Node.js uses,
so framing (Content-Length, chunked, read-until-close) follows the spec and
not our reading of it. What is kept of a reply is what an attempt needs: the
status, an excerpt of the body, `webhook-delivery` and `Retry-After`. The body
is read to its end, so the connection can be used again, unless it runs past
`limit_bytes`: then the connection is dropped unread (decision 014).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import cast

import httptools

from hookstream.engine.values import direct_init
from hookstream.errors import DeliveryError, EndpointConnectionError, ResponseTooLarge

# The reply headers an attempt reads, lower case; every other header is skipped.
_KEPT = frozenset({b"webhook-delivery", b"retry-after", b"content-length"})


@direct_init
@dataclass(frozen=True, slots=True)
class Reply:
    """A receiver's whole answer to one request."""

    status: int
    excerpt: bytes
    headers: dict[bytes, bytes]  # the kept ones, names in lower case


class Http1Connection(asyncio.Protocol):
    """A connection that carries one request at a time (no pipelining)."""

    def __init__(self, *, limit_bytes: int) -> None:
        self._excerpt_bytes = 0
        self._limit_bytes = limit_bytes
        self._transport: asyncio.Transport | None = None
        self._parser = httptools.HttpResponseParser(self)
        self._waiter: asyncio.Future[Reply] | None = None
        self._status = 0
        self._headers: dict[bytes, bytes] = {}
        self._excerpt = bytearray()
        self._received = 0
        self._until_close = False  # a reply with neither length nor chunks ends at EOF
        self.closed = False
        self.idle_since = 0.0  # loop time it went back to the pool

    # -- the face the pool and the sender use ---------------------------------

    def request(self, head: bytes, body: bytes, excerpt_bytes: int) -> asyncio.Future[Reply]:
        """Send one request; the future holds its reply (with at most `excerpt_bytes` of
        its body) or the DeliveryError that ended it."""
        transport = self._transport
        assert transport is not None
        assert self._waiter is None
        self._waiter = waiter = asyncio.get_running_loop().create_future()
        self._excerpt_bytes = excerpt_bytes
        self._status = 0
        self._headers = {}
        self._excerpt = bytearray()
        self._received = 0
        self._until_close = False
        transport.writelines((head, body))
        return waiter

    @property
    def reusable(self) -> bool:
        """True when the last reply left the connection open and in step."""
        return not self.closed and self._waiter is None and self._parser.should_keep_alive()

    def abort(self) -> None:
        """Drop the connection at once (a timeout, a cancel, a misbehaving receiver)."""
        self.closed = True
        if self._transport is not None:
            self._transport.abort()

    # -- asyncio.Protocol -----------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports quack like asyncio.Transport without subclassing it.
        self._transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        if self._waiter is None:
            # Bytes nobody asked for: the connection is out of step; never reuse it.
            self.abort()
            return
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserCallbackError:
            pass  # a callback already failed the request (too large)
        except httptools.HttpParserError as exc:
            self._fail(EndpointConnectionError(f"malformed reply: {exc}"))

    def eof_received(self) -> bool:
        return False  # close our side too

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self._waiter is None:
            return
        if self._until_close and self._status:
            self._complete()
            return
        why = f": {exc}" if exc is not None else ""
        self._fail(EndpointConnectionError(f"receiver closed the connection{why}"))

    # -- llhttp callbacks -------------------------------------------------------

    def on_header(self, name: bytes, value: bytes) -> None:
        name = name.lower()
        if name in _KEPT:
            self._headers.setdefault(name, value)

    def on_headers_complete(self) -> None:
        status = self._parser.get_status_code()
        if status < 200:
            self._headers = {}  # an interim reply (100 Continue): the real one follows
            return
        self._status = status
        length = self._headers.get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self._limit_bytes:
            self._too_large()
        # llhttp says whether this reply's body runs until the connection closes.
        self._until_close = (
            length is None and status not in (204, 304) and not self._parser.should_keep_alive()
        )

    def on_body(self, body: bytes) -> None:
        self._received += len(body)
        if self._received > self._limit_bytes:
            self._too_large()
        room = self._excerpt_bytes - len(self._excerpt)
        if room > 0:
            self._excerpt += body[:room]

    def on_message_complete(self) -> None:
        if self._status:
            self._complete()

    # -- outcomes ---------------------------------------------------------------

    def _complete(self) -> None:
        waiter, self._waiter = self._waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result(Reply(self._status, bytes(self._excerpt), self._headers))

    def _too_large(self) -> None:
        self._fail(ResponseTooLarge(f"reply body longer than {self._limit_bytes} bytes"))
        raise httptools.HttpParserCallbackError("reply too large")  # stop parsing

    def _fail(self, error: DeliveryError) -> None:
        waiter, self._waiter = self._waiter, None
        self.abort()
        if waiter is not None and not waiter.done():
            waiter.set_exception(error)
