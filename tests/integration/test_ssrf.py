"""The SSRF guard end to end: registration and every send, with a test resolver.

Names map to internal addresses through `MappedResolver`, so nothing leaves
loopback. Real mode refuses each at registration and at send time (a name that
flips after registration); dev mode allows them; redirects are never followed;
an allowlisted CIDR is reachable in real mode.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from hookstream.api import create_app
from hookstream.config import Settings
from tests.conftest import AUTH, MappedResolver, Serve

pytestmark = pytest.mark.integration

INTERNAL = ["127.0.0.1", "169.254.169.254", "10.0.0.1", "::ffff:127.0.0.1"]
PUBLIC = "93.184.216.34"

ApiFactory = Callable[[Settings, MappedResolver], Any]


@asynccontextmanager
async def api(settings: Settings, resolver: MappedResolver) -> AsyncIterator[TestClient[Any, Any]]:
    async with TestClient(TestServer(create_app(settings, resolver=resolver))) as client:
        yield client


async def _register(client: TestClient[Any, Any], url: str) -> Any:
    return await client.post(
        "/v1/endpoints", json={"url": url, "tenant": "acme", "event_types": ["*"]}, headers=AUTH
    )


async def _counting_receiver(serve: Serve) -> tuple[str, list[str]]:
    hits: list[str] = []

    async def receive(request: web.Request) -> web.Response:
        hits.append(request.path)
        return web.Response(status=204)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", receive)
    return await serve(app), hits


@pytest.mark.parametrize("address", INTERNAL)
async def test_a_name_resolving_inside_is_refused_at_registration_in_real_mode(
    settings: Settings, address: str
) -> None:
    resolver = MappedResolver({"inside.test": [address]})
    async with api(settings.replace(dev_mode=False), resolver) as client:
        response = await _register(client, "https://inside.test/hook")
        assert response.status == 422
        body = await response.json(content_type=None)
        assert body["errors"][0]["field"] == "url"
        assert "private or reserved" in body["errors"][0]["message"]
    async with api(settings, resolver) as client:  # dev mode
        assert (await _register(client, "https://inside.test/hook")).status == 201


@pytest.mark.parametrize("address", INTERNAL)
async def test_a_name_that_flips_inside_after_registration_is_refused_at_send(
    settings: Settings, serve: Serve, address: str
) -> None:
    base, hits = await _counting_receiver(serve)
    port = base.rsplit(":", 1)[1]
    resolver = MappedResolver({"flip.test": [PUBLIC]})
    real = settings.replace(dev_mode=False, allow_http=True)
    async with api(real, resolver) as client:
        created = await _register(client, f"http://flip.test:{port}/hook")
        assert created.status == 201
        endpoint_id = (await created.json())["id"]
        resolver.answers["flip.test"] = [address]
        result = await (await client.post(f"/v1/endpoints/{endpoint_id}/test", headers=AUTH)).json()
        assert result["ok"] is False
        assert result["error_class"] == "destination_forbidden"
    assert hits == []


async def test_dev_mode_sends_to_a_name_resolving_to_loopback(
    settings: Settings, serve: Serve
) -> None:
    base, hits = await _counting_receiver(serve)
    port = base.rsplit(":", 1)[1]
    async with api(settings, MappedResolver({"loop.test": ["127.0.0.1"]})) as client:
        created = await _register(client, f"http://loop.test:{port}/hook")
        endpoint_id = (await created.json())["id"]
        result = await (await client.post(f"/v1/endpoints/{endpoint_id}/test", headers=AUTH)).json()
    assert result["ok"] is True
    assert result["status"] == 204
    assert hits == ["/hook"]


async def test_a_redirect_to_an_internal_address_is_not_followed(
    settings: Settings, serve: Serve
) -> None:
    internal, internal_hits = await _counting_receiver(serve)

    async def redirect(request: web.Request) -> web.Response:
        raise web.HTTPFound(f"{internal}/admin")

    app = web.Application()
    app.router.add_post("/hook", redirect)
    sender = await serve(app)
    async with api(settings, MappedResolver({})) as client:
        created = await _register(client, f"{sender}/hook")
        endpoint_id = (await created.json())["id"]
        result = await (await client.post(f"/v1/endpoints/{endpoint_id}/test", headers=AUTH)).json()
    assert result["status"] == 302
    assert result["ok"] is False
    assert internal_hits == []


async def test_an_allowlisted_cidr_is_reachable_in_real_mode(
    settings: Settings, serve: Serve
) -> None:
    base, hits = await _counting_receiver(serve)
    port = base.rsplit(":", 1)[1]
    resolver = MappedResolver({"partner.test": ["127.0.0.1"], "other.test": ["10.0.0.1"]})
    real = settings.replace(dev_mode=False, allow_http=True, egress_allow_cidrs="127.0.0.0/8")
    async with api(real, resolver) as client:
        created = await _register(client, f"http://partner.test:{port}/hook")
        assert created.status == 201
        endpoint_id = (await created.json())["id"]
        result = await (await client.post(f"/v1/endpoints/{endpoint_id}/test", headers=AUTH)).json()
        assert result["ok"] is True
        assert (await _register(client, "http://other.test/hook")).status == 422
        # Plain http is refused unless allowed.
        strict = await _register(client, f"http://127.0.0.1:{port}/hook")
        assert strict.status == 201  # allowlisted literal, http allowed here
    assert hits == ["/hook"]
    async with api(settings.replace(dev_mode=False), resolver) as client:
        refused = await _register(client, f"http://partner.test:{port}/hook")
        assert refused.status == 422
        assert (
            "scheme must be https"
            in (await refused.json(content_type=None))["errors"][0]["message"]
        )
