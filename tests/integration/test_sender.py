"""The HTTP seam against real local servers: each failure gets a clear error class."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
from aiohttp import web

from hookstream import __version__
from hookstream.config import Settings
from hookstream.egress import build_session
from hookstream.egress.sender import HttpSender
from hookstream.embedded import free_port
from hookstream.engine.destinations import DEV_EGRESS, STRICT_EGRESS
from hookstream.engine.outcome import OutgoingRequest
from tests.conftest import Serve

pytestmark = pytest.mark.integration


def _app(handler: Callable[[web.Request], Awaitable[web.StreamResponse]]) -> web.Application:
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handler)
    return app


@pytest.fixture
async def sender() -> AsyncIterator[HttpSender]:
    settings = Settings(dev_mode=True)
    async with build_session(settings) as session:
        yield HttpSender(session, timeout_s=1.0, excerpt_bytes=16, policy=DEV_EGRESS)


def _request(url: str) -> OutgoingRequest:
    return OutgoingRequest(url=url, headers={"content-type": "application/json"}, body=b"{}")


async def test_2xx_is_a_status_and_the_excerpt_is_capped(sender: HttpSender, serve: Serve) -> None:
    async def ok(_: web.Request) -> web.Response:
        return web.Response(status=200, body=b"x" * 10_000)

    result = await sender.send(_request(await serve(_app(ok)) + "/hook"))
    assert result.status == 200
    assert result.ok
    assert result.excerpt == b"x" * 16


async def test_a_closed_port_is_unreachable(sender: HttpSender) -> None:
    result = await sender.send(_request(f"http://127.0.0.1:{free_port()}/hook"))
    assert result.status is None
    assert result.error_class == "unreachable"
    assert result.retriable_error


async def test_a_receiver_slower_than_the_timeout_is_a_timeout(
    sender: HttpSender, serve: Serve
) -> None:
    async def slow(_: web.Request) -> web.Response:
        await asyncio.sleep(5)
        return web.Response(status=204)

    result = await sender.send(_request(await serve(_app(slow))))
    assert result.error_class == "timeout"
    assert 900 <= result.duration_ms < 4000


async def test_redirects_are_not_followed(sender: HttpSender, serve: Serve) -> None:
    hits: list[str] = []

    async def target(request: web.Request) -> web.Response:
        hits.append(request.path)
        return web.Response(status=204)

    internal = await serve(_app(target))

    async def redirect(_: web.Request) -> web.Response:
        raise web.HTTPFound(internal + "/secret")

    result = await sender.send(_request(await serve(_app(redirect))))
    assert result.status == 302
    assert not result.ok
    assert hits == []


async def test_closing_mid_response_is_a_connection_error(sender: HttpSender, serve: Serve) -> None:
    async def broken(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(status=200, headers={"Content-Length": "1000"})
        await response.prepare(request)
        await response.write(b"partial")
        assert request.transport is not None
        request.transport.close()
        return response

    async with build_session(Settings(dev_mode=True)) as session:
        whole_body = HttpSender(session, timeout_s=2.0, excerpt_bytes=4096, policy=DEV_EGRESS)
        result = await whole_body.send(_request(await serve(_app(broken))))
    assert result.error_class == "connection_error"


async def test_the_abort_header_is_reported(sender: HttpSender, serve: Serve) -> None:
    async def abort(_: web.Request) -> web.Response:
        return web.Response(status=500, headers={"webhook-delivery": "abort-message"})

    result = await sender.send(_request(await serve(_app(abort))))
    assert result.status == 500
    assert result.abort_requested


async def test_real_mode_refuses_a_name_that_resolves_to_loopback(serve: Serve) -> None:
    async def ok(_: web.Request) -> web.Response:
        return web.Response(status=204)

    port = (await serve(_app(ok))).rsplit(":", 1)[1]
    async with build_session(Settings(dev_mode=False)) as session:
        sender = HttpSender(session, timeout_s=2.0, excerpt_bytes=16, policy=STRICT_EGRESS)
        result = await sender.send(_request(f"http://localhost:{port}/hook"))
    assert result.error_class == "destination_forbidden"
    assert not result.retriable_error


@pytest.mark.parametrize("host", ["127.0.0.1", "[::ffff:127.0.0.1]", "[::1]"])
async def test_real_mode_refuses_an_internal_ip_literal_on_every_attempt(
    serve: Serve, host: str
) -> None:
    """aiohttp connects to IP literals without the resolver; the sender checks them."""
    hits: list[str] = []

    async def ok(request: web.Request) -> web.Response:
        hits.append(request.path)
        return web.Response(status=204)

    port = (await serve(_app(ok))).rsplit(":", 1)[1]
    async with build_session(Settings(dev_mode=False)) as session:
        sender = HttpSender(session, timeout_s=2.0, excerpt_bytes=16, policy=STRICT_EGRESS)
        for _ in range(2):
            result = await sender.send(_request(f"http://{host}:{port}/hook"))
            assert result.error_class == "destination_forbidden"
            assert "is not a public address" in (result.error or "")
    assert hits == []


async def test_every_request_carries_our_user_agent(sender: HttpSender, serve: Serve) -> None:
    seen: list[str] = []

    async def record(request: web.Request) -> web.Response:
        seen.append(request.headers["User-Agent"])
        return web.Response(status=204)

    await sender.send(_request(await serve(_app(record))))
    assert seen == [f"hookstream/{__version__}"]
