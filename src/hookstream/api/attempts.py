"""Routes for attempts and message status, read from the Redis attempt index."""

from __future__ import annotations

from typing import Any

import orjson
from aiohttp import web

from hookstream.api.auth import principal
from hookstream.api.endpoints import find_endpoint
from hookstream.api.paging import AFTER, LIMIT, page_limit, pair_cursor
from hookstream.api.problems import NotFound, json_response
from hookstream.api.routes import Operations
from hookstream.api.schemas import OBJECT, page
from hookstream.api.state import REDIS, REGISTRY, SETTINGS
from hookstream.redis_keys import RedisKeys

routes = Operations("endpoints")


@routes.get(
    "/v1/endpoints/{endpoint_id}/attempts",
    scope="endpoints:read",
    query=(LIMIT, AFTER),
    ok=(200, page(OBJECT)),
)
async def endpoint_attempts(request: web.Request) -> web.Response:
    """An endpoint's recent attempts, newest first, in cursor pages (`limit`, `after`).

    The cursor is `<score>:<skip>`: continue at that score (start time in µs),
    skipping the items of exactly that score already returned. Redis orders
    equal scores by member, so pages neither repeat nor miss items when
    attempts share a start time.
    """
    endpoint_id = (await find_endpoint(request)).id
    limit, cursor = page_limit(request), pair_cursor(request.query.get("after"))
    key = RedisKeys(request.app[SETTINGS]).endpoint_attempts(endpoint_id)
    upper, skip = ("+inf", 0) if cursor is None else (str(cursor[0]), cursor[1])
    rows: list[Any] = await request.app[REDIS].zrevrangebyscore(
        key, upper, "-inf", start=skip, num=limit, withscores=True
    )
    body: dict[str, Any] = {"data": [_attempt(member) for member, _ in rows], "next": None}
    if len(rows) == limit:
        last = int(rows[-1][1])
        at_last = sum(1 for _, s in rows if int(s) == last)
        if cursor is not None and cursor[0] == last:
            at_last += skip
        body["next"] = f"{request.path}?limit={limit}&after={last}:{at_last}"
    return json_response(body)


@routes.get("/v1/messages/{message_id}", scope="endpoints:read", ok=(200, OBJECT))
async def message_status(request: web.Request) -> web.Response:
    """A message's state (pending, delivered, retrying with the next time, dead) and attempts."""
    message_id = request.match_info["message_id"]
    settings = request.app[SETTINGS]
    rows: list[Any] = await request.app[REDIS].zrange(
        RedisKeys(settings).message_attempts(message_id), 0, -1
    )
    if not rows:
        routed: dict[Any, Any] = await request.app[REDIS].hgetall(
            RedisKeys(settings).routed(message_id)
        )
        if not routed:
            raise NotFound(f"no message {message_id} in the recent index")
        fields = {k.decode(): v.decode() for k, v in routed.items()}
        _require_visible(request, message_id, fields.get("endpoint_id", ""))
        return json_response(
            {
                "id": message_id,
                "event_id": fields.get("event_id"),
                "endpoint_id": fields.get("endpoint_id"),
                "state": "pending",
                "next_attempt_at": None,
                "attempts": [],
            }
        )
    attempts = [_attempt(member) for member in rows]
    latest = attempts[-1]
    _require_visible(request, message_id, latest["endpoint_id"])
    state = {"delivered": "delivered", "dead": "dead"}.get(latest["outcome"], "retrying")
    if state == "retrying" and latest.get("next_attempt_at") is None:
        state = "dead"
    return json_response(
        {
            "id": message_id,
            "event_id": latest["event_id"],
            "endpoint_id": latest["endpoint_id"],
            "state": state,
            "next_attempt_at": latest.get("next_attempt_at") if state == "retrying" else None,
            "attempts": attempts,
        }
    )


def _require_visible(request: web.Request, message_id: str, endpoint_id: str) -> None:
    """404 for a key bound to another tenant than the message's endpoint."""
    if principal(request).tenant is None:
        return
    endpoint = request.app[REGISTRY].get(endpoint_id)
    if endpoint is None or not principal(request).sees(endpoint.tenant):
        raise NotFound(f"no message {message_id} in the recent index")


def _attempt(member: Any) -> dict[str, Any]:
    decoded: dict[str, Any] = orjson.loads(member)
    return decoded
