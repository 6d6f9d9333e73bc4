"""Cursor paging conventions shared by the list routes."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, TypeVar

from aiohttp import web

from hookstream.api.problems import BadRequest
from hookstream.api.routes import Param

T = TypeVar("T")

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


LIMIT = Param("limit", {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT}, "page size")
AFTER = Param("after", {"type": "string", "maxLength": 256}, "the cursor of a `next` link")


def id_page(
    request: web.Request,
    items: Iterable[T],
    key: Callable[[T], str],
    render: Callable[[T], dict[str, Any]],
) -> dict[str, Any]:
    """One page of `items` (each `render`ed) in `key` order after the `after` cursor,
    with a `next` link.

    The cursor is the last key returned, so objects inserted or deleted between
    pages never make a page repeat or skip one that existed throughout.
    """
    limit = page_limit(request)
    after = request.query.get("after")
    ordered = sorted((i for i in items if after is None or key(i) > after), key=key)
    chosen = ordered[:limit]
    next_link = None
    if len(ordered) > limit:
        query = {**request.query, "after": key(chosen[-1])}
        next_link = str(request.rel_url.with_query(query))
    return {"data": [render(item) for item in chosen], "next": next_link}
