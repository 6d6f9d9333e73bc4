"""POST /v1/filters/test: which of the last N real events would a filter match?

Lets a tenant try a payload filter on real traffic before putting it on an
endpoint. A key bound to a tenant sees only its tenant's events.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from hookstream.api import schemas
from hookstream.api.auth import principal
from hookstream.api.problems import json_response
from hookstream.api.routes import BODY, Operations
from hookstream.api.state import SETTINGS
from hookstream.engine.filters import compile_filter
from hookstream.engine.matching import compile_globs
from hookstream.engine.names import glob_problem
from hookstream.errors import FieldProblem, InvalidInput
from hookstream.views.recent_events import recent_events

routes = Operations("filters")
DEFAULT_LAST = 100


@routes.post(
    "/v1/filters/test",
    scope="endpoints:read",
    body=schemas.FILTER_TEST,
    ok=(200, schemas.FILTER_RESULT),
)
async def test_filter(request: web.Request) -> web.Response:
    """Run `filter` over the last N events (`last`, default 100, at most 1,000).

    `event_type` (a glob) and `tenant` narrow which of those events count.
    """
    body: dict[str, Any] = request[BODY]
    predicate = compile_filter(body["filter"])
    types = None
    if "event_type" in body:
        message = glob_problem(body["event_type"])
        if message:
            raise InvalidInput([FieldProblem("event_type", message)])
        types = compile_globs([body["event_type"]])
    tenant = principal(request).tenant or body.get("tenant")
    examined = matched = 0
    data = []
    for event in await recent_events(request.app[SETTINGS], body.get("last", DEFAULT_LAST)):
        if (tenant and event.tenant != tenant) or (types and not types.match(event.type)):
            continue
        examined += 1
        if predicate(event.filter_document()):
            matched += 1
            data.append(
                {"id": event.id, "type": event.type, "tenant": event.tenant, "data": event.data}
            )
    return json_response({"examined": examined, "matched": matched, "data": data})
