"""The API's error rendering for failures that are not the caller's input."""

from __future__ import annotations

from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from hookstream.api.problems import problem_middleware
from hookstream.errors import HookstreamError, RegistryUnavailable


async def test_a_stopped_config_view_is_a_503_problem_not_a_500() -> None:
    assert issubclass(RegistryUnavailable, HookstreamError)
    assert RegistryUnavailable.retriable

    async def handler(request: web.Request) -> web.Response:
        raise RegistryUnavailable("endpoints reader stopped")

    app = web.Application(middlewares=[problem_middleware])
    app.router.add_get("/v1/endpoints", handler)
    async with TestClient(TestServer(app)) as client:
        response = await client.get("/v1/endpoints")
        assert response.status == 503
        assert response.content_type == "application/problem+json"
        body = await response.json()
    assert body["status"] == 503
    assert body["title"] == "Service Unavailable"
    assert "retry" in body["detail"]
    assert "reader stopped" not in body["detail"]  # internals stay in the log
