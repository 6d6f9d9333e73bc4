"""Stopping asyncio tasks: cancels that land, and where a stop that hangs waits.

redis-py's asyncio client can swallow a cancel that lands inside a command
(redis/redis-py#2028; with 8.1.0, 58 of 300 cancels at random moments of a
SMEMBERS loop were lost): the task goes on to its next await as if nothing
happened. So a stage that awaits Redis is stopped with `cancel_until_done`,
which cancels again until the task ends, and a stop that still hangs names its
await (`suspended_at`).
"""

from __future__ import annotations

import asyncio
from typing import Any


async def cancel_until_done(
    task: asyncio.Task[Any], *, within_s: float = 10.0, every: float = 0.5
) -> bool:
    """Cancel `task` and wait for it, cancelling again every `every` s; False when it
    is still running after `within_s` s. An exception it ended with is marked read
    (no warning at exit); callers that care read `task.exception()`."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within_s
    while not task.done():
        left = deadline - loop.time()
        if left <= 0:
            return False
        task.cancel()
        await asyncio.wait({task}, timeout=min(every, left))
    if not task.cancelled():
        task.exception()
    return True


def suspended_at(task: asyncio.Task[Any]) -> str:
    """The innermost frames a task is suspended in, for a stop that hangs."""
    where: list[str] = []
    coro: Any = task.get_coro()
    while coro is not None and len(where) < 16:
        frame = getattr(coro, "cr_frame", None) or getattr(coro, "gi_frame", None)
        if frame is not None:
            where.append(f"{frame.f_code.co_qualname}:{frame.f_lineno}")
        coro = getattr(coro, "cr_await", None) or getattr(coro, "gi_yieldfrom", None)
    return " > ".join(where) or "?"


def every_suspended() -> str:
    """Where each unfinished task of the running loop waits (a task awaiting another
    task shows only its own frames, so a hang is found among these)."""
    tasks = [t for t in asyncio.all_tasks() if not t.done() and t is not asyncio.current_task()]
    return "; ".join(f"{t.get_name()}: {suspended_at(t)}" for t in tasks)
