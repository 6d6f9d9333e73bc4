"""Fault: an ordered endpoint's worker is SIGKILLed mid-run; order survives.

The "held behind" state is on the `ordering` topic and in the retry tiers'
headers, not only in memory: a new worker goes on where the killed one left
off. Messages since the last commit may arrive again (same webhook-id), but no
message is attempted before its predecessor succeeded.
"""

from __future__ import annotations

import signal
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition

from hookstream.config import Settings
from hookstream.kafka import log_ends
from hookstream.producers import EventPublisher
from hookstream.topics import TopicNames, ensure_topics
from tests.conftest import EndpointFactory, eventually
from tests.faults.conftest import start_worker, wait_exit
from tests.ordered_receiver import OrderedReceiver, interleaved, ordered_receiver

pytestmark = pytest.mark.integration


async def test_a_worker_killed_while_a_subject_is_blocked_keeps_its_order(
    fast: Settings, endpoint_factory: EndpointFactory, tmp_path: Path
) -> None:
    """The issue's case with a SIGKILL: a3's first attempt fails, the worker is
    killed while a3 waits 15 s in a tier, and a new worker finishes the run."""
    settings = fast.replace(retry_schedule_s="15", retry_floor_s=15.0)
    await ensure_topics(settings)
    log = tmp_path / "worker.log"
    secrets: list[str] = []
    async with ordered_receiver(secrets, lambda s, n, seen: (s, n, seen) == ("a", 3, 1)) as rx:
        endpoint = await endpoint_factory(rx.url, "acme", ["order.*"], ordering="subject")
        secrets.append(endpoint.secret)
        worker = start_worker(settings, log)
        try:
            async with EventPublisher(settings) as publisher:
                await publisher.publish_many(interleaved(["a", "b"], 10))
            await eventually(lambda: len(rx.attempts("a")) >= 3, timeout=60)
            # Killed once every delivery record is committed: a4..a10 are held in a
            # tier, and only the `ordering` topic says they wait behind a3.
            await eventually(
                lambda: _committed_to_end(settings), timeout=30, message="never committed"
            )
            worker.send_signal(signal.SIGKILL)
            assert await wait_exit(worker) == -signal.SIGKILL
            killed_at = len(rx.arrivals)
            worker = start_worker(settings, log)
            await eventually(
                lambda: rx.delivered("a") == rx.delivered("b") == set(range(1, 11)),
                timeout=90,
                message=lambda: f"a={rx.delivered('a')} b={rx.delivered('b')}",
            )
            worker.send_signal(signal.SIGTERM)
            assert await wait_exit(worker) == 0, log.read_text()[-3000:]
        finally:
            if worker.poll() is None:
                worker.kill()
                worker.wait(30)
    assert killed_at < len(rx.arrivals), "the kill came after the run"
    _assert_in_order(rx, ["a", "b"], 10)
    a3 = [x for x in rx.attempts("a") if x.n == 3]
    assert [x.ok for x in a3] == [False, True], "a3 was not left to its retry"
    assert a3[1].at - a3[0].at > 14, "a3's retry came before its 15 s wait"
    assert max(x.at for x in rx.attempts("b")) < a3[1].at, "b waited behind a3"
    assert min(x.at for x in rx.attempts("a") if x.n == 4) > a3[1].at
    assert len(rx.attempts("a")) == 11, "a message was attempted twice"


async def _committed_to_end(settings: Settings) -> bool:
    """True when the dispatcher group has committed every `deliveries` partition to its end."""
    names = TopicNames(settings)
    ends = await log_ends(settings, names.deliveries)
    assert ends is not None
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.bootstrap,
        group_id=names.dispatcher_group,
        enable_auto_commit=False,
    )
    await consumer.start()
    try:
        for partition, end in ends.items():
            if (
                end
                and (await consumer.committed(TopicPartition(names.deliveries, partition)) or 0)
                < end
            ):
                return False
        return True
    finally:
        await consumer.stop()


async def test_many_subjects_keep_their_order_through_two_kills(
    fast: Settings, endpoint_factory: EndpointFactory, tmp_path: Path
) -> None:
    """40 subjects × 12 events; every 5th message fails twice; two kills mid-run."""
    subjects = [f"s{i}" for i in range(40)]
    total = len(subjects) * 12
    log = tmp_path / "worker.log"
    secrets: list[str] = []

    def fail(subject: str, n: int, seen: int) -> bool:
        return (int(subject[1:]) + n) % 5 == 0 and seen <= 2

    def delivered() -> int:
        return sum(len(rx.delivered(s)) for s in subjects)

    async with ordered_receiver(secrets, fail) as rx:
        endpoint = await endpoint_factory(rx.url, "acme", ["order.*"], ordering="subject")
        secrets.append(endpoint.secret)
        worker = start_worker(fast, log, HOOKSTREAM_IN_FLIGHT="20")
        try:
            async with EventPublisher(fast) as publisher:
                await publisher.publish_many(interleaved(subjects, 12))
            for k in (1, 2):
                await eventually(
                    lambda k=k: delivered() >= k * total // 3,  # type: ignore[misc]
                    timeout=120,
                    message=f"no progress before kill {k}",
                )
                worker.send_signal(signal.SIGKILL)
                assert await wait_exit(worker) == -signal.SIGKILL
                worker = start_worker(fast, log, HOOKSTREAM_IN_FLIGHT="20")
            assert delivered() < total, "the last kill came too late to prove anything"
            await eventually(
                lambda: delivered() == total,
                timeout=120,
                message=lambda: f"{total - delivered()} of {total} never delivered",
            )
            worker.send_signal(signal.SIGTERM)
            assert await wait_exit(worker) == 0, log.read_text()[-3000:]
        finally:
            if worker.poll() is None:
                worker.kill()
                worker.wait(30)
    _assert_in_order(rx, subjects, 12)


def _assert_in_order(rx: OrderedReceiver, subjects: list[str], count: int) -> None:
    assert rx.rejected == 0
    for subject in subjects:
        assert rx.first_successes(subject) == list(range(1, count + 1)), subject
        assert rx.order_violations(subject) == [], subject
