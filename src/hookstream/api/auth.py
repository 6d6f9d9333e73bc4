"""API authentication: `Authorization: Bearer <key>`, checked in one middleware.

Until API keys (scopes, tenant-bound keys) land, the only key is the admin key
from settings. Comparison is constant-time.
"""

from __future__ import annotations

import hmac

from aiohttp import web
from aiohttp.typedefs import Middleware

from hookstream.api.problems import Handler, Unauthorized

# Probes, the Prometheus scrape and the dashboard page itself (its data calls carry the key).
PUBLIC_PATHS = frozenset({"/healthz", "/readyz", "/metrics", "/dashboard"})


def auth_middleware(admin_key: str) -> Middleware:
    """Middleware refusing requests without the admin key (401 problem)."""
    expected = admin_key.encode()

    @web.middleware
    async def check(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path in PUBLIC_PATHS:
            return await handler(request)
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not token:
            raise Unauthorized("send Authorization: Bearer <api key>")
        if not expected or not hmac.compare_digest(token.strip().encode(), expected):
            raise Unauthorized("the API key is not valid")
        return await handler(request)

    return check
