"""The grammar of names: ids, event types, event-type globs and channels.

One owner, so an event type that can be published is one a glob can name and
a catalog can describe. An event type is dot-separated words of letters,
digits and underscores, with single hyphens inside a word, so reverse-DNS
CloudEvents types such as `com.example.order-created` are event types; a glob
is the same with `*` allowed in a word, where `*` stands for any run of
characters, dots included (engine/matching.py compiles them).
"""

from __future__ import annotations

import re
from typing import Any

_WORD = "a-zA-Z0-9_"
_TYPE_WORD = rf"[{_WORD}]+(-[{_WORD}]+)*"  # order-created; not -a, a-, a--b
_GLOB_WORD = rf"[{_WORD}*]+(-[{_WORD}*]+)*"
ID_RE = re.compile(r"^[a-zA-Z0-9_.:\-]{1,128}$")
ID_RULE = "1-128 characters of [a-zA-Z0-9_.:-]"
EVENT_TYPE_RE = re.compile(rf"^{_TYPE_WORD}(\.{_TYPE_WORD})*$")
GLOB_RE = re.compile(rf"^{_GLOB_WORD}(\.{_GLOB_WORD})*$")
TYPE_RULE = "dot-separated words of [a-zA-Z0-9_] with single hyphens inside a word"
MAX_TYPE_LENGTH = 200
MAX_GLOB_LENGTH = 200
MAX_CHANNELS = 10


def is_id(value: Any) -> bool:
    """True for a tenant, event or channel id: 1-128 characters of [a-zA-Z0-9_.:-]."""
    return isinstance(value, str) and ID_RE.match(value) is not None


def event_type_problem(name: str) -> str | None:
    """None when `name` is a valid event type, else what is wrong with it."""
    if not name or len(name) > MAX_TYPE_LENGTH or not EVENT_TYPE_RE.match(name):
        return f"must be {TYPE_RULE}, at most {MAX_TYPE_LENGTH} characters"
    return None


def glob_problem(pattern: str) -> str | None:
    """None when `pattern` is a valid event-type glob, else what is wrong with it."""
    if not pattern or len(pattern) > MAX_GLOB_LENGTH:
        return f"must be 1-{MAX_GLOB_LENGTH} characters"
    if not GLOB_RE.match(pattern):
        return f"must be {TYPE_RULE}, where * matches anything"
    return None


def are_channels(value: Any) -> bool:
    """True for a list of at most MAX_CHANNELS channel ids."""
    return isinstance(value, list) and len(value) <= MAX_CHANNELS and all(map(is_id, value))
