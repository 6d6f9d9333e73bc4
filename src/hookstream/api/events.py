"""Routes for publishing events over HTTP (for services that cannot speak Kafka)."""

from __future__ import annotations

from aiohttp import web

from hookstream.api.problems import json_body, json_response
from hookstream.api.state import PUBLISHER
from hookstream.engine.event import validate_event

routes = web.RouteTableDef()


@routes.post("/v1/events")
async def publish_event(request: web.Request) -> web.Response:
    """Validate and publish one event; 202 with its id once the broker has it."""
    event = validate_event(await json_body(request))
    await request.app[PUBLISHER].publish(event)
    return json_response({"id": event.id}, status=202)
