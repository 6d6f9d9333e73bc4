"""A stop that misses its deadline names where it was waiting."""

from __future__ import annotations

import asyncio
import contextlib

from hookstream.stacks import cancel_until_done, every_suspended, suspended_at


async def _hangs() -> None:
    await asyncio.Event().wait()


async def _stop() -> None:
    await _hangs()


async def test_the_frames_of_a_hanging_stop_are_named_innermost_last() -> None:
    task = asyncio.create_task(_stop())
    await asyncio.sleep(0)
    try:
        where = suspended_at(task).split(" > ")
        assert where[0].startswith("_stop:")
        assert where[1].startswith("_hangs:")
        assert where[2].startswith("Event.wait:")
    finally:
        task.cancel()


async def test_a_finished_task_is_named_by_a_question_mark() -> None:
    task = asyncio.create_task(asyncio.sleep(0))
    await task
    assert suspended_at(task) == "?"


async def test_a_stop_waiting_for_another_task_finds_it_among_every_task() -> None:
    inner = asyncio.create_task(_hangs(), name="inner")

    async def waits() -> None:
        await inner

    task = asyncio.create_task(waits())
    await asyncio.sleep(0)
    try:
        assert suspended_at(task).startswith("test_a_stop_waiting")
        every = every_suspended().split("; ")
        assert any(t.startswith("inner: _hangs:") and "Event.wait:" in t for t in every), every
    finally:
        task.cancel()
        inner.cancel()


async def _swallows(cancels: int) -> None:
    """Sleeps, taking `cancels` cancels as if nothing happened (as redis-py can)."""
    taken = 0
    while True:
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            taken += 1
            if taken > cancels:
                raise


async def test_a_swallowed_cancel_is_repeated_until_the_task_ends() -> None:
    task = asyncio.create_task(_swallows(2))
    await asyncio.sleep(0)
    loop = asyncio.get_running_loop()
    started = loop.time()
    assert await cancel_until_done(task, within_s=10, every=0.05)
    assert task.cancelled()
    assert loop.time() - started < 2


async def test_a_task_that_never_ends_is_reported_after_the_bound() -> None:
    released = asyncio.Event()

    async def deaf() -> None:
        while not released.is_set():
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.sleep(30)

    task = asyncio.create_task(deaf())
    await asyncio.sleep(0)
    loop = asyncio.get_running_loop()
    started = loop.time()
    assert not await cancel_until_done(task, within_s=0.3, every=0.05)
    assert 0.3 <= loop.time() - started < 2
    assert not task.done()
    released.set()
    assert await cancel_until_done(task, within_s=5, every=0.05)


async def test_a_task_that_failed_is_done_and_its_error_readable() -> None:
    async def fails() -> None:
        raise RuntimeError("boom")

    task = asyncio.create_task(fails())
    await asyncio.sleep(0)
    assert await cancel_until_done(task)
    assert isinstance(task.exception(), RuntimeError)
