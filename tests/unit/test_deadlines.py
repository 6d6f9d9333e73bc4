"""Deadlines: every watched future fails at its deadline, never before, under one timer."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable

import pytest

from hookstream.egress.deadlines import Deadlines


async def _failed_at(future: asyncio.Future[None], loop: asyncio.AbstractEventLoop) -> float:
    """Loop time at which `future` failed with TimeoutError (generous bound: 10 s)."""
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(asyncio.shield(future), 10)
    return loop.time()


async def test_a_future_fails_at_its_deadline_not_before() -> None:
    loop = asyncio.get_running_loop()
    deadlines = Deadlines()
    future: asyncio.Future[None] = loop.create_future()
    deadline = loop.time() + 0.2
    deadlines.watch(future, deadline, loop)
    failed = await _failed_at(future, loop)
    assert deadline - 0.002 <= failed < deadline + 1.0
    assert len(deadlines) == 0


async def test_a_forgotten_future_is_left_alone() -> None:
    loop = asyncio.get_running_loop()
    deadlines = Deadlines()
    kept: asyncio.Future[None] = loop.create_future()
    deadlines.watch(kept, loop.time() + 0.05, loop)
    deadlines.forget(kept)
    late: asyncio.Future[None] = loop.create_future()
    deadlines.watch(late, loop.time() + 0.1, loop)
    await _failed_at(late, loop)
    assert not kept.done()
    assert len(deadlines) == 0


async def test_a_nearer_deadline_watched_later_is_kept() -> None:
    """A request that waited for a connection arrives with the nearest deadline."""
    loop = asyncio.get_running_loop()
    deadlines = Deadlines()
    far: asyncio.Future[None] = loop.create_future()
    deadlines.watch(far, loop.time() + 30, loop)
    near: asyncio.Future[None] = loop.create_future()
    deadline = loop.time() + 0.1
    deadlines.watch(near, deadline, loop)
    failed = await _failed_at(near, loop)
    assert failed < deadline + 1.0
    assert not far.done()
    deadlines.forget(far)


async def test_the_timer_moves_on_when_the_nearest_is_answered() -> None:
    loop = asyncio.get_running_loop()
    deadlines = Deadlines()
    first: asyncio.Future[None] = loop.create_future()
    second: asyncio.Future[None] = loop.create_future()
    start = loop.time()
    deadlines.watch(first, start + 0.1, loop)
    deadlines.watch(second, start + 0.3, loop)
    first.set_result(None)
    deadlines.forget(first)
    failed = await _failed_at(second, loop)
    assert start + 0.3 - 0.002 <= failed < start + 1.3


async def test_many_futures_each_fail_at_its_own_deadline_or_not_at_all() -> None:
    rng = random.Random(46)
    loop = asyncio.get_running_loop()
    deadlines = Deadlines()
    start = loop.time()
    failed_at: dict[int, float] = {}
    watched: list[tuple[asyncio.Future[None], float, bool]] = []

    def when_done(n: int) -> Callable[[asyncio.Future[None]], None]:
        return lambda _: failed_at.__setitem__(n, loop.time())

    for n in range(1_000):
        future: asyncio.Future[None] = loop.create_future()
        future.add_done_callback(when_done(n))
        deadline = start + rng.uniform(0.05, 0.5)  # out of watch order, as after a wait
        deadlines.watch(future, deadline, loop)
        answered = rng.random() < 0.5
        watched.append((future, deadline, answered))
        if answered and rng.random() < 0.5:  # some answered before any deadline
            future.set_result(None)
            deadlines.forget(future)
    for future, _, answered in watched:
        if answered and not future.done():
            await asyncio.sleep(rng.uniform(0, 0.02))
            if not future.done():
                future.set_result(None)
                deadlines.forget(future)
    await asyncio.wait_for(asyncio.gather(*(f for f, _, _ in watched), return_exceptions=True), 10)
    for n, (future, deadline, answered) in enumerate(watched):
        if not answered:
            assert isinstance(future.exception(), TimeoutError)
        if future.exception() is not None:
            assert isinstance(future.exception(), TimeoutError)
            assert deadline - 0.002 <= failed_at[n] < deadline + 1.0
    assert len(deadlines) == 0
