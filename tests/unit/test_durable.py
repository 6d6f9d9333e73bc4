"""Writes that must land are retried on broker timeouts, never dropped."""

from __future__ import annotations

import pytest
from aiokafka.errors import (
    KafkaTimeoutError,
    MessageSizeTooLargeError,
    NotLeaderForPartitionError,
    TopicAuthorizationFailedError,
    UnknownError,
)

from hookstream.producers.durable import BACKOFF_S, retriable, until_written


class _Flaky:
    """A write that fails with `errors` in turn, then returns "written"."""

    def __init__(self, *errors: Exception) -> None:
        self.errors = list(errors)
        self.calls = 0

    async def __call__(self) -> str:
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)
        return "written"


class _Sleeps:
    def __init__(self) -> None:
        self.waits: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)


def test_timeouts_and_retriable_broker_errors_are_retriable() -> None:
    assert retriable(KafkaTimeoutError())
    assert retriable(NotLeaderForPartitionError())
    assert not retriable(MessageSizeTooLargeError())
    assert not retriable(TopicAuthorizationFailedError())


def test_the_brokers_unexpected_error_is_retriable() -> None:
    # aiokafka does not mark it; the embedded broker answers a write that raced
    # another to a partition's offset with it, and the next try lands.
    assert not UnknownError.retriable
    assert retriable(UnknownError())


async def test_a_write_the_broker_answered_with_its_unexpected_error_is_written_again() -> None:
    write = _Flaky(UnknownError(), UnknownError())
    sleeps = _Sleeps()
    assert await until_written(write, "t", sleep=sleeps) == "written"
    assert write.calls == 3
    assert sleeps.waits == list(BACKOFF_S[:2])


async def test_a_write_is_retried_with_backoff_until_it_lands() -> None:
    write = _Flaky(*[KafkaTimeoutError() for _ in range(6)])
    sleeps = _Sleeps()
    assert await until_written(write, "t", sleep=sleeps) == "written"
    assert write.calls == 7
    assert sleeps.waits == [*BACKOFF_S, BACKOFF_S[-1], BACKOFF_S[-1]]


async def test_a_write_that_can_never_succeed_is_raised_at_once() -> None:
    write = _Flaky(MessageSizeTooLargeError())
    sleeps = _Sleeps()
    with pytest.raises(MessageSizeTooLargeError):
        await until_written(write, "t", sleep=sleeps)
    assert write.calls == 1
    assert sleeps.waits == []
