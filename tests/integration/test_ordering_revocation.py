"""Ordered subjects across a revocation of their partition, on the embedded stack.

aiokafka revokes every partition of a member at each rebalance and then
assigns them again, here to the same worker. The dispatcher waits a bounded
time for the revoked partitions' deliveries (`http_timeout_s` + 5 s), then
forgets them. An ordered subject's messages still waiting in memory then end
unfinished, and the worker reads them again from the commit, under the new
assignment, each behind its own chain's predecessor. Nothing of the old
assignment still in flight may wake, settle or finish anything of the new one
(tests/unit/test_sequencer_revocation.py has each case on its own).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
from aiokafka import AIOKafkaConsumer

from hookstream.config import Settings
from hookstream.consumers.sequencer import Sequencer
from hookstream.consumers.worker import Worker
from hookstream.kafka import stop_client
from hookstream.producers import EventPublisher
from hookstream.topics import TopicNames
from tests.conftest import EndpointFactory, dispatcher_group_member, eventually, stop_within
from tests.ordered_receiver import interleaved, ordered_receiver, stalled

pytestmark = pytest.mark.integration

PER_SUBJECT = 30
# One at a time, the 16 messages of a subject that wait in memory (MAX_WAITING)
# take 12.8 s: more than the drain waits, with a reply timeout of 2 s (7 s).
LATENCY_S = 0.8


@asynccontextmanager
async def _member_for_its_own_topic(settings: Settings) -> AsyncIterator[AIOKafkaConsumer]:
    """A second member of the dispatcher group that consumes only the `ordering`
    topic: its join and its leave are each a rebalance, and the worker gets all
    its own partitions back each time."""
    member = dispatcher_group_member(settings)
    member.subscribe([TopicNames(settings).ordering])
    await member.start()
    try:
        yield member
    finally:
        await stop_client(member)


async def test_messages_waiting_in_memory_at_a_revocation_are_read_again_in_order(
    fast: Settings, endpoint_factory: EndpointFactory, caplog: pytest.LogCaptureFixture
) -> None:
    """Two subjects of 30 at a receiver that answers in 0.8 s; two rebalances while
    messages of both wait in memory. Every message arrives, each subject in order,
    and the worker stops with nothing left unfinished."""
    settings = fast.replace(http_timeout_s=2.0)
    subjects = ["a", "b"]
    secrets: list[str] = []
    async with ordered_receiver(secrets, lambda s, n, seen: False, delay_s=LATENCY_S) as rx:
        endpoint = await endpoint_factory(rx.url, "acme", ["order.*"], ordering="subject")
        secrets.append(endpoint.secret)
        worker = Worker(settings)
        await worker.start()
        try:
            sequencer = worker.sequencer
            assert isinstance(sequencer, Sequencer)
            async with EventPublisher(settings) as publisher:
                await publisher.publish_many(interleaved(subjects, PER_SUBJECT))
            await eventually(
                lambda: all(len(rx.delivered(s)) >= 2 for s in subjects),
                timeout=60,
                message=stalled(rx, worker),
            )
            async with _member_for_its_own_topic(settings) as member:
                await eventually(
                    lambda: bool(member.assignment()), timeout=60, message="never joined"
                )
                # The drain ran out with messages in memory: they were revoked.
                revoked_at_join = sequencer.revoked
                assert revoked_at_join > 0
                delivered_at_join = {s: len(rx.delivered(s)) for s in subjects}
                assert all(n < PER_SUBJECT for n in delivered_at_join.values()), (
                    f"nothing was left waiting: {delivered_at_join}"
                )
            await eventually(
                lambda: all(rx.delivered(s) == set(range(1, PER_SUBJECT + 1)) for s in subjects),
                timeout=120,
                message=stalled(rx, worker),
            )
        finally:
            await stop_within(worker)
    for subject in subjects:
        assert rx.first_successes(subject) == list(range(1, PER_SUBJECT + 1)), subject
        assert rx.order_violations(subject) == [], subject
    unfinished = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert "stopping with deliveries unfinished" not in unfinished
    assert worker.dispatcher is not None
    assert worker.dispatcher.failure is None
