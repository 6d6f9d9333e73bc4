"""The OpenAPI 3.1 document, generated from the declared operations, and /docs.

Nothing here is written by hand per route: paths, parameters, bodies, scopes
and responses all come from the `Operations` declarations whose schemas also
validate the requests (routes.py, schemas.py).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable
from importlib import resources
from typing import Any

import orjson
from aiohttp import web

from hookstream import __version__
from hookstream.api.routes import DEPRECATION, Deprecated, Operation
from hookstream.api.schemas import PROBLEM

routes = web.RouteTableDef()
SPEC = web.AppKey("openapi", bytes)
PATH_PARAM = re.compile(r"{(\w+)}")

# Swagger UI is served from the swagger-ui-py package's copy of swagger-ui-dist (5.x,
# which reads OpenAPI 3.1), never a CDN: the page works on an air-gapped install.
DOCS_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>hookstream API</title>
<link rel="stylesheet" href="/docs/assets/swagger-ui.css">
</head><body><div id="docs"></div>
<script src="/docs/assets/swagger-ui-bundle.js"></script>
<script>SwaggerUIBundle({url: "/v1/openapi.json", dom_id: "#docs", persistAuthorization: true});
</script></body></html>
"""


def build_spec(operations: Iterable[Operation]) -> dict[str, Any]:
    """The OpenAPI 3.1 document for `operations`."""
    paths: dict[str, dict[str, Any]] = {}
    for op in operations:
        paths.setdefault(op.path, {})[op.method.lower()] = _operation(op)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "hookstream control API",
            "version": __version__,
            "description": "Endpoints, keys, event types, ingest and dead letters. Every error "
            "is RFC 9457 problem+json; lists are cursor pages (`limit`, `after`, `next`).",
        },
        "jsonSchemaDialect": "https://json-schema.org/draft/2020-12/schema",
        "security": [{"bearer": []}],
        "paths": paths,
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": {"Problem": PROBLEM},
            "responses": {
                "Problem": {
                    "description": "An error, as RFC 9457 problem details",
                    "content": {"application/problem+json": {"schema": {"$ref": _PROBLEM_REF}}},
                }
            },
        },
    }


_PROBLEM_REF = "#/components/schemas/Problem"


def _operation(op: Operation) -> dict[str, Any]:
    status, schema = op.ok
    ok: dict[str, Any] = {"description": "Success"}
    if schema is not None:
        ok["content"] = {"application/json": {"schema": schema}}
    parameters = [
        {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
        for name in PATH_PARAM.findall(op.path)
    ] + [
        {
            "name": p.name,
            "in": "query",
            "required": p.required,
            "schema": p.schema,
            "description": p.description,
        }
        for p in op.query
    ]
    doc: dict[str, Any] = {
        "operationId": op.operation_id,
        "summary": op.summary,
        "tags": [op.tag],
        "parameters": parameters,
        "responses": {str(status): ok, "default": {"$ref": "#/components/responses/Problem"}},
    }
    if op.description:
        doc["description"] = op.description
    if op.scope is not None:
        doc["description"] = f"{doc.get('description', '')}\n\nScope: `{op.scope}`.".strip()
    if op.body is not None:
        doc["requestBody"] = {
            "required": not op.body_optional,
            "content": {"application/json": {"schema": op.body}},
        }
    if op.deprecated is not None:
        doc["deprecated"] = True
    return doc


@routes.get("/v1/openapi.json")
async def openapi_document(request: web.Request) -> web.Response:
    """The OpenAPI 3.1 document (no key needed)."""
    return web.Response(body=request.app[SPEC], content_type="application/json")


@routes.get("/docs")
async def docs_page(request: web.Request) -> web.Response:
    """Interactive API docs over the OpenAPI document."""
    return web.Response(text=DOCS_PAGE, content_type="text/html")


DOCS_ASSETS = {"swagger-ui-bundle.js": "application/javascript", "swagger-ui.css": "text/css"}


@routes.get("/docs/assets/{name}")
async def docs_asset(request: web.Request) -> web.Response:
    """One of Swagger UI's files, from the installed package (no key needed)."""
    name = request.match_info["name"]
    if name not in DOCS_ASSETS:
        raise web.HTTPNotFound()
    return web.Response(
        body=_asset(name),
        content_type=DOCS_ASSETS[name],
        headers={"Cache-Control": "public, max-age=86400"},
    )


@functools.cache
def _asset(name: str) -> bytes:
    return (resources.files("swagger_ui") / "static" / name).read_bytes()


def encode_spec(operations: Iterable[Operation]) -> bytes:
    """The document as served."""
    return orjson.dumps(build_spec(operations))


async def add_deprecation_headers(request: web.Request, response: web.StreamResponse) -> None:
    """`on_response_prepare` hook: `Deprecation` (RFC 9745) and `Sunset` (RFC 8594)."""
    deprecated = request.get(DEPRECATION)
    if isinstance(deprecated, Deprecated):
        response.headers["Deprecation"] = f"@{deprecated.since}"
        response.headers["Sunset"] = deprecated.sunset
        if deprecated.link:
            response.headers["Link"] = f'<{deprecated.link}>; rel="deprecation"'
