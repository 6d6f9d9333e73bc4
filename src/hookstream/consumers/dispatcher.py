"""The dispatcher: consumes `deliveries` and the retry tiers, hands each record to
the courier, commits.

Reads in the order things happen: fetch → (courier: admit → sign → send →
settle → act) → commit. Deliveries run concurrently inside a bounded
in-flight window and finish out of order; the offset tracker commits per
partition only up to the lowest record without a durable outcome, so a crash
re-delivers (same webhook-id) rather than loses.

This module owns the Kafka side: the window, offset holes (decision 011), the
hold of a tier partition until its head is ready (decision 036), commits, and draining
revoked partitions on a rebalance. What happens to one record is
consumers/courier.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Sequence
from typing import TypeAlias

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition
from aiokafka.coordinator.assignors.range import RangePartitionAssignor
from aiokafka.errors import CommitFailedError, IllegalStateError, KafkaError
from aiokafka.structs import ConsumerRecord

from hookstream.commits import Commits
from hookstream.config import Settings
from hookstream.consumers.courier import Courier
from hookstream.engine.offsets import Hole, HoleWatch, OffsetTracker
from hookstream.engine.retry import landing_slack
from hookstream.kafka import FetchWait, LogEndGuard, consumer_options, past_end, stop_client
from hookstream.topics import TopicNames

log = logging.getLogger(__name__)

HOLE_ACCEPT_S = 30.0  # how long a gap in a partition's offsets is read again before it is accepted
HELD_MAX = 64  # fetched tier records kept in memory per partition while its head is not ready
# A loop timer ends at most a millisecond early: a head this far from ready when
# its hold ends was held as long as its tier holds anything, and is not ours.
EARLY_RELEASE_S = 0.1

Record: TypeAlias = ConsumerRecord[bytes, bytes]


class Dispatcher:
    """Delivers the records of the `deliveries` partitions this process owns."""

    def __init__(
        self,
        settings: Settings,
        courier: Courier,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._settings = settings
        self._names = TopicNames(settings)
        self.courier = courier
        self._topics = [self._names.deliveries, *self._names.retry_tiers.values()]
        # No tier record is written ready later than its tier's delay and slack
        # (engine/retry.py, `placement`): the most a tier partition is held.
        self._longest_hold = {
            topic: tier + landing_slack(tier) for tier, topic in self._names.retry_tiers.items()
        }
        self._resumers: dict[TopicPartition, asyncio.TimerHandle] = {}
        self._clock = clock
        self._window = asyncio.Semaphore(settings.in_flight)
        self._tracker = OffsetTracker()
        self._guard = LogEndGuard("dispatcher", settings)
        self._commits = Commits()  # the commit loop's, which a stop lets finish
        self._generation = 0  # bumped when a rebalance revokes partitions
        # Set once the rebalance listener has done what the assigned partitions need
        # (their ordered chains loaded); clear from each revocation until then.
        self._ready = asyncio.Event()
        self._holes = HoleWatch(HOLE_ACCEPT_S)
        self.fetched_again = 0  # records fetched, then read again because a hold sought back
        self._tasks: set[asyncio.Task[None]] = set()
        self._consumer: AIOKafkaConsumer | None = None
        self._loops: list[asyncio.Task[None]] = []
        self.failure: BaseException | None = None

    # -- lifecycle ---------------------------------------------------------

    async def start(self) -> None:
        """Join the dispatcher group and start fetching and committing."""
        consumer = AIOKafkaConsumer(
            **consumer_options(self._settings, client_id="dispatcher"),
            group_id=self._names.dispatcher_group,
            partition_assignment_strategy=(RangePartitionAssignor,),
            max_poll_records=self._settings.fetch_max_records,
        )
        consumer.subscribe(self._topics, listener=_Rebalance(self))
        self._consumer = consumer  # the rebalance listener may run inside start()
        await consumer.start()
        for name, loop in (("fetch", self._fetch_loop), ("commit", self._commit_loop)):
            task = asyncio.create_task(loop(), name=f"dispatcher-{name}")
            task.add_done_callback(self._on_loop_done)
            self._loops.append(task)

    async def stop(self) -> None:
        """Stop fetching, let in-flight deliveries finish (bounded), commit, leave."""
        for handle in self._resumers.values():
            handle.cancel()
        for task in self._loops:
            task.cancel()
        for task in self._loops:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=self._settings.http_timeout_s + 5)
        if self._tasks:
            # Still waiting for a slot: unfinished, so not committed; the next owner delivers them.
            log.warning("stopping with deliveries unfinished", extra={"count": len(self._tasks)})
            for task in self._tasks:
                task.cancel()
            await asyncio.wait(self._tasks)
        if self._consumer is not None:
            await self._commits.settle()  # one the commit loop had sent when it was cancelled
            await self._commit()
            await stop_client(self._consumer)

    # -- fetch ---------------------------------------------------------------

    async def _fetch_loop(self) -> None:
        consumer = self._consumer
        assert consumer is not None
        guard = self._guard
        wait = FetchWait(consumer, self._settings)
        while True:
            for tp in await guard.check(consumer):
                # Read from the start again: no old offsets to commit, no holes to wait for.
                self._tracker.forget(tp)
                self._holes.forget(tp)
                resumer = self._resumers.pop(tp, None)
                if resumer is not None:  # what it held is read again from the start
                    resumer.cancel()
                    consumer.resume(tp)
            batch = await consumer.getmany(timeout_ms=1000)
            if not self._ready.is_set():
                await self._until_ready(consumer, batch)
                continue
            guard.saw(batch)
            # A held partition is paused from its hold until what it held has
            # started (decision 036): read on at the short wait then.
            wait.saw(batch, holding=bool(consumer.paused()))
            generation = self._generation
            for tp, records in batch.items():
                await self._start(tp, records, generation)

    async def _until_ready(
        self, consumer: AIOKafkaConsumer, batch: dict[TopicPartition, list[Record]]
    ) -> None:
        """aiokafka fetches for partitions as soon as it assigns them, before the
        listener's `on_partitions_assigned` has returned: a batch fetched meanwhile
        is read again once it has, so no record of a partition is started before
        its ordered chains are loaded."""
        assigned = consumer.assignment()
        for tp, records in batch.items():
            if records and tp in assigned:
                consumer.seek(tp, records[0].offset)
        await self._ready.wait()

    async def _start(
        self,
        tp: TopicPartition,
        records: Sequence[Record],
        generation: int,
        *,
        released: bool = False,
    ) -> None:
        """Start `records` of `tp` in order, up to a hole, a tier record not ready yet
        (held, with those behind it), or a rebalance.

        `deliveries` itself is never held: what the router and a redrive write
        there is due at once, and a record that says otherwise goes to the
        courier, which places it in the tier its wait fits. Held, it would stop
        every endpoint of its partition until it was due."""
        deliveries = self._names.deliveries
        for n, record in enumerate(records):
            if self._generation != generation:
                return
            if self._after_hole(tp, record):
                return  # read again from the hole
            held_before = released and n == 0
            if tp.topic != deliveries and self._hold_until_due(
                tp, records, n, generation, released=held_before
            ):
                return  # the rest of this tier partition waits behind its head
            await self._window.acquire()
            if self._generation != generation:
                # A rebalance began while we waited: the revoked partitions were
                # drained and committed up to here, and whoever owns each one now
                # (maybe us again) reads on from that commit. Starting the rest
                # of a batch fetched under the old assignment could let a later
                # commit pass records nobody attempted.
                self._window.release()
                return
            mark = self._tracker.start(tp, record.offset)
            task = asyncio.create_task(self._deliver(tp, record, mark))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    def _after_hole(self, tp: TopicPartition, record: ConsumerRecord[bytes, bytes]) -> bool:
        """True if offsets before `record` were never fetched: seek back to them
        (engine/offsets.py, HoleWatch, says why and for how long)."""
        expected = self._tracker.expected(tp)
        hole = self._holes.check(tp, expected, record.offset, time.monotonic())
        if hole is Hole.NONE:
            return False
        fields = {"topic": tp.topic, "partition": tp.partition, "expected": expected}
        if hole is Hole.ACCEPTED:
            log.error("offset hole accepted", extra={**fields, "next": record.offset})
            return False
        if hole is Hole.NEW:
            log.warning("offset hole; reading it again", extra={**fields, "next": record.offset})
        consumer = self._consumer
        assert consumer is not None
        assert expected is not None
        consumer.seek(tp, expected)
        return True

    def _hold_until_due(
        self,
        tp: TopicPartition,
        records: Sequence[Record],
        head: int,
        generation: int,
        *,
        released: bool = False,
    ) -> bool:
        """Hold a retry-tier partition whose head record (`records[head]`) is not ready
        yet; True if held. `released`: this head was held already.

        The partition is paused. Up to HELD_MAX of the records fetched, from its
        head on, wait in memory and are started from there when the head is
        ready; the fetch goes on after them once they are all started. A tier of
        parks in line (decision 033) has a head ready every few milliseconds:
        fetching the partition again for each one fetched and decoded the same
        records again and again (decision 036)."""
        ready_in_s = _ready_at_ms(records[head].headers) / 1000 - self._clock()
        if ready_in_s <= 0:
            return False
        if released and ready_in_s > EARLY_RELEASE_S:
            # Held as long as its tier holds anything, and still far from ready: a
            # `ready_at` we did not write. The courier places its wait again.
            return False
        wait_s = min(ready_in_s, self._longest_hold[tp.topic])
        consumer = self._consumer
        assert consumer is not None
        held = records[head : head + HELD_MAX]
        self.fetched_again += len(records) - head - len(held)
        consumer.pause(tp)
        consumer.seek(tp, held[-1].offset + 1)  # read on after them once they are started
        loop = asyncio.get_running_loop()
        self._resumers[tp] = loop.call_later(wait_s, self._release, tp, held, generation)
        return True

    def _release(self, tp: TopicPartition, held: Sequence[Record], generation: int) -> None:
        self._resumers.pop(tp, None)
        task = asyncio.create_task(self._start_held(tp, held, generation))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _start_held(
        self, tp: TopicPartition, held: Sequence[Record], generation: int
    ) -> None:
        try:
            await self._start(tp, held, generation, released=True)
        except Exception as exc:
            self._fail(exc)
            return
        consumer = self._consumer
        if (
            self._generation == generation  # else a rebalance: read on from the commit
            and tp not in self._resumers  # else held again, behind a head not ready
            and consumer is not None
            and tp in consumer.assignment()
        ):
            consumer.resume(tp)

    # -- hand on ------------------------------------------------------------

    async def _deliver(self, tp: TopicPartition, record: Record, mark: object) -> None:
        try:
            await self.courier.deliver(tp, record)
            self._tracker.finish(tp, record.offset, mark)
        except Exception as exc:
            # A bug, not a delivery failure: leave the offset unfinished (so it is
            # re-delivered after restart) and stop this process loudly.
            self._fail(exc)
        finally:
            self._window.release()

    # -- commit ------------------------------------------------------------

    async def _commit_loop(self) -> None:
        while True:
            await asyncio.sleep(self._settings.commit_interval_ms / 1000)
            await self._commit()

    async def _commit(self, only: set[TopicPartition] | None = None) -> None:
        consumer = self._consumer
        assert consumer is not None
        assigned = consumer.assignment()
        offsets = {
            tp: offset
            for tp, offset in self._tracker.committable().items()
            if isinstance(tp, TopicPartition)
            and tp in assigned
            and (only is None or tp in only)
            and not past_end(consumer, tp, offset)
        }
        if not offsets:
            return
        try:
            await self._commits.commit(consumer, offsets)
        except (CommitFailedError, IllegalStateError) as exc:
            # A rebalance took the partitions: their new owner resumes from the last commit.
            log.warning("commit skipped during rebalance", extra={"error": str(exc)})
            return
        except KafkaError as exc:
            log.warning("commit failed; will retry", extra={"error": str(exc)})
            return
        self._tracker.mark_committed(dict(offsets))
        self._guard.committed(offsets)

    async def _drain(self, revoked: set[TopicPartition]) -> None:
        """On revocation: let the revoked partitions' deliveries finish, commit, forget."""
        if not revoked:
            return
        deadline = time.monotonic() + self._settings.http_timeout_s + 5
        # Rebalances are rare: polling here keeps per-delivery signalling off the hot path.
        while time.monotonic() < deadline and any(  # noqa: ASYNC110
            self._tracker.in_flight(tp) for tp in revoked
        ):
            await asyncio.sleep(0.01)
        await self._commit(only=revoked)
        self.courier.forget(revoked)
        for tp in revoked:
            self._tracker.forget(tp)
            self._holes.forget(tp)
            resumer = self._resumers.pop(tp, None)
            if resumer is not None:
                resumer.cancel()

    # -- failure -----------------------------------------------------------

    def _on_loop_done(self, task: asyncio.Task[None]) -> None:
        if not task.cancelled() and task.exception() is not None:
            self._fail(task.exception())  # type: ignore[arg-type]

    def _fail(self, exc: BaseException) -> None:
        if self.failure is None:
            self.failure = exc
            log.critical("dispatcher failed", exc_info=exc)


