"""Routes for operators: list dead letters, redrive one, redrive by filter as a task."""

from __future__ import annotations

from contextlib import aclosing
from dataclasses import replace
from typing import Any

from aiohttp import web

from hookstream.api import schemas
from hookstream.api.auth import principal
from hookstream.api.endpoints import find_endpoint
from hookstream.api.paging import AFTER, BAD_CURSOR, LIMIT, page_limit, pair_cursor
from hookstream.api.problems import BadRequest, NotFound, json_response
from hookstream.api.routes import BODY, Operations, Param
from hookstream.api.schemas import OBJECT, page
from hookstream.api.state import PRODUCER, SETTINGS, TASKS
from hookstream.engine.clock import parse_rfc3339
from hookstream.errors import FieldProblem, InvalidInput
from hookstream.topics import TopicNames
from hookstream.views.dlq import DeadLetterFilter, DeadLetterReader, redrive

routes = Operations("dlq")

FILTER_FIELDS = ("tenant", "endpoint_id", "event_type", "since", "until")
FILTER_PARAMS = tuple(Param(name, {"type": "string", "maxLength": 256}) for name in FILTER_FIELDS)


@routes.get(
    "/v1/dlq",
    scope="dlq:manage",
    query=(*FILTER_PARAMS, LIMIT, AFTER),
    ok=(200, page(OBJECT)),
)
async def list_dead_letters(request: web.Request) -> web.Response:
    """Dead letters matching the query's filters, in cursor pages (`limit`, `after`)."""
    where = _own(request, dead_letter_filter(dict(request.query), allow_extra={"limit", "after"}))
    limit = page_limit(request)
    resume = pair_cursor(request.query.get("after"))
    if resume is not None and resume[0] < 0:
        raise BadRequest(BAD_CURSOR)
    reader = DeadLetterReader(request.app[SETTINGS])
    data: list[dict[str, Any]] = []
    next_link = None
    async with aclosing(reader.scan(where, resume)) as letters:  # closes the consumer on break
        async for letter in letters:
            data.append(letter.to_dict())
            if len(data) == limit:
                query = {k: v for k, v in request.query.items() if k != "after"}
                query["after"] = f"{letter.partition}:{letter.offset + 1}"
                next_link = str(request.rel_url.with_query(query))
                break
    return json_response({"data": data, "next": next_link})


@routes.post("/v1/dlq/{message_id}/redrive", scope="dlq:manage", ok=(202, OBJECT))
async def redrive_one(request: web.Request) -> web.Response:
    """Send one dead message back for delivery (its latest dead letter), same webhook-id."""
    message_id = request.match_info["message_id"]
    reader = DeadLetterReader(request.app[SETTINGS])
    latest = None
    where = _own(request, DeadLetterFilter(message_id=message_id))
    async with aclosing(reader.scan(where)) as letters:
        async for letter in letters:
            latest = letter
    if latest is None:
        raise NotFound(f"no dead letter for message {message_id}")
    await redrive(request.app[PRODUCER], TopicNames(request.app[SETTINGS]).deliveries, latest)
    return json_response({"message_id": message_id, "redriven": 1}, status=202)


@routes.post(
    "/v1/dlq/redrive", scope="dlq:manage", body=schemas.DLQ_FILTERS, ok=(202, schemas.TASK_STARTED)
)
async def redrive_many(request: web.Request) -> web.Response:
    """Redrive every dead letter matching the body's filters, as a background task."""
    body: dict[str, Any] = request[BODY]
    where = _own(request, dead_letter_filter(dict(body), allow_extra=set()))
    task_id = await request.app[TASKS].start_redrive(where)
    return json_response({"task_id": task_id, "status": f"/v1/tasks/{task_id}"}, status=202)


@routes.post(
    "/v1/endpoints/{endpoint_id}/recover",
    scope="dlq:manage",
    body=schemas.RECOVER,
    ok=(202, schemas.TASK_STARTED),
)
async def recover_endpoint(request: web.Request) -> web.Response:
    """Re-send an endpoint's messages whose last attempt failed in [since, until).

    Messages still retrying will be attempted anyway; the ones that failed for
    good are its dead letters of that window, so this is a redrive task.
    """
    endpoint_id = (await find_endpoint(request)).id
    body: dict[str, Any] = request[BODY]
    where = dead_letter_filter(dict(body), allow_extra=set())
    task_id = await request.app[TASKS].start_redrive(replace(where, endpoint_id=endpoint_id))
    return json_response({"task_id": task_id, "status": f"/v1/tasks/{task_id}"}, status=202)


def _own(request: web.Request, where: DeadLetterFilter) -> DeadLetterFilter:
    """A tenant-bound key's filter, narrowed to its tenant (another tenant's: nothing)."""
    bound = principal(request).tenant
    if bound is None:
        return where
    if where.tenant not in (None, bound):
        raise NotFound(f"no dead letters of tenant {where.tenant}")
    return replace(where, tenant=bound)


def dead_letter_filter(raw: dict[str, Any], *, allow_extra: set[str]) -> DeadLetterFilter:
    """Build a filter from query or body fields; InvalidInput names each bad one."""
    problems = [
        FieldProblem(k, "unknown filter") for k in raw if k not in {*FILTER_FIELDS, *allow_extra}
    ]
    for name in ("tenant", "endpoint_id", "event_type"):
        if name in raw and not isinstance(raw[name], str):
            problems.append(FieldProblem(name, "must be a string"))
    times: dict[str, int | None] = {"since": None, "until": None}
    for name in times:
        if raw.get(name) is None:
            continue
        try:
            times[name] = int(parse_rfc3339(str(raw[name])).timestamp() * 1000)
        except ValueError:
            problems.append(FieldProblem(name, "must be an RFC 3339 timestamp"))
    if problems:
        raise InvalidInput(problems)
    return DeadLetterFilter(
        tenant=raw.get("tenant"),
        endpoint_id=raw.get("endpoint_id"),
        event_type=raw.get("event_type"),
        since_ms=times["since"],
        until_ms=times["until"],
    )
