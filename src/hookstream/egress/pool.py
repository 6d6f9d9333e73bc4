"""Keep-alive connections to receivers, per origin, behind the guarded resolver.

An origin (scheme, host, port) has at most `limit_per_host` connections in
use; a request past that waits, in arrival order, for one to come back. Idle
connections are reused newest first and dropped after `keepalive_s`, before
a receiver's own idle timeout closes them under a request. A name is looked
up through the resolver it is given (the SSRF guard), and its answer is kept
for `dns_ttl_s`; an IP literal was already judged by the sender and is
connected to as it is.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
from collections import deque
from collections.abc import Sequence
from types import TracebackType

import yarl
from aiohttp.abc import AbstractResolver

from hookstream.egress.connection import Http1Connection
from hookstream.egress.deadlines import Deadlines
from hookstream.errors import DeliveryError, EndpointUnreachable

Origin = tuple[str, str, int]  # scheme, host (IDNA, no brackets), port


class ConnectionPool:
    """Connections to receivers: `acquire` one for a URL, `release` it after its reply."""

    def __init__(
        self,
        resolver: AbstractResolver,
        *,
        limit_per_host: int,
        limit_bytes: int,
        keepalive_s: float = 15.0,
        dns_ttl_s: float = 60.0,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self._resolver = resolver
        self._limit_per_host = limit_per_host
        self._limit_bytes = limit_bytes
        self._keepalive_s = keepalive_s
        self._dns_ttl_s = dns_ttl_s
        self._ssl = ssl_context
        self._idle: dict[Origin, list[Http1Connection]] = {}
        self._in_use: dict[Origin, int] = {}
        self._waiters: dict[Origin, deque[asyncio.Future[None]]] = {}
        self._addresses: dict[tuple[str, int], tuple[float, list[str]]] = {}
        self._closed = False
        self._deadlines = Deadlines()  # of the waits for a slot

    async def __aenter__(self) -> ConnectionPool:
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    @property
    def closed(self) -> bool:
        """True once `close()` was called."""
        return self._closed

    def take_idle(self, origin: Origin) -> Http1Connection | None:
        """An idle connection to `origin` with its slot, without waiting; None when a
        new connection would be needed or the origin is at its cap."""
        idle = self._idle.get(origin)
        if not idle or self._closed or origin in self._waiters:
            return None
        in_use = self._in_use.get(origin, 0)
        if in_use >= self._limit_per_host:
            return None
        if not self._fresh(idle[-1], self._now()):
            return None  # acquire() drops the stale ones
        connection = idle.pop()
        self._in_use[origin] = in_use + 1
        return connection

    async def acquire(self, origin: Origin, deadline: float | None = None) -> Http1Connection:
        """A connection to `origin`, reused or new; waits while the origin is at its cap.

        Raises DeliveryError (unreachable, forbidden) when no connection can be made,
        and TimeoutError when there is none by `deadline` (loop time); the slot is
        then given back."""
        if self._closed:
            raise EndpointUnreachable("the sender is closed")
        if self._in_use.get(origin, 0) >= self._limit_per_host or origin in self._waiters:
            await self._wait_turn(origin, deadline)  # a slot is handed over, already counted
        else:
            self._in_use[origin] = self._in_use.get(origin, 0) + 1
        idle = self._idle.get(origin)
        now = self._now()
        while idle:
            connection = idle.pop()
            if self._fresh(connection, now):
                return connection
            connection.abort()
        try:
            if deadline is None:
                return await self._connect(origin)
            async with asyncio.timeout_at(deadline):
                return await self._connect(origin)
        except BaseException:
            self._give_back(origin)
            raise

    def release(self, origin: Origin, connection: Http1Connection) -> None:
        """Hand a connection back after its reply; kept for reuse if still in step."""
        if connection.reusable and not self._closed:
            connection.idle_since = self._now()
            idle = self._idle.setdefault(origin, [])
            idle.append(connection)
            if len(idle) > self._limit_per_host:
                idle.pop(0).abort()
        else:
            connection.abort()
        self._give_back(origin)

    async def close(self) -> None:
        """Close every idle connection; those in use close when their request ends."""
        self._closed = True
        for idle in self._idle.values():
            for connection in idle:
                connection.abort()
        self._idle.clear()
        await asyncio.sleep(0)  # let the transports close

    @staticmethod
    def _now() -> float:
        return asyncio.get_running_loop().time()

    def _fresh(self, connection: Http1Connection, now: float) -> bool:
        """Open, and idle for less than `keepalive_s`: safe to send on."""
        return not connection.closed and now - connection.idle_since < self._keepalive_s

    # -- slots --------------------------------------------------------------------

    async def _wait_turn(self, origin: Origin, deadline: float | None) -> None:
        """Wait for a slot of `origin`, handed over by `_give_back`; TimeoutError at
        `deadline`. Not `asyncio.timeout_at`: most attempts at a busy origin wait
        here, and the timeout context cost them 5% of a worker (decision 046)."""
        loop = asyncio.get_running_loop()
        waiters = self._waiters.setdefault(origin, deque())
        turn = loop.create_future()
        waiters.append(turn)
        if deadline is not None:
            self._deadlines.watch(turn, deadline, loop)
        try:
            await turn
        except BaseException:
            if turn.done() and not turn.cancelled() and turn.exception() is None:
                self._give_back(origin)  # handed a slot it will not use: pass it on
            else:
                with contextlib.suppress(ValueError):
                    waiters.remove(turn)
                if not waiters and self._waiters.get(origin) is waiters:
                    del self._waiters[origin]
            raise
        finally:
            self._deadlines.forget(turn)

    def _give_back(self, origin: Origin) -> None:
        """One slot of `origin` is done with: handed to the first waiter, else freed."""
        waiters = self._waiters.get(origin)
        while waiters:
            turn = waiters.popleft()
            if not waiters:
                del self._waiters[origin]
            if not turn.done():
                turn.set_result(None)  # the slot moves to it, still counted
                return
        left = self._in_use[origin] - 1
        if left:
            self._in_use[origin] = left
        else:
            del self._in_use[origin]

    # -- connecting ---------------------------------------------------------------

    async def _connect(self, origin: Origin) -> Http1Connection:
        scheme, host, port = origin
        loop = asyncio.get_running_loop()
        tls = scheme == "https"
        failures: list[str] = []
        for address in await self._resolve(host, port):
            try:
                _, connection = await loop.create_connection(
                    self._new_connection,
                    address,
                    port,
                    ssl=(self._ssl or _default_tls()) if tls else None,
                    server_hostname=host if tls else None,
                )
            except OSError as exc:  # refused, unreachable, TLS handshake or certificate
                failures.append(f"{address}: {exc}")
                continue
            return connection
        raise EndpointUnreachable(f"cannot connect to {host}:{port}: {'; '.join(failures)}")

    def _new_connection(self) -> Http1Connection:
        return Http1Connection(limit_bytes=self._limit_bytes)

    async def _resolve(self, host: str, port: int) -> Sequence[str]:
        if _is_ip_literal(host):
            return [host]
        now = asyncio.get_running_loop().time()
        cached = self._addresses.get((host, port))
        if cached is not None and cached[0] > now:
            return cached[1]
        try:
            answers = await self._resolver.resolve(host, port, socket.AF_UNSPEC)
        except DeliveryError:
            raise  # the guard's refusal, as it is
        except OSError as exc:
            raise EndpointUnreachable(f"cannot resolve {host}: {exc}") from None
        addresses = list(dict.fromkeys(answer["host"] for answer in answers))
        if len(self._addresses) > 10_000:
            self._addresses.clear()
        self._addresses[(host, port)] = (now + self._dns_ttl_s, addresses)
        return addresses


def origin_of(url: yarl.URL) -> Origin:
    """The pool key of a checked URL."""
    assert url.raw_host is not None
    assert url.port is not None
    return (url.scheme, url.raw_host, url.port)


def _is_ip_literal(host: str) -> bool:
    try:
        socket.inet_pton(socket.AF_INET6 if ":" in host else socket.AF_INET, host)
    except OSError:
        return False
    return True


_TLS: ssl.SSLContext | None = None


def _default_tls() -> ssl.SSLContext:
    """The system's trust store, verified hostnames: built once, on first use."""
    global _TLS
    if _TLS is None:
        _TLS = ssl.create_default_context()
    return _TLS
