"""Route for replays: re-send an endpoint's past events from the log (api/replay_tasks.py)."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from hookstream.api import schemas
from hookstream.api.endpoints import find_endpoint
from hookstream.api.problems import Conflict, json_response
from hookstream.api.routes import BODY, Operations
from hookstream.api.state import REPLAYS
from hookstream.engine.endpoint import Endpoint
from hookstream.engine.replay import ReplaySpec, replay_spec

routes = Operations("dlq")


@routes.post(
    "/v1/endpoints/{endpoint_id}/replay",
    scope="dlq:manage",
    body=schemas.REPLAY,
    ok=(202, schemas.TASK_STARTED),
)
async def replay_endpoint(request: web.Request) -> web.Response:
    """Re-send the events logged in [since, until) that the endpoint matches now, in order,
    with their usual webhook-ids; a task (`GET /v1/tasks/{id}`, `DELETE` to cancel)."""
    endpoint = await find_endpoint(request)
    body: dict[str, Any] = request[BODY]
    spec = replay_spec(endpoint.id, dict(body))
    return json_response(await start(request, endpoint, spec), status=202)


async def start(request: web.Request, endpoint: Endpoint, spec: ReplaySpec) -> dict[str, str]:
    """Start a replay; its task id and status link. 409 for a disabled endpoint."""
    if endpoint.disabled:
        raise Conflict(f"endpoint {endpoint.id} is disabled: enable it before replaying to it")
    task_id = await request.app[REPLAYS].start_replay(endpoint, spec)
    return {"task_id": task_id, "status": f"/v1/tasks/{task_id}"}
