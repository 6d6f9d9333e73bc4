"""Routes for operators: list dead letters, redrive one, redrive by filter as a task."""

from __future__ import annotations

import secrets
from dataclasses import replace
from typing import Any

from aiohttp import web

from hookstream.api import schemas
from hookstream.api.auth import principal
from hookstream.api.endpoints import find_endpoint
from hookstream.api.paging import AFTER, BAD_CURSOR, LIMIT, page_limit
from hookstream.api.problems import BadRequest, NotFound, json_response
from hookstream.api.routes import BODY, Operations, Param
from hookstream.api.schemas import OBJECT, page
from hookstream.api.state import PRODUCER, SETTINGS, TASKS
from hookstream.engine.clock import parse_rfc3339
from hookstream.engine.letters import DeadLetterFilter, is_letter_id
from hookstream.errors import FieldProblem, InvalidInput
from hookstream.topics import TopicNames
from hookstream.views.dlq import redrive_ids
from hookstream.views.dlq_index import OPEN, REDRIVEN

routes = Operations("dlq")

FILTER_FIELDS = ("tenant", "endpoint_id", "event_type", "since", "until")
FILTER_PARAMS = tuple(Param(name, {"type": "string", "maxLength": 256}) for name in FILTER_FIELDS)
ORDER = Param("order", {"type": "string", "enum": ["oldest", "newest"]}, "`oldest` first (default)")
INCLUDE = Param(
    "include",
    {"type": "string", "enum": ["redriven"]},
    "`redriven`: also letters already redriven (default: only those not yet)",
)


@routes.get(
    "/v1/dlq",
    scope="dlq:manage",
    query=(*FILTER_PARAMS, INCLUDE, ORDER, LIMIT, AFTER),
    ok=(200, page(OBJECT)),
)
async def list_dead_letters(request: web.Request) -> web.Response:
    """Dead letters matching the query's filters, oldest first (or `order=newest`),
    in cursor pages.

    A page may hold fewer than `limit` letters when a rare filter meets a big
    DLQ: follow `next` until it is null.
    """
    where = _own(
        request,
        dead_letter_filter(dict(request.query), allow_extra={"limit", "after", "include", "order"}),
    )
    include = request.query.get("include")
    limit = page_limit(request)
    after = request.query.get("after")
    if after is not None and not is_letter_id(after):
        raise BadRequest(BAD_CURSOR)
    index = request.app[TASKS].index
    states = (OPEN, REDRIVEN) if include else (OPEN,)
    newest = request.query.get("order") == "newest"
    scan = await index.scan(where, states=states, after=after, limit=limit, newest=newest)
    letters = await index.letters(scan.ids)
    outcomes = await index.outcomes(letters)
    next_link = None
    if scan.after is not None:
        query = {k: v for k, v in request.query.items() if k != "after"}
        query["after"] = scan.after
        next_link = str(request.rel_url.with_query(query))
    data = [letter.to_dict(outcomes.get(letter.id)) for letter in letters]
    return json_response({"data": data, "next": next_link})


@routes.post("/v1/dlq/{message_id}/redrive", scope="dlq:manage", ok=(202, OBJECT))
async def redrive_one(request: web.Request) -> web.Response:
    """Send one dead message back for delivery (its newest letter), same webhook-id.

    Asked by name, it is sent even when that letter was redriven before.
    """
    message_id = request.match_info["message_id"]
    index = request.app[TASKS].index
    newest = await index.newest_for_message(message_id)
    found = await index.letters([newest] if newest else [])
    bound = principal(request).tenant
    if not found or bound not in (None, found[0].task.tenant):
        raise NotFound(f"no dead letter for message {message_id}")
    task_id = f"redrive_{secrets.token_hex(8)}"
    names = TopicNames(request.app[SETTINGS])
    await redrive_ids(
        request.app[PRODUCER], names, index, [found[0].id], task_id=task_id, force=True
    )
    return json_response(
        {"message_id": message_id, "letter_id": found[0].id, "redriven": 1}, status=202
    )


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
