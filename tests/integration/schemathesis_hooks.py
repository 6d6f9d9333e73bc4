"""Schemathesis hooks for test_openapi.py: odd input on top of what the spec generates.

Loaded by `st run` through SCHEMATHESIS_HOOKS. Every third JSON body gets a
value nested past the API's depth limit (65, 100 or 300 levels), and every
other request carries a header of non-ASCII bytes. Each change is counted in
the file named by HOOKSTREAM_HOOK_COUNTS, so the test can assert that the odd
cases were sent, not just written.
"""

from __future__ import annotations

import itertools
import os
from pathlib import Path
from typing import Any

import schemathesis

_bodies = itertools.count()
_headers = itertools.count()
DEPTHS = (65, 100, 300)


def _count(kind: str) -> None:
    path = os.environ.get("HOOKSTREAM_HOOK_COUNTS")
    if path:
        with Path(path).open("a") as counts:
            counts.write(kind + "\n")


def _nested(depth: int) -> Any:
    value: Any = 1
    for level in range(depth - 1):
        value = [value] if level % 2 else {"k": value}
    return value


@schemathesis.hook
def map_body(context: Any, body: Any) -> Any:
    """Nest one value of every third object body past the depth limit."""
    n = next(_bodies)
    if isinstance(body, dict) and body and n % 3 == 0:
        key = sorted(body)[n % len(body)]
        body = {**body, key: _nested(DEPTHS[n % len(DEPTHS)])}
        _count("deep")
    return body


@schemathesis.hook
def map_headers(context: Any, headers: Any) -> Any:
    """Add a header of non-ASCII (Latin-1, not UTF-8) bytes to every other request."""
    if next(_headers) % 2 == 0:
        headers = {**(headers or {}), "X-Note": "caf\u00e9 \u00fc\u00ff"}
        _count("non-ascii-header")
    return headers
