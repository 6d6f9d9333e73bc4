"""Routes for endpoints: create, list, get, patch, delete; the signing secret."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from aiohttp import web

from hookstream.api import schemas
from hookstream.api.auth import principal, require_tenant
from hookstream.api.destination_check import check_destination
from hookstream.api.paging import AFTER, LIMIT, id_page
from hookstream.api.problems import Forbidden, NotFound, json_response
from hookstream.api.routes import BODY, Operations, Param
from hookstream.api.state import CATALOG, REGISTRY, REPLAYS, SETTINGS
from hookstream.engine.catalog import new_tenant
from hookstream.engine.clock import rfc3339, system_clock
from hookstream.engine.endpoint import Endpoint, new_endpoint, patch_endpoint
from hookstream.engine.replay import replay_spec
from hookstream.engine.signing import generate_secret, secret_key
from hookstream.errors import FieldProblem, InvalidInput

routes = Operations("endpoints")
ENDPOINT_ID = "{endpoint_id}"


def _engine_create_check(request: web.Request, raw: dict[str, Any]) -> object:
    fields = {k: v for k, v in raw.items() if k != "replay_since"}
    return new_endpoint(
        {"tenant": principal(request).tenant, **fields}, request.app[SETTINGS].egress
    )


@routes.post(
    "/v1/endpoints",
    scope="endpoints:write",
    body=schemas.ENDPOINT_CREATE,
    ok=(201, schemas.ENDPOINT_WITH_SECRET),
    deeper=_engine_create_check,
)
async def create_endpoint(request: web.Request) -> web.Response:
    """Register an endpoint; 201 with its id and the generated signing secret.

    An unknown tenant is created with it, so every endpoint's tenant is listed.
    With `replay_since` (a key with `dlq:manage` too) the events logged since
    then that it matches are replayed to it: `replay` holds that task.
    """
    body = request[BODY]
    raw: dict[str, Any] = dict(body)
    bound = principal(request).tenant
    if bound is not None and raw.setdefault("tenant", bound) != bound:
        raise Forbidden(f"this key manages endpoints of tenant {bound} only")
    replay_since = raw.pop("replay_since", None)
    spec = None
    if replay_since is not None:
        if not principal(request).allows("dlq:manage"):
            raise Forbidden("replay_since needs a key with the dlq:manage scope")
        spec = replay_spec("", {"replay_since": replay_since}, prefix="replay_")
    settings = request.app[SETTINGS]
    endpoint = new_endpoint(raw, settings.egress)
    if spec is not None and endpoint.disabled:
        raise InvalidInput([FieldProblem("replay_since", "an endpoint created disabled gets none")])
    await check_destination(request, endpoint.url)
    catalog = request.app[CATALOG]
    if endpoint.tenant not in catalog.tenants:
        await catalog.put_tenant(new_tenant({"id": endpoint.tenant}))
    registry = request.app[REGISTRY]
    # Its id places its deliveries in the least used partition (decision 031).
    endpoint = replace(endpoint, id=registry.new_endpoint_id())
    await registry.put(endpoint)
    created = endpoint.to_dict(include_secret=True)
    if spec is not None:
        task_id = await request.app[REPLAYS].start_replay(
            endpoint, replace(spec, endpoint_id=endpoint.id)
        )
        created["replay"] = {"task_id": task_id, "status": f"/v1/tasks/{task_id}"}
    return json_response(created, status=201)


@routes.get(
    "/v1/endpoints",
    scope="endpoints:read",
    query=(
        Param("tenant", {"type": "string", "maxLength": 128}, "only this tenant's"),
        LIMIT,
        AFTER,
    ),
    ok=(200, schemas.page(schemas.ENDPOINT)),
)
async def list_endpoints(request: web.Request) -> web.Response:
    """Endpoints in id order, in cursor pages (`limit`, `after`); secrets omitted."""
    tenant = request.query.get("tenant")
    bound = principal(request).tenant
    registry = request.app[REGISTRY]
    await registry.sync()  # include writes other API processes acknowledged
    items = [] if bound and tenant and tenant != bound else registry.index.all(bound or tenant)
    page = id_page(request, items, key=lambda ep: ep.id, render=lambda ep: ep.to_dict())
    return json_response(page)


@routes.get(f"/v1/endpoints/{ENDPOINT_ID}", scope="endpoints:read", ok=(200, schemas.ENDPOINT))
async def get_endpoint(request: web.Request) -> web.Response:
    """One endpoint, secret omitted."""
    return json_response((await find_endpoint(request)).to_dict())


# Stands in for the endpoint being patched when only the body's validity is asked.
_ANY_ENDPOINT = Endpoint("ep_any", "any", "https://example.com/", ("*",), "")


def _engine_patch_check(request: web.Request, raw: dict[str, Any]) -> object:
    return patch_endpoint(_ANY_ENDPOINT, raw, request.app[SETTINGS].egress)


@routes.patch(
    f"/v1/endpoints/{ENDPOINT_ID}",
    scope="endpoints:write",
    body=schemas.ENDPOINT_PATCH,
    ok=(200, schemas.ENDPOINT),
    deeper=_engine_patch_check,
)
async def update_endpoint(request: web.Request) -> web.Response:
    """Change the fields given (null resets an optional one); the rest stay as they are."""
    endpoint = await find_endpoint(request)
    body: dict[str, Any] = request[BODY]
    changed = patch_endpoint(endpoint, body, request.app[SETTINGS].egress)
    if "url" in body:
        await check_destination(request, changed.url)
    await request.app[REGISTRY].put(changed)
    return json_response(changed.to_dict())


@routes.delete(f"/v1/endpoints/{ENDPOINT_ID}", scope="endpoints:write", ok=(204, None))
async def delete_endpoint(request: web.Request) -> web.Response:
    """Delete an endpoint; deliveries still queued for it are dropped."""
    endpoint = await find_endpoint(request)
    await request.app[REGISTRY].delete(endpoint.id)
    return web.Response(status=204)


@routes.get(
    f"/v1/endpoints/{ENDPOINT_ID}/secret", scope="endpoints:write", ok=(200, schemas.SECRET_VIEW)
)
async def get_secret(request: web.Request) -> web.Response:
    """The signing secret, and when each previous secret still signing stops."""
    endpoint = await find_endpoint(request)
    return json_response(_secret_view(endpoint))


@routes.post(
    f"/v1/endpoints/{ENDPOINT_ID}/secret/rotate",
    scope="endpoints:write",
    body=schemas.ROTATE,
    body_optional=True,
    ok=(200, schemas.SECRET_VIEW),
)
async def rotate_secret(request: web.Request) -> web.Response:
    """Replace the signing secret (the body may name the new one).

    The previous secret keeps signing, as a second signature on every delivery,
    for `secret_overlap_s` (24 h by default), so receivers switch without loss.
    """
    endpoint = await find_endpoint(request)
    body: dict[str, Any] = request[BODY]
    secret = body.get("secret") or generate_secret()
    try:
        secret_key(secret)
    except ValueError as exc:
        raise InvalidInput([FieldProblem("secret", str(exc))]) from None
    if secret == endpoint.secret or any(secret == old for old, _ in endpoint.previous_secrets):
        raise InvalidInput([FieldProblem("secret", "must differ from the current and previous")])
    rotated = endpoint.rotated(secret, request.app[SETTINGS].secret_overlap_s)
    await request.app[REGISTRY].put(rotated)
    return json_response(_secret_view(rotated))


def _secret_view(endpoint: Endpoint) -> dict[str, Any]:
    now = system_clock()
    return {
        "secret": endpoint.secret,
        "previous_expire_at": [
            rfc3339(until) for _, until in endpoint.previous_secrets if until > now
        ],
    }


async def find_endpoint(request: web.Request) -> Endpoint:
    """The endpoint named in the path, or a 404 problem (also for another tenant's).

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
    require_tenant(request, endpoint.tenant, f"endpoint {endpoint_id}")
    return endpoint
