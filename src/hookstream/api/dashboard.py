"""GET /dashboard: the live operator page, one static HTML file with no build step.

The page itself is public; it asks for an API key and sends it with each of
its calls (/v1/stats, /v1/dlq, redrive, enable), so it can do nothing the key
could not.
"""

from __future__ import annotations

from importlib import resources

from aiohttp import web

routes = web.RouteTableDef()

_PAGE = resources.files("hookstream.api").joinpath("static/dashboard.html")


@routes.get("/dashboard")
async def dashboard(_: web.Request) -> web.Response:
    """The operator page."""
    return web.Response(
        body=_PAGE.read_bytes(),
        content_type="text/html",
        headers={
            "cache-control": "no-cache",
            "content-security-policy": "default-src 'self'; style-src 'unsafe-inline'; "
            "script-src 'unsafe-inline'; img-src 'self' data:",
        },
    )
