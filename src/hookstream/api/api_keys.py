"""Routes for API keys: create (shown once), list, revoke. Admin keys not bound
to a tenant only, so no key can mint a key with more than it holds."""

from __future__ import annotations

from aiohttp import web

from hookstream.api import schemas
from hookstream.api.paging import AFTER, LIMIT, id_page
from hookstream.api.problems import NotFound, json_response
from hookstream.api.routes import BODY, Operations
from hookstream.api.state import CATALOG, SETTINGS
from hookstream.engine.apikeys import new_api_key
from hookstream.errors import FieldProblem, InvalidInput

routes = Operations("api-keys")


@routes.post(
    "/v1/api-keys", scope="admin", body=schemas.API_KEY_CREATE, ok=(201, schemas.API_KEY_WITH_KEY)
)
async def create_api_key(request: web.Request) -> web.Response:
    """Create a key. The response holds the key itself; it is never shown again.

    A key with `tenant` sees only that tenant's objects (others' answer 404).
    """
    body = request[BODY]
    assert isinstance(body, dict)
    settings = request.app[SETTINGS]
    tier = body.get("tier", settings.api_default_tier)
    if tier not in settings.rate_tiers:
        tiers = ", ".join(settings.rate_tiers)
        raise InvalidInput([FieldProblem("tier", f"must be one of {tiers}")])
    stored, key = new_api_key(body["name"], body["scopes"], body.get("tenant"), tier)
    await request.app[CATALOG].put_api_key(stored)
    return json_response({**stored.to_dict(), "key": key}, status=201)


@routes.get(
    "/v1/api-keys", scope="admin", query=(LIMIT, AFTER), ok=(200, schemas.page(schemas.API_KEY))
)
async def list_api_keys(request: web.Request) -> web.Response:
    """Keys in id order: id, name, last four characters, scopes; never the key or its hash."""
    catalog = request.app[CATALOG]
    await catalog.sync()
    page = id_page(
        request, catalog.api_keys.values(), key=lambda k: k.id, render=lambda k: k.to_dict()
    )
    return json_response(page)


@routes.delete("/v1/api-keys/{key_id}", scope="admin", ok=(204, None))
async def revoke_api_key(request: web.Request) -> web.Response:
    """Revoke a key: every API process refuses it from its next config read (about 1 s)."""
    key_id = request.match_info["key_id"]
    catalog = request.app[CATALOG]
    await catalog.sync()
    if key_id not in catalog.api_keys:
        raise NotFound(f"no API key {key_id}")
    await catalog.revoke_api_key(key_id)
    return web.Response(status=204)
