"""Routes for publishing events over HTTP (for services that cannot speak Kafka).

Every event is checked first (envelope, tenant, the type's JSON Schema), so a
batch is all or nothing. Ids are idempotent for `idempotency_window_s`: an id
already published answers `duplicate: true` and is not published again. When
Redis is away events are published without that check (logged): at-least-once
delivery already lets receivers see a repeat, while refusing events would lose them.
"""

from __future__ import annotations

import logging
from typing import Any

from aiohttp import web
from redis.exceptions import RedisError

from hookstream.api import schemas
from hookstream.api.auth import principal
from hookstream.api.idempotency import Claim, IdempotencyStore
from hookstream.api.problems import Conflict, Forbidden, json_response
from hookstream.api.routes import BODY, Operations
from hookstream.api.state import CATALOG, PUBLISHER, REDIS, SETTINGS
from hookstream.engine.event import Event, validate_event
from hookstream.errors import FieldProblem, InvalidInput
from hookstream.redis_keys import RedisKeys

log = logging.getLogger(__name__)
routes = Operations("events")


def _engine_check(request: web.Request, raw: dict[str, Any]) -> object:
    return _checked(request, [dict(raw)], single=True)


def _engine_batch_check(request: web.Request, raw: dict[str, Any]) -> object:
    items = raw.get("events")
    if not isinstance(items, list):
        return None
    return _checked(request, [dict(e) if isinstance(e, dict) else e for e in items], single=False)


@routes.post(
    "/v1/events",
    scope="events:publish",
    body=schemas.EVENT,
    ok=(202, schemas.ACCEPTED_EVENT),
    deeper=_engine_check,
)
async def publish_event(request: web.Request) -> web.Response:
    """Validate and publish one event; 202 with its id once the broker has it."""
    raw = request[BODY]
    (event,) = _checked(request, [raw], single=True)
    (duplicate,) = await _publish(request, [event], _generated([raw], [event]))
    return json_response({"id": event.id, "duplicate": duplicate}, status=202)


@routes.post(
    "/v1/events/batch",
    scope="events:publish",
    body=schemas.EVENT_BATCH,
    ok=(202, schemas.ACCEPTED_BATCH),
    deeper=_engine_batch_check,
)
async def publish_batch(request: web.Request) -> web.Response:
    """Publish up to 1,000 events: all are checked first, then published as one batch."""
    body = request[BODY]
    assert isinstance(body, dict)
    events = _checked(request, body["events"], single=False)
    duplicates = await _publish(request, events, _generated(body["events"], events))
    return json_response(
        {"data": [{"id": e.id, "duplicate": d} for e, d in zip(events, duplicates, strict=True)]},
        status=202,
    )


def _generated(raws: list[Any], events: list[Event]) -> set[tuple[str, str]]:
    """The (tenant, id) of events whose id hookstream made up (the body had none)."""
    return {(e.tenant, e.id) for raw, e in zip(raws, events, strict=True) if "id" not in raw}


def _checked(request: web.Request, raws: list[Any], *, single: bool) -> list[Event]:
    bound = principal(request).tenant
    catalog = request.app[CATALOG]
    events: list[Event] = []
    problems: list[FieldProblem] = []
    for i, raw in enumerate(raws):
        where = "" if single else f"events[{i}]."
        if bound is not None and isinstance(raw, dict) and raw.setdefault("tenant", bound) != bound:
            raise Forbidden(f"this key publishes for tenant {bound} only")
        try:
            event = validate_event(raw)
        except InvalidInput as exc:
            problems.extend(FieldProblem(where + p.field, p.message) for p in exc.problems)
            continue
        known = catalog.event_types.get(event.type)
        if known is not None:
            problems.extend(known.data_problems(event.data, where + "data"))
        events.append(event)
    if problems:
        raise InvalidInput(problems)
    return events


async def _publish(
    request: web.Request, events: list[Event], generated: set[tuple[str, str]]
) -> list[bool]:
    """Publish the events not seen before; return which were duplicates.

    An id given twice in one batch is published once (the repeat is a duplicate).
    Ids hookstream generated cannot repeat, so only the caller's are claimed.
    """
    settings = request.app[SETTINGS]
    store = IdempotencyStore(request.app[REDIS], RedisKeys(settings), settings.idempotency_window_s)
    first: dict[tuple[str, str], Event] = {}
    for event in events:
        first.setdefault((event.tenant, event.id), event)
    ids = [ident for ident in first if ident not in generated]
    try:
        claims = dict(zip(ids, await store.claim(ids), strict=True))
        claims.update({ident: Claim.NEW for ident in generated})
    except RedisError as exc:
        log.warning("publishing without the duplicate check", extra={"error": str(exc)})
        await request.app[PUBLISHER].publish_many(list(first.values()))
        return [first[(e.tenant, e.id)] is not e for e in events]
    ours = [ident for ident in first if claims[ident] is Claim.NEW]  # in request order
    claimed = [ident for ident in ours if ident not in generated]
    if Claim.PENDING in claims.values():
        await store.release(claimed)
        raise Conflict("an event with one of these ids is being published now; retry shortly")
    try:
        await request.app[PUBLISHER].publish_many([first[ident] for ident in ours])
    except BaseException:
        await store.release(claimed)
        raise
    await store.confirm(claimed)
    return [
        claims[(e.tenant, e.id)] is Claim.DONE or first[(e.tenant, e.id)] is not e for e in events
    ]
