"""Custom headers an endpoint adds to its deliveries, and which ones it may not set.

A header value with CR or LF would let a tenant write extra headers (or a
second request) onto the wire; hop-by-hop headers would change how the
connection behaves; the signature headers belong to hookstream.
"""

from __future__ import annotations

import re
from typing import Any

from hookstream.errors import FieldProblem

MAX_HEADERS = 20
MAX_NAME_LENGTH = 64
MAX_VALUE_LENGTH = 1024
# RFC 9110 token characters.
NAME_RE = re.compile(r"^[A-Za-z0-9!#$%&'*+.^_`|~-]+$")
# Visible ASCII, space, tab, and non-ASCII (obs-text); no other control bytes.
VALUE_RE = re.compile(r"^[\t\x20-\x7e\x80-\U0010ffff]*$")
FORBIDDEN = frozenset(
    {
        # hop-by-hop (RFC 9110 §7.6.1) and framing
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "host",
        "content-length",
        "content-type",
        "content-encoding",
        "expect",
        "user-agent",
    }
)
RESERVED_PREFIXES = ("webhook-", "hookstream-")


def header_problems(headers: Any, where: str = "headers") -> list[FieldProblem]:
    """What is wrong with a custom-headers object (empty when every header is allowed)."""
    if not isinstance(headers, dict):
        return [FieldProblem(where, "must be an object of header names to string values")]
    if len(headers) > MAX_HEADERS:
        return [FieldProblem(where, f"at most {MAX_HEADERS} headers")]
    problems = []
    seen: set[str] = set()
    for name, value in headers.items():
        here = f"{where}.{name}"
        lowered = name.lower()
        if not 0 < len(name) <= MAX_NAME_LENGTH or not NAME_RE.match(name):
            problems.append(FieldProblem(here, "is not a valid header name"))
        elif lowered in FORBIDDEN or lowered.startswith(RESERVED_PREFIXES):
            problems.append(FieldProblem(here, "may not be set: hookstream or HTTP owns it"))
        elif lowered in seen:
            problems.append(FieldProblem(here, "is given twice (names are case-insensitive)"))
        seen.add(lowered)
        if not isinstance(value, str) or len(value) > MAX_VALUE_LENGTH:
            problems.append(
                FieldProblem(here, f"must be a string of at most {MAX_VALUE_LENGTH} characters")
            )
        elif not VALUE_RE.match(value):
            problems.append(FieldProblem(here, "must not contain CR, LF, NUL or control bytes"))
    return problems
