"""API authentication: `Authorization: Bearer <key>`, checked in one middleware.

A key is the admin key from settings (every scope, no tenant, no rate limit)
or an API key from the catalog (its scopes, maybe one tenant, a rate tier).
Comparisons are constant-time; an unknown, malformed or revoked key gets the
same 401 as a wrong one, so nothing says which keys exist. After the key, the
caller's rate tier is charged (ratelimit.py).
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass

from aiohttp import web
from aiohttp.typedefs import Middleware

from hookstream.api.problems import Handler, NotFound, Unauthorized
from hookstream.api.ratelimit import charge
from hookstream.api.state import CATALOG
from hookstream.engine.apikeys import ADMIN, key_id_of

# Probes, the Prometheus scrape, the spec, its docs page and the dashboard page
# itself (the dashboard's data calls carry the key).
PUBLIC_PATHS = frozenset(
    {"/healthz", "/readyz", "/metrics", "/dashboard", "/v1/openapi.json", "/docs"}
)
PUBLIC_PREFIX = "/docs/assets/"  # the docs page's own files
PRINCIPAL = web.RequestKey("principal", object)


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: a key id, its scopes, the tenant it is bound to and its tier."""

    key_id: str
    scopes: tuple[str, ...]
    tenant: str | None
    tier: str | None  # None: not rate limited

    def allows(self, scope: str) -> bool:
        """True when the caller holds `scope` (admin holds every scope)."""
        return ADMIN in self.scopes or scope in self.scopes

    def sees(self, tenant: str) -> bool:
        """True when objects of `tenant` are visible to this caller."""
        return self.tenant is None or self.tenant == tenant


ADMIN_PRINCIPAL = Principal("admin", (ADMIN,), None, None)


def principal(request: web.Request) -> Principal:
    """The caller of an authenticated request."""
    found = request.get(PRINCIPAL)
    if not isinstance(found, Principal):
        raise Unauthorized("send Authorization: Bearer <api key>")
    return found


def require_tenant(request: web.Request, tenant: str, what: str) -> None:
    """404 (never 403: existence is not revealed) when `tenant` is not the caller's."""
    if not principal(request).sees(tenant):
        raise NotFound(f"no {what}")


def auth_middleware(admin_key: str) -> Middleware:
    """Middleware refusing requests without a valid key (401), then rate limiting."""
    # Digests are compared, so even the admin key's length takes no part in timing.
    expected = hashlib.sha256(admin_key.encode()).digest()

    @web.middleware
    async def check(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path in PUBLIC_PATHS or request.path.startswith(PUBLIC_PREFIX):
            return await handler(request)
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise Unauthorized("send Authorization: Bearer <api key>")
        # Keys are printable ASCII; anything else (raw bytes such as \xff arrive as
        # surrogates) is simply not a key, and gets the same 401 as a wrong one.
        valid = token.isascii() and token.isprintable()
        who = await _identify(request, token, expected) if valid else None
        if who is None:
            raise Unauthorized("the API key is not valid")
        request[PRINCIPAL] = who
        if who.tier is not None:
            await charge(request, who.key_id, who.tier)
        return await handler(request)

    return check


async def _identify(request: web.Request, token: str, admin: bytes) -> Principal | None:
    presented = hashlib.sha256(token.encode()).digest()
    if hmac.compare_digest(presented, admin):
        return ADMIN_PRINCIPAL
    key_id = key_id_of(token)
    if key_id is None:
        return None
    catalog = request.app[CATALOG]
    stored = catalog.api_keys.get(key_id)
    if stored is None:  # created through another API process a moment ago?
        await catalog.sync()
        stored = catalog.api_keys.get(key_id)
    if stored is None or not stored.matches(token):
        return None
    return Principal(stored.id, stored.scopes, stored.tenant, stored.tier)
