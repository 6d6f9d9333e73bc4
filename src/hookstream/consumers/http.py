"""The one shared aiohttp session every delivery goes through.

Keep-alive with a per-host connection cap, a DNS cache, the SSRF-guarded
resolver, no cookie jar (receivers must not be able to set state), and no
automatic decompression (we keep only an excerpt of the reply).
"""

from __future__ import annotations

import aiohttp
from aiohttp.abc import AbstractResolver

from hookstream import __version__
from hookstream.config import Settings
from hookstream.engine.destinations import GuardedResolver


def build_session(
    settings: Settings, resolver: AbstractResolver | None = None
) -> aiohttp.ClientSession:
    """A ClientSession tuned for webhook delivery; the caller closes it.

    `resolver` replaces the system resolver under the guard (tests map names).
    """
    connector = aiohttp.TCPConnector(
        limit=settings.in_flight,
        limit_per_host=settings.http_connections_per_host,
        ttl_dns_cache=60,
        resolver=GuardedResolver(resolver or aiohttp.DefaultResolver(), settings.egress),
        enable_cleanup_closed=True,
    )
    return aiohttp.ClientSession(
        connector=connector,
        cookie_jar=aiohttp.DummyCookieJar(),
        auto_decompress=False,
        headers={"User-Agent": f"hookstream/{__version__}"},
    )
