"""`commits.Commits`: a commit whose caller is cancelled still finishes, and a stop waits
for it. The consumer is a stub: only its `commit` is used."""

from __future__ import annotations

import asyncio
import gc
from typing import Any

import pytest

from hookstream.commits import Commits


class SlowConsumer:
    """`commit` waits for `release`, then records its offsets or raises `failure`."""

    def __init__(self, failure: Exception | None = None) -> None:
        self.started = asyncio.Event()
        self.release = asyncio.Event()
        self.committed: list[Any] = []
        self.failure = failure

    async def commit(self, offsets: Any = None) -> None:
        self.started.set()
        await self.release.wait()
        if self.failure is not None:
            raise self.failure
        self.committed.append(offsets)


async def test_a_cancelled_caller_leaves_its_commit_to_finish_and_settle_waits_for_it() -> None:
    consumer, commits = SlowConsumer(), Commits()
    caller = asyncio.create_task(commits.commit(consumer, {"tp": 7}))
    await consumer.started.wait()
    caller.cancel()
    await asyncio.wait({caller})
    assert caller.cancelled()
    assert consumer.committed == []  # still on its way
    asyncio.get_running_loop().call_later(0.2, consumer.release.set)
    await commits.settle(within_s=5)
    assert consumer.committed == [{"tp": 7}]


async def test_settle_gives_up_at_its_bound() -> None:
    consumer, commits = SlowConsumer(), Commits()
    caller = asyncio.create_task(commits.commit(consumer))
    await consumer.started.wait()
    caller.cancel()
    loop = asyncio.get_running_loop()
    started = loop.time()
    await commits.settle(within_s=0.3)
    assert 0.25 <= loop.time() - started < 3
    assert consumer.committed == []
    consumer.release.set()  # let it end before the test's loop closes
    await commits.settle(within_s=5)
    assert consumer.committed == [None]


async def test_a_caller_still_waiting_gets_the_commits_failure() -> None:
    consumer, commits = SlowConsumer(failure=RuntimeError("coordinator gone")), Commits()
    consumer.release.set()
    with pytest.raises(RuntimeError, match="coordinator gone"):
        await commits.commit(consumer)


async def test_a_failure_with_no_caller_left_is_read_not_reported_as_never_retrieved() -> None:
    loop = asyncio.get_running_loop()
    reported: list[dict[str, Any]] = []
    previous = loop.get_exception_handler()
    loop.set_exception_handler(lambda _loop, context: reported.append(context))
    try:
        consumer, commits = SlowConsumer(failure=RuntimeError("closed")), Commits()
        caller = asyncio.create_task(commits.commit(consumer))
        await consumer.started.wait()
        caller.cancel()
        await asyncio.wait({caller})
        consumer.release.set()
        await commits.settle(within_s=5)
        del caller
        gc.collect()
        await asyncio.sleep(0)
    finally:
        loop.set_exception_handler(previous)
    assert [c.get("message") for c in reported] == []
