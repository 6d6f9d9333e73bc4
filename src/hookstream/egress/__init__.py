"""Egress: the HTTP side of delivery, where a webhook leaves the process.

`build_sender(settings)` gives the worker and the API the same sender: one
shared pool of keep-alive HTTP/1.1 connections (per-host caps) behind the
SSRF-guarded resolver. What may be called is decided in
`hookstream.engine.destinations`; this package only acts on it.
"""

from hookstream.egress.pool import ConnectionPool
from hookstream.egress.resolver import GuardedResolver
from hookstream.egress.sender import USER_AGENT, HttpSender, build_sender, build_session

__all__ = [
    "USER_AGENT",
    "ConnectionPool",
    "GuardedResolver",
    "HttpSender",
    "build_sender",
    "build_session",
]
