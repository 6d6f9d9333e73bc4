"""A stop that misses its deadline names where it was waiting."""

from __future__ import annotations

import asyncio

from hookstream.stacks import every_suspended, suspended_at


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
