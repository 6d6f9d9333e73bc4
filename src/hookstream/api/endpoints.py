"""Routes for endpoints: create, list, get, delete."""

from __future__ import annotations

from aiohttp import web

from hookstream.api.problems import NotFound, json_body, json_response
from hookstream.api.state import REGISTRY, SETTINGS
from hookstream.engine.endpoint import Endpoint, new_endpoint

routes = web.RouteTableDef()


@routes.post("/v1/endpoints")
async def create_endpoint(request: web.Request) -> web.Response:
    """Register an endpoint; 201 with its id and the generated signing secret."""
    settings = request.app[SETTINGS]
    endpoint = new_endpoint(await json_body(request), allow_private=settings.dev_mode)
    await request.app[REGISTRY].put(endpoint)
    return json_response(endpoint.to_dict(include_secret=True), status=201)


@routes.get("/v1/endpoints")
async def list_endpoints(request: web.Request) -> web.Response:
    """Every endpoint (optionally `?tenant=`), secrets omitted."""
    tenant = request.query.get("tenant")
    items = request.app[REGISTRY].index.all(tenant)
    return json_response({"data": [ep.to_dict() for ep in items]})


@routes.get("/v1/endpoints/{endpoint_id}")
async def get_endpoint(request: web.Request) -> web.Response:
    """One endpoint, secret omitted."""
    return json_response(_find(request).to_dict())


@routes.delete("/v1/endpoints/{endpoint_id}")
async def delete_endpoint(request: web.Request) -> web.Response:
    """Delete an endpoint; deliveries still queued for it are dropped."""
    endpoint = _find(request)
    await request.app[REGISTRY].delete(endpoint.id)
    return web.Response(status=204)


def _find(request: web.Request) -> Endpoint:
    endpoint_id = request.match_info["endpoint_id"]
    endpoint = request.app[REGISTRY].get(endpoint_id)
    if endpoint is None:
        raise NotFound(f"no endpoint {endpoint_id}")
    return endpoint