def _ready_at_ms(headers: Sequence[tuple[str, bytes]]) -> int:
    """When a tier record is to be read: `ready_at`, or `due_at` for records
    written before tiers had hops; 0 (now) when neither is readable."""
    found = {name: value for name, value in headers if name in ("ready_at", "due_at")}
    try:
        return int(found.get("ready_at") or found.get("due_at") or 0)
    except ValueError:
        return 0


class _Rebalance(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, dispatcher: Dispatcher) -> None:
        self._dispatcher = dispatcher

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        self._dispatcher._ready.clear()
        self._dispatcher._generation += 1
        await self._dispatcher._drain(set(revoked))

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        for tp in assigned:
            self._dispatcher._tracker.forget(tp)
        consumer = self._dispatcher._consumer
        assert consumer is not None
        # Ordered chains first: no record of these partitions is started before they
        # are known (the fetch loop waits for `_ready`).
        try:
            await self._dispatcher._guard.assigned(consumer, set(assigned))
            await self._dispatcher.courier.assigned(set(assigned))
        except Exception as exc:
            # Delivering without them could break an ordered subject's order, and the
            # fetch loop waits for `_ready`: read nothing more and stop loudly (a
            # restart loads them again).
            consumer.pause(*assigned)
            self._dispatcher._fail(exc)
            raise
        self._dispatcher._ready.set()
