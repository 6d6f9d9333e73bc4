"""Operations: each route declared once, with what validates it and what documents it.

    routes = Operations("endpoints")

    @routes.post("/v1/endpoints", scope="endpoints:write", body=ENDPOINT_CREATE,
                 ok=(201, ENDPOINT_WITH_SECRET))
    async def create_endpoint(request): ...

The declaration registers the aiohttp route, checks the caller's scope,
validates the JSON body against `body` (422 naming each bad field) and the
query against `query`, marks deprecated routes, and is what the OpenAPI
document (openapi.py) is generated from, so the spec cannot drift from what
the server enforces.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from jsonschema import Draft202012Validator, ValidationError, validators

from hookstream.api.auth import principal
from hookstream.api.problems import BadRequest, Forbidden, Unprocessable, json_body
from hookstream.engine.apikeys import ADMIN
from hookstream.errors import FieldProblem, InvalidInput

log = logging.getLogger(__name__)

RouteHandler = Callable[[web.Request], Awaitable[web.StreamResponse]]
Schema = dict[str, Any]
BODY = web.RequestKey("body", dict)

# The API's own schemas mean a JSON integer by "integer". Standard JSON Schema
# also counts 1.0, which orjson reads as a float that handlers cannot use as
# a count or an index; so a float is never an integer here.
RequestValidator = validators.extend(  # type: ignore[no-untyped-call]
    Draft202012Validator,
    type_checker=Draft202012Validator.TYPE_CHECKER.redefine(
        "integer", lambda _, value: isinstance(value, int) and not isinstance(value, bool)
    ),
)
DEPRECATION = web.RequestKey("deprecation", object)


@dataclass(frozen=True, slots=True)
class Param:
    """A query parameter: its name, JSON Schema (string, integer or boolean) and meaning."""

    name: str
    schema: Schema
    description: str = ""
    required: bool = False


@dataclass(frozen=True, slots=True)
class Deprecated:
    """A route on its way out: `Deprecation` since `since`, gone at `sunset` (HTTP dates)."""

    since: int  # epoch seconds
    sunset: str  # IMF-fixdate
    link: str = ""  # the replacement's documentation


@dataclass
class Operation:
    """One method on one path, and everything said about it."""

    method: str
    path: str
    handler: RouteHandler
    tag: str
    scope: str | None
    body: Schema | None
    query: tuple[Param, ...]
    ok: tuple[int, Schema | None]
    deprecated: Deprecated | None
    body_optional: bool = False
    # The engine's own check of a body (raises InvalidInput), run as well when
    # the schema refuses it, so the 422 lists the engine's findings too.
    deeper: Callable[[web.Request, dict[str, Any]], object] | None = None
    validator: Any = field(default=None, repr=False)  # a RequestValidator

    @property
    def operation_id(self) -> str:
        """The handler's name: unique across the API."""
        return self.handler.__name__

    @property
    def summary(self) -> str:
        """The first line of the handler's docstring."""
        return (self.handler.__doc__ or "").strip().splitlines()[0] if self.handler.__doc__ else ""

    @property
    def description(self) -> str:
        """The handler's docstring after its first line."""
        lines = (self.handler.__doc__ or "").strip().splitlines()[1:]
        return "\n".join(line.strip() for line in lines).strip()


class Operations:
    """The operations of one resource; `app.add_routes(ops.route_defs())`."""

    def __init__(self, tag: str) -> None:
        self.tag = tag
        self.operations: list[Operation] = []

    def get(self, path: str, **options: Any) -> Callable[[RouteHandler], RouteHandler]:
        """Declare a GET operation."""
        return self.route("GET", path, **options)

    def post(self, path: str, **options: Any) -> Callable[[RouteHandler], RouteHandler]:
        """Declare a POST operation."""
        return self.route("POST", path, **options)

    def patch(self, path: str, **options: Any) -> Callable[[RouteHandler], RouteHandler]:
        """Declare a PATCH operation."""
        return self.route("PATCH", path, **options)

    def delete(self, path: str, **options: Any) -> Callable[[RouteHandler], RouteHandler]:
        """Declare a DELETE operation."""
        return self.route("DELETE", path, **options)

    def route(
        self,
        method: str,
        path: str,
        *,
        scope: str | None,
        body: Schema | None = None,
        query: tuple[Param, ...] = (),
        ok: tuple[int, Schema | None] = (200, None),
        deprecated: Deprecated | None = None,
        body_optional: bool = False,
        deeper: Callable[[web.Request, dict[str, Any]], object] | None = None,
    ) -> Callable[[RouteHandler], RouteHandler]:
        """Declare an operation; `scope` None means no key is needed.

        With `body_optional` a request without a body counts as `{}`.
        """

        def register(handler: RouteHandler) -> RouteHandler:
            validator = None if body is None else RequestValidator(body)
            self.operations.append(
                Operation(
                    method,
                    path,
                    handler,
                    self.tag,
                    scope,
                    body,
                    query,
                    ok,
                    deprecated,
                    body_optional,
                    deeper,
                    validator,
                )
            )
            return handler

        return register

    def route_defs(self) -> list[web.RouteDef]:
        """The aiohttp routes, each handler wrapped in its checks."""
        return [web.route(op.method, op.path, _checked(op)) for op in self.operations]


