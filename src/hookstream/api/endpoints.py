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
    registry = request.app[REGISTRY]
    await registry.sync()  # include writes other API processes acknowledged
    items = registry.index.all(tenant)
    return json_response({"data": [ep.to_dict() for ep in items]})


@routes.get("/v1/endpoints/{endpoint_id}")
async def get_endpoint(request: web.Request) -> web.Response:
    """One endpoint, secret omitted."""
    return json_response((await find_endpoint(request)).to_dict())


@routes.delete("/v1/endpoints/{endpoint_id}")
async def delete_endpoint(request: web.Request) -> web.Response:
    """Delete an endpoint; deliveries still queued for it are dropped."""
    endpoint = await find_endpoint(request)
    await request.app[REGISTRY].delete(endpoint.id)
    return web.Response(status=204)


async def find_endpoint(request: web.Request) -> Endpoint:
    """The endpoint named in the path, or a 404 problem.

    On a miss the registry first catches up with every write acknowledged so
    far, so an endpoint created through another API process is found.
    """
    endpoint_id = request.match_info["endpoint_id"]
    registry = request.app[REGISTRY]
    endpoint = registry.get(endpoint_id)
    if endpoint is None:
        await registry.sync()
        endpoint = registry.get(endpoint_id)
    if endpoint is None:
        raise NotFound(f"no endpoint {endpoint_id}")
    return endpoint
