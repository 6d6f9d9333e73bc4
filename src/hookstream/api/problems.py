"""RFC 9457 problem+json errors: raise a Problem anywhere, one middleware renders it.

aiohttp's own HTTP errors (404 route, 405, 413 body too large) are rendered the
same way, and an unexpected exception becomes a 500 problem without details.
"""

from __future__ import annotations

import codecs
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from aiohttp import web

from hookstream.engine import json_input
from hookstream.errors import FieldProblem, InvalidInput, RegistryUnavailable

log = logging.getLogger(__name__)

PROBLEM_TYPE = "application/problem+json"
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class Problem(Exception):
    """An error the API answers with; subclasses fix status and title."""

    status = 500
    title = "Internal Server Error"

    def __init__(self, detail: str = "", **extra: Any) -> None:
        super().__init__(detail or self.title)
        self.detail = detail
        self.extra = extra

    def response(self, instance: str) -> web.Response:
        """The problem+json response for this error."""
        body: dict[str, Any] = {
            "type": "about:blank",
            "title": self.title,
            "status": self.status,
            "instance": instance,
        }
        if self.detail:
            body["detail"] = self.detail
        body.update(self.extra)
        headers = {"WWW-Authenticate": "Bearer"} if self.status == 401 else None
        return web.Response(
            body=orjson.dumps(body), status=self.status, content_type=PROBLEM_TYPE, headers=headers
        )


class BadRequest(Problem):
    """The request could not be read (not JSON, wrong content)."""

    status = 400
    title = "Bad Request"


class Unauthorized(Problem):
    """No valid API key."""

    status = 401
    title = "Unauthorized"


class Forbidden(Problem):
    """The key is valid but lacks the permission."""

    status = 403
    title = "Forbidden"


class NotFound(Problem):
    """No such object (or not visible to this key)."""

    status = 404
    title = "Not Found"


class Conflict(Problem):
    """The request conflicts with the current state (say so in `detail`)."""

    status = 409
    title = "Conflict"


class UnsupportedMediaType(Problem):
    """A body in an encoding the API does not read."""

    status = 415
    title = "Unsupported Media Type"


class Unprocessable(Problem):
    """The body is JSON but fails validation; `errors` lists each bad field."""

    status = 422
    title = "Unprocessable Content"

    @classmethod
    def from_invalid(cls, exc: InvalidInput) -> Unprocessable:
        """Build from the engine's validation error."""
        return cls("the request body failed validation", errors=_errors(exc.problems))


class ServiceUnavailable(Problem):
    """A view this answer depends on is down; retry later."""

    status = 503
    title = "Service Unavailable"


def _errors(problems: list[FieldProblem]) -> list[dict[str, str]]:
    return [{"field": p.field, "message": p.message} for p in problems]


@web.middleware
async def problem_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Render every error as problem+json."""
    try:
        return await handler(request)
    except Problem as exc:
        return exc.response(request.path)
    except InvalidInput as exc:
        return Unprocessable.from_invalid(exc).response(request.path)
    except RegistryUnavailable as exc:
        log.error("API unavailable: config view stopped", extra={"error": str(exc)})
        return ServiceUnavailable("configuration is unavailable; retry shortly").response(
            request.path
        )
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        generic = Problem(exc.text if exc.text and exc.status != 404 else "")
        generic.status, generic.title = exc.status, exc.reason
        response = generic.response(request.path)
        if exc.status == 405 and "Allow" in exc.headers:
            response.headers["Allow"] = exc.headers["Allow"]
        return response
    except Exception:
        log.exception("unhandled API error", extra={"path": request.path})
        return Problem().response(request.path)


async def json_body(request: web.Request) -> Any:
    """The request's JSON body, or a problem saying why it is not one.

    400 for what is not JSON, 415 for a charset that cannot be decoded, 422
    (naming the field) for JSON past the limits every ingest path shares
    (engine/json_input.py: nesting depth, 64-bit integers).
    """
    if request.content_type != "application/json":
        raise BadRequest("send a JSON body with Content-Type: application/json")
    raw = _as_utf8(await request.read(), request.charset)
    try:
        return json_input.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise BadRequest(f"the body is not valid JSON: {exc}") from None


def _as_utf8(raw: bytes, charset: str | None) -> bytes:
    """The body re-encoded as UTF-8 when its Content-Type names another charset."""
    if charset is None:
        return raw
    try:
        codec = codecs.lookup(charset).name
    except LookupError:
        raise UnsupportedMediaType(f"unknown charset {charset[:40]!r}; send UTF-8") from None
    if codec == "utf-8":
        return raw
    try:
        return raw.decode(codec).encode("utf-8", "surrogatepass")
    except UnicodeError:
        raise BadRequest(f"the body is not valid {codec}") from None


def json_response(data: Any, status: int = 200) -> web.Response:
    """A JSON response encoded with orjson."""
    return web.Response(body=orjson.dumps(data), status=status, content_type="application/json")