def _checked(op: Operation) -> RouteHandler:
    async def handle(request: web.Request) -> web.StreamResponse:
        if op.deprecated is not None:
            request[DEPRECATION] = op.deprecated
        if op.scope is not None:
            caller = principal(request)
            if not caller.allows(op.scope):
                raise Forbidden(f"this key lacks the {op.scope} scope")
            if op.scope == ADMIN and caller.tenant is not None:
                # Admin operations span tenants; a key bound to one never reaches them
                # (keys stored before binding admin was refused keep only their tenant).
                raise Forbidden("a key bound to a tenant cannot do this")
        _check_query(op, request)
        if op.validator is not None:
            if op.body_optional and not request.body_exists:
                request[BODY] = {}
            else:
                request[BODY] = await _valid_body(op, request)
        return await op.handler(request)

    handle.__name__ = op.handler.__name__
    handle.__doc__ = op.handler.__doc__
    return handle


async def _valid_body(op: Operation, request: web.Request) -> Any:
    assert op.validator is not None
    raw = await json_body(request)
    problems: list[FieldProblem] = []
    for error in sorted(op.validator.iter_errors(raw), key=lambda e: list(map(str, e.path))):
        problems.extend(_problems(error))
    if problems and op.deeper is not None and isinstance(raw, dict):
        # Report the engine's findings too (its words first), so one round trip
        # names every bad field.
        try:
            op.deeper(request, raw)
        except InvalidInput as exc:
            problems = [*exc.problems, *problems]
        except Exception:
            # The engine checks raise only InvalidInput on any JSON; anything else is
            # a bug to see in the logs. The caller still gets the schema's 422.
            log.exception(
                "engine check failed on a body the schema refused", extra={"path": request.path}
            )
    if problems:
        unique = list({p.field: p for p in reversed(problems)}.values())[::-1]
        raise Unprocessable("the request body failed validation", errors=_listed(unique))
    return raw


def _problems(error: ValidationError) -> list[FieldProblem]:
    """One problem per bad field: each unknown or missing property named."""
    where = _path(error.absolute_path)
    prefix = "" if where == "$" else where + "."
    if error.validator == "additionalProperties" and isinstance(error.instance, dict):
        known = set(error.schema.get("properties", {})) if isinstance(error.schema, dict) else set()
        return [
            FieldProblem(prefix + name, "unknown field")
            for name in error.instance
            if name not in known
        ]
    if error.validator == "required" and isinstance(error.instance, dict):
        required = error.validator_value if isinstance(error.validator_value, list) else []
        return [
            FieldProblem(prefix + name, "is required")
            for name in required
            if name not in error.instance
        ]
    return [FieldProblem(where, _message(error))]


_MESSAGES = {
    "type": "must be of type {}",
    "enum": "must be one of {}",
    "const": "must be {}",
    "pattern": "must match {}",
    "minLength": "must have at least {} characters",
    "maxLength": "must have at most {} characters",
    "minItems": "must have at least {} items",
    "maxItems": "must have at most {} items",
    "maxProperties": "must have at most {} keys",
    "minimum": "must be at least {}",
    "maximum": "must be at most {}",
    "exclusiveMinimum": "must be more than {}",
    "exclusiveMaximum": "must be less than {}",
    "uniqueItems": "must not repeat an item",
}


def _message(error: ValidationError) -> str:
    """What the rule asks, without echoing the (maybe huge) value given."""
    template = _MESSAGES.get(str(error.validator))
    if template is None:
        return error.message[:300]
    value = error.validator_value
    shown = ", ".join(map(str, value)) if isinstance(value, list) else str(value)
    return template.format(shown)[:300]


def _check_query(op: Operation, request: web.Request) -> None:
    """400 for an unknown or repeated parameter, or one its declared schema refuses."""
    declared = {p.name: p for p in op.query}
    for name in request.query:
        if name not in declared:
            raise BadRequest(f"unknown query parameter {name!r}")
        if len(request.query.getall(name)) > 1:
            raise BadRequest(f"the query parameter {name!r} is given more than once")
    for param in op.query:
        raw = request.query.get(param.name)
        if raw is None:
            if param.required:
                raise BadRequest(f"the query parameter {param.name!r} is required")
            continue
        value: Any = raw
        if param.schema.get("type") == "integer":
            try:
                value = int(raw)
            except ValueError:
                raise BadRequest(f"{param.name} must be a whole number") from None
        problem = next(RequestValidator(param.schema).iter_errors(value), None)
        if problem is not None:
            raise BadRequest(f"{param.name} {_message(problem)}")


def _path(parts: Any) -> str:
    path = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in parts).lstrip(".")
    return path or "$"


def _listed(problems: list[FieldProblem]) -> list[dict[str, str]]:
    return [{"field": p.field, "message": p.message} for p in problems]
