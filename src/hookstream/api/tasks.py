"""Routes for background tasks: their progress, read from Redis."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from hookstream.api.auth import principal
from hookstream.api.problems import NotFound, json_response
from hookstream.api.routes import Operations
from hookstream.api.schemas import OBJECT
from hookstream.api.state import REDIS, SETTINGS
from hookstream.redis_keys import RedisKeys

routes = Operations("dlq")


@routes.get("/v1/tasks/{task_id}", scope="dlq:manage", ok=(200, OBJECT))
async def get_task(request: web.Request) -> web.Response:
    """A task's state (running, done, failed, interrupted) and counts."""
    task_id = request.match_info["task_id"]
    raw: dict[Any, Any] = await request.app[REDIS].hgetall(
        RedisKeys(request.app[SETTINGS]).task(task_id)
    )
    fields = {k.decode(): v.decode() for k, v in raw.items()}
    bound = principal(request).tenant
    if not fields or (bound is not None and fields.get("tenant") != bound):
        raise NotFound(f"no task {task_id}")
    body: dict[str, Any] = {"id": task_id, "state": fields["state"]}
    body["redriven"] = int(fields.get("redriven", "0"))
    body["skipped"] = int(fields.get("skipped", "0"))  # claimed first by another redrive
    for name in ("started_at", "finished_at"):
        if name in fields:
            body[name] = float(fields[name])
    if "error" in fields:
        body["error"] = fields["error"]
    return json_response(body)
