"""Routes for background tasks (redrives, replays): progress from Redis, and cancel."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from hookstream.api.auth import principal
from hookstream.api.problems import Conflict, NotFound, json_response
from hookstream.api.routes import Operations
from hookstream.api.schemas import OBJECT
from hookstream.api.state import REDIS, SETTINGS
from hookstream.redis_keys import RedisKeys

routes = Operations("dlq")

COUNTS = ("redriven", "skipped", "count", "scanned")  # what each kind reports of these


@routes.get("/v1/tasks/{task_id}", scope="dlq:manage", ok=(200, OBJECT))
async def get_task(request: web.Request) -> web.Response:
    """A task's kind, state (running, done, failed, interrupted, cancelled) and counts.

    A redrive counts `redriven` and `skipped`; a replay `count` (sent) and
    `scanned` (events of the window looked at).
    """
    task_id = request.match_info["task_id"]
    fields = await _task(request, task_id)
    kind = fields.get("kind", "redrive")
    body: dict[str, Any] = {"id": task_id, "kind": kind, "state": fields["state"]}
    for name in COUNTS[2:] if kind == "replay" else COUNTS[:2]:
        body[name] = int(fields.get(name, "0"))
    if kind == "replay":
        body["endpoint_id"] = fields.get("endpoint_id")
    for name in ("started_at", "finished_at"):
        if name in fields:
            body[name] = float(fields[name])
    if "error" in fields:
        body["error"] = fields["error"]
    if fields.get("cancel") == "1" and fields["state"] == "running":
        body["cancelling"] = True
    return json_response(body)


@routes.delete("/v1/tasks/{task_id}", scope="dlq:manage", ok=(202, OBJECT))
async def cancel_task(request: web.Request) -> web.Response:
    """Cancel a running task: it stops at its next step (within about a second) and ends
    `cancelled`; what it sent stays sent. 409 when it is no longer running."""
    task_id = request.match_info["task_id"]
    fields = await _task(request, task_id)
    if fields["state"] != "running":
        raise Conflict(f"task {task_id} is {fields['state']}, not running")
    await request.app[REDIS].hset(RedisKeys(request.app[SETTINGS]).task(task_id), "cancel", "1")
    return json_response({"id": task_id, "state": "running", "cancelling": True}, status=202)


async def _task(request: web.Request, task_id: str) -> dict[str, str]:
    """The task's fields, or 404 (also for another tenant's task)."""
    raw: dict[Any, Any] = await request.app[REDIS].hgetall(
        RedisKeys(request.app[SETTINGS]).task(task_id)
    )
    fields = {k.decode(): v.decode() for k, v in raw.items()}
    bound = principal(request).tenant
    if not fields or (bound is not None and fields.get("tenant") != bound):
        raise NotFound(f"no task {task_id}")
    return fields
