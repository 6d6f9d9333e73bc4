"""Routes for tenants (the customers that own endpoints): create, list, get, delete."""

from __future__ import annotations

from aiohttp import web

from hookstream.api import schemas
from hookstream.api.auth import principal, require_tenant
from hookstream.api.paging import AFTER, LIMIT, id_page
from hookstream.api.problems import Conflict, NotFound, json_response
from hookstream.api.routes import BODY, Operations
from hookstream.api.state import CATALOG, REGISTRY
from hookstream.engine.catalog import Tenant, new_tenant

routes = Operations("tenants")
TENANT_PATH = "/v1/tenants/{tenant_id}"


@routes.post("/v1/tenants", scope="admin", body=schemas.TENANT_CREATE, ok=(201, schemas.TENANT))
async def create_tenant(request: web.Request) -> web.Response:
    """Create a tenant; 409 when the id is taken."""
    tenant = new_tenant(request[BODY])
    catalog = request.app[CATALOG]
    await catalog.sync()
    if tenant.id in catalog.tenants:
        raise Conflict(f"tenant {tenant.id} exists")
    await catalog.put_tenant(tenant)
    return json_response(tenant.to_dict(), status=201)


@routes.get(
    "/v1/tenants",
    scope="endpoints:read",
    query=(LIMIT, AFTER),
    ok=(200, schemas.page(schemas.TENANT)),
)
async def list_tenants(request: web.Request) -> web.Response:
    """Tenants in id order, in cursor pages (a tenant-bound key sees its own)."""
    catalog = request.app[CATALOG]
    await catalog.sync()
    visible = [t for t in catalog.tenants.values() if principal(request).sees(t.id)]
    page = id_page(request, visible, key=lambda t: t.id, render=lambda t: t.to_dict())
    return json_response(page)


@routes.get(TENANT_PATH, scope="endpoints:read", ok=(200, schemas.TENANT))
async def get_tenant(request: web.Request) -> web.Response:
    """One tenant."""
    return json_response((await _find(request)).to_dict())


@routes.delete(TENANT_PATH, scope="admin", ok=(204, None))
async def delete_tenant(request: web.Request) -> web.Response:
    """Delete a tenant that has no endpoints left (409 otherwise: nothing is deleted silently)."""
    tenant = await _find(request)
    registry = request.app[REGISTRY]
    await registry.sync()
    remaining = len(registry.index.all(tenant.id))
    if remaining:
        raise Conflict(f"tenant {tenant.id} still has {remaining} endpoints; delete them first")
    await request.app[CATALOG].delete_tenant(tenant.id)
    return web.Response(status=204)


async def _find(request: web.Request) -> Tenant:
    tenant_id = request.match_info["tenant_id"]
    require_tenant(request, tenant_id, f"tenant {tenant_id}")
    catalog = request.app[CATALOG]
    found = catalog.tenants.get(tenant_id)
    if found is None:
        await catalog.sync()
        found = catalog.tenants.get(tenant_id)
    if found is None:
        raise NotFound(f"no tenant {tenant_id}")
    return found
