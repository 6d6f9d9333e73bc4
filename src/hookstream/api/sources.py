"""Routes for sources (topics hookstream routes from): create, list, get, delete.

Sources live on the compacted `config` topic like tenants and keys, and need
the admin scope: a source feeds every tenant it names. Every worker's router
starts consuming a new source within seconds and stops when it is deleted.
"""

from __future__ import annotations

from dataclasses import replace

from aiohttp import web
from aiokafka.errors import KafkaError

from hookstream.api import schemas
from hookstream.api.paging import AFTER, LIMIT, id_page
from hookstream.api.problems import Conflict, NotFound, ServiceUnavailable, json_response
from hookstream.api.routes import BODY, Operations
from hookstream.api.state import CATALOG, SETTINGS
from hookstream.engine.source import Source, new_source
from hookstream.errors import FieldProblem, InvalidInput
from hookstream.kafka import log_ends
from hookstream.topics import TopicNames

routes = Operations("sources")
SOURCE_PATH = "/v1/sources/{source_id}"


@routes.post("/v1/sources", scope="admin", body=schemas.SOURCE_CREATE, ok=(201, schemas.SOURCE))
async def create_source(request: web.Request) -> web.Response:
    """Start routing from a topic. 409 when the id or the topic is taken; 422 when the
    topic does not exist. With `start: latest` (the default) routing begins at the
    topic's end now; with `earliest`, at each partition's first offset."""
    settings = request.app[SETTINGS]
    source = new_source(request[BODY], reserved_topics=TopicNames(settings).own())
    catalog = request.app[CATALOG]
    await catalog.sync()
    if source.id in catalog.sources:
        raise Conflict(f"source {source.id} exists")
    for other in catalog.sources.values():
        if other.topic == source.topic:
            # Two sources on one topic would route each record twice.
            raise Conflict(f"topic {source.topic} is already source {other.id}")
    try:
        ends = await log_ends(settings, source.topic)
    except (KafkaError, TimeoutError, OSError) as exc:
        raise ServiceUnavailable(f"Kafka did not answer for {source.topic}; retry") from exc
    if ends is None:
        raise InvalidInput([FieldProblem("topic", f"no topic {source.topic} on the cluster")])
    if source.start == "latest":
        source = replace(source, start_offsets=ends)
    await catalog.put_source(source)
    return json_response(source.to_dict(), status=201)


@routes.get(
    "/v1/sources", scope="admin", query=(LIMIT, AFTER), ok=(200, schemas.page(schemas.SOURCE))
)
async def list_sources(request: web.Request) -> web.Response:
    """Sources in id order, in cursor pages."""
    catalog = request.app[CATALOG]
    await catalog.sync()
    page = id_page(
        request, list(catalog.sources.values()), key=lambda s: s.id, render=lambda s: s.to_dict()
    )
    return json_response(page)


@routes.get(SOURCE_PATH, scope="admin", ok=(200, schemas.SOURCE))
async def get_source(request: web.Request) -> web.Response:
    """One source."""
    return json_response((await _find(request)).to_dict())


@routes.delete(SOURCE_PATH, scope="admin", ok=(204, None))
async def delete_source(request: web.Request) -> web.Response:
    """Stop routing from the topic. Records routed already are delivered as usual."""
    source = await _find(request)
    await request.app[CATALOG].delete_source(source.id)
    return web.Response(status=204)


async def _find(request: web.Request) -> Source:
    source_id = request.match_info["source_id"]
    catalog = request.app[CATALOG]
    await catalog.sync()
    found = catalog.sources.get(source_id)
    if found is None:
        raise NotFound(f"no source {source_id}")
    return found
