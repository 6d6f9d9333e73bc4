"""Routes for the event-type catalog: name, description, optional JSON Schema.

Publishing through the API validates `data` against the type's schema.
"""

from __future__ import annotations

from aiohttp import web

from hookstream.api import schemas
from hookstream.api.paging import AFTER, LIMIT, id_page
from hookstream.api.problems import NotFound, json_response
from hookstream.api.routes import BODY, Operations
from hookstream.api.state import CATALOG
from hookstream.engine.catalog import new_event_type

routes = Operations("event-types")


@routes.post(
    "/v1/event-types", scope="admin", body=schemas.EVENT_TYPE_CREATE, ok=(201, schemas.EVENT_TYPE)
)
async def create_event_type(request: web.Request) -> web.Response:
    """Add or replace an event type (a bad name or schema is a 422 naming it)."""
    event_type = new_event_type(request[BODY])
    await request.app[CATALOG].put_event_type(event_type)
    return json_response(event_type.to_dict(), status=201)


@routes.get(
    "/v1/event-types",
    scope="endpoints:read",
    query=(LIMIT, AFTER),
    ok=(200, schemas.page(schemas.EVENT_TYPE)),
)
async def list_event_types(request: web.Request) -> web.Response:
    """Event types in name order, in cursor pages."""
    catalog = request.app[CATALOG]
    await catalog.sync()
    page = id_page(
        request, catalog.event_types.values(), key=lambda t: t.name, render=lambda t: t.to_dict()
    )
    return json_response(page)


@routes.get("/v1/event-types/{name}", scope="endpoints:read", ok=(200, schemas.EVENT_TYPE))
async def get_event_type(request: web.Request) -> web.Response:
    """One event type."""
    catalog = request.app[CATALOG]
    name = request.match_info["name"]
    found = catalog.event_types.get(name)
    if found is None:
        await catalog.sync()
        found = catalog.event_types.get(name)
    if found is None:
        raise NotFound(f"no event type {name}")
    return json_response(found.to_dict())
