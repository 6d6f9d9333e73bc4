"""Cursor paging conventions shared by the list routes."""

from __future__ import annotations

from aiohttp import web

from hookstream.api.problems import BadRequest

DEFAULT_LIMIT = 50
MAX_LIMIT = 250
BAD_CURSOR = "after must be a cursor from a previous page's next link"


def page_limit(request: web.Request) -> int:
    """The `limit` query parameter, 1-250 (default 50), or a 400 problem."""
    try:
        limit = int(request.query.get("limit", str(DEFAULT_LIMIT)))
    except ValueError:
        raise BadRequest("limit must be a whole number") from None
    if not 1 <= limit <= MAX_LIMIT:
        raise BadRequest(f"limit must be 1-{MAX_LIMIT}")
    return limit


def pair_cursor(raw: str | None) -> tuple[int, int] | None:
    """An `after` cursor of the form `<a>:<b>` (non-negative), or a 400 problem."""
    if raw is None:
        return None
    first, _, second = raw.partition(":")
    try:
        cursor = (int(first), int(second or 0))
    except ValueError:
        raise BadRequest(BAD_CURSOR) from None
    if cursor[1] < 0:
        raise BadRequest(BAD_CURSOR)
    return cursor
