"""The SSRF check at registration: resolve the endpoint's canonical host and refuse
it when any address it resolves to is one deliveries may not reach.

The host looked up is the one the HTTP client will connect to
(`engine.destinations.destination`), never a second parse of the URL.
Deliveries check again on every connection (the guarded resolver) and connect
only to the addresses checked, so a name that later flips to a private address
is refused then too. A name that does not resolve yet is accepted: it is
checked when it first does.
"""

from __future__ import annotations

import asyncio
import socket

from aiohttp import web

from hookstream.api.state import RESOLVER, SETTINGS
from hookstream.engine.destinations import destination
from hookstream.errors import FieldProblem, InvalidInput

RESOLVE_TIMEOUT_S = 3.0


async def check_destination(request: web.Request, url: str) -> None:
    """Raise InvalidInput (422) when `url`'s host resolves to a forbidden address."""
    policy = request.app[SETTINGS].egress
    target = destination(url, policy)  # refuses what no lookup could make right
    if policy.allow_private or target.address is not None:
        return  # dev mode, or a literal judged already
    try:
        async with asyncio.timeout(RESOLVE_TIMEOUT_S):
            answers = await request.app[RESOLVER].resolve(target.host, 0, socket.AF_UNSPEC)
    except (OSError, UnicodeError, TimeoutError):
        return
    refused = sorted({a["host"] for a in answers if not policy.permits(a["host"])})
    if refused:
        raise InvalidInput(
            [
                FieldProblem(
                    "url", f"{target.host} resolves to a private or reserved address ({refused[0]})"
                )
            ]
        )
