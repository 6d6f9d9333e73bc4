"""Deadlines: every watched future fails at its deadline, never before, under one timer."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable

import pytest

from hookstream.egress.deadlines import Deadlines


async def _failed_at(future: asyncio.Future[None]) -> float:
    """Loop time at which `future` failed with TimeoutError (generous bound: 10 s)."""
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(asyncio.shield(future), 10)
    return asyncio.get_running_loop().time()


def _watch(deadlines: Deadlines, in_s: float) -> tuple[asyncio.Future[None], float]:
    """A new future watched with a deadline `in_s` from now, and that deadline."""
    loop = asyncio.get_running_loop()
    future: asyncio.Future[None] = loop.create_future()
    deadline = loop.time() + in_s
    deadlines.watch(future, deadline, loop)
    return future, deadline


async def test_a_future_fails_at_its_deadline_not_before() -> None:
    deadlines = Deadlines()
    future, deadline = _watch(deadlines, 0.2)
    failed = await _failed_at(future)
    assert deadline - 0.002 <= failed < deadline + 1.0
    assert len(deadlines) == 0


async def test_a_forgotten_future_is_left_alone() -> None:
    deadlines = Deadlines()
    kept, _ = _watch(deadlines, 0.05)
    deadlines.forget(kept)
    late, _ = _watch(deadlines, 0.1)
    await _failed_at(late)
    assert not kept.done()
    assert len(deadlines) == 0


async def test_a_nearer_deadline_watched_later_is_kept() -> None:
    """A request that waited for a connection arrives with the nearest deadline."""
    deadlines = Deadlines()
    far, _ = _watch(deadlines, 30)
    near, deadline = _watch(deadlines, 0.1)
    failed = await _failed_at(near)
    assert failed < deadline + 1.0
    assert not far.done()
    deadlines.forget(far)


async def test_the_timer_moves_on_when_the_nearest_is_answered() -> None:
    deadlines = Deadlines()
    first, _ = _watch(deadlines, 0.1)
    second, deadline = _watch(deadlines, 0.3)
    first.set_result(None)
    deadlines.forget(first)
    failed = await _failed_at(second)
    assert deadline - 0.002 <= failed < deadline + 1.0


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
