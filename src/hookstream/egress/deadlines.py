"""The deadlines of the requests in flight, under one timer.

A timer per request cost a uvloop timer handle started and stopped for every
delivery, about 3 µs of the worker's CPU (decision 046). Here each request's
future is kept with its deadline in a dict, and one timer is set for the
nearest deadline. A reply takes its future out of the dict. When the timer
fires, every future past its deadline gets TimeoutError, and the timer is set
for the nearest deadline left. The sender keeps one for its replies, and the
pool one for its waits for a connection.

Requests share one timeout, so under steady traffic the timer fires about
once per timeout, and each firing reads every request then in flight. A
deadline nearer than the timer's (a request that waited for a connection)
moves the timer to it.
"""

from __future__ import annotations

import asyncio
import math
from typing import Any


class Deadlines:
    """TimeoutError for each watched future still pending at its deadline (loop time)."""

    __slots__ = ("_loop", "_pending", "_timer", "_when")

    def __init__(self) -> None:
        self._pending: dict[asyncio.Future[Any], float] = {}
        self._timer: asyncio.TimerHandle | None = None
        self._when = math.inf  # when the timer fires
        self._loop: asyncio.AbstractEventLoop | None = None

    def __len__(self) -> int:
        return len(self._pending)

    def watch(
        self, future: asyncio.Future[Any], deadline: float, loop: asyncio.AbstractEventLoop
    ) -> None:
        """Fail `future` with TimeoutError at `deadline` unless `forget` comes first."""
        self._pending[future] = deadline
        if deadline < self._when or loop is not self._loop:
            self._set(deadline, loop)

    def forget(self, future: asyncio.Future[Any]) -> None:
        """`future` needs no deadline any more (done, or given up on)."""
        self._pending.pop(future, None)

    def _set(self, when: float, loop: asyncio.AbstractEventLoop) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._loop = loop
        self._when = when
        self._timer = loop.call_at(when, self._expire)

    def _expire(self) -> None:
        assert self._loop is not None
        self._timer = None
        self._when = math.inf
        # A loop's timers are as fine as its clock: 1 ms early still counts as due.
        now = self._loop.time() + 0.001
        pending = self._pending
        nearest = math.inf
        for future, deadline in list(pending.items()):
            if deadline <= now:
                del pending[future]
                time_out(future)
            elif deadline < nearest:
                nearest = deadline
        if pending:
            self._set(nearest, self._loop)


def time_out(future: asyncio.Future[Any]) -> None:
    """A deadline's end: `future` fails with TimeoutError unless it is done already."""
    if not future.done():
        future.set_exception(TimeoutError())
