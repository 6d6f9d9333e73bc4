"""Where asyncio tasks wait: what a stop that hangs logs, so the hang names its await."""

from __future__ import annotations

import asyncio
from typing import Any


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
