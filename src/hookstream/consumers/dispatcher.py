"""The dispatcher: consumes `deliveries`, signs, POSTs, settles, commits.

Reads in the order things happen: fetch → admit → sign → send → settle →
commit. Deliveries run concurrently inside a bounded in-flight window and
finish out of order; the offset tracker commits per partition only up to the
lowest record without a durable outcome, so a crash re-delivers (same
webhook-id) rather than loses.

Admission is per endpoint (engine/gate.py through the health book): a
delivery whose endpoint's circuit is open, or that would wait more than
`endpoint_hold_max_s` for the endpoint's rate or concurrency slot, is parked
in a retry tier with the same attempt number, so a sick or saturated
endpoint holds at most a small, bounded share of the window.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Protocol

import orjson
from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition
from aiokafka.coordinator.assignors.range import RangePartitionAssignor
from aiokafka.errors import CommitFailedError, IllegalStateError, KafkaError
from aiokafka.structs import ConsumerRecord

from hookstream.config import Settings
from hookstream.consumers.attempts import AttemptLog, attempt_entry
from hookstream.consumers.health import HealthBook
from hookstream.consumers.metrics import WorkerMetrics
from hookstream.consumers.registry import EndpointRegistry
from hookstream.egress import USER_AGENT
from hookstream.engine.delivery import DeliveryTask
from hookstream.engine.endpoint import Endpoint
from hookstream.engine.offsets import Hole, HoleWatch, OffsetTracker
from hookstream.engine.outcome import AttemptResult, OutgoingRequest, Sender, Verdict, judge
from hookstream.engine.signing import secret_key, signed_headers
from hookstream.errors import InvalidInput
from hookstream.kafka import LogEndGuard, consumer_options, stop_client
from hookstream.topics import TopicNames

log = logging.getLogger(__name__)

# One line per attempt: successes only when debugging, failures always.
_OUTCOME_LEVEL = {
    Verdict.DELIVERED: logging.DEBUG,
    Verdict.RETRY: logging.INFO,
    Verdict.DEAD: logging.WARNING,
}


class FailureHandler(Protocol):
    """Where an unsent or failed delivery goes (retry tier, dead letters); durable on return."""

    def wait_for(
        self, task: DeliveryTask, endpoint: Endpoint, result: AttemptResult
    ) -> float | None:
        """Seconds until the next attempt, or None when no attempt is left."""
        ...

    async def handle(
        self,
        task: DeliveryTask,
        result: AttemptResult,
        verdict: Verdict,
        reason: str,
        wait_s: float | None,
    ) -> None:
        """Make the failure durable: when this returns, the record's offset may be committed."""
        ...

    async def dead(self, task: DeliveryTask, reason: str) -> None:
        """Dead-letter a task that will not be attempted at all."""
        ...

    async def poison(self, record: ConsumerRecord[bytes, bytes], reason: str, source: str) -> None:
        """Dead-letter a record that is not a readable delivery, as it was."""
        ...

    async def park(self, task: DeliveryTask, wait_s: float, *, reserved: bool) -> None:
        """Hold back a task that was not sent, same attempt, due in `wait_s`."""
        ...

    async def hop(self, task: DeliveryTask) -> None:
        """Place a tier record that is ready but not due again, for the rest of its wait."""
        ...

    async def disable(self, endpoint_id: str, why: str) -> None:
        """Disable an endpoint and say so to its tenant."""
        ...


HOLE_ACCEPT_S = 30.0  # how long a gap in a partition's offsets is read again before it is accepted


class Dispatcher:
    """Delivers the records of the `deliveries` partitions this process owns."""

    def __init__(
        self,
        settings: Settings,
        registry: EndpointRegistry,
        sender: Sender,
        failures: FailureHandler,
        health: HealthBook,
        *,
        attempt_log: AttemptLog | None = None,
        metrics: WorkerMetrics | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._settings = settings
        self._names = TopicNames(settings)
        self._registry = registry
        self._sender = sender
        self._failures = failures
        self._health = health
        self._attempt_log = attempt_log
        self._metrics = metrics
        self._topics = [self._names.deliveries, *self._names.retry_tiers.values()]
        self._resumers: dict[TopicPartition, asyncio.TimerHandle] = {}
        self._clock = clock
        self._window = asyncio.Semaphore(settings.in_flight)
        # A webhook body is an event plus a small envelope; anything far past
        # the event limit was not written by the router.
        self._max_body_bytes = settings.max_event_bytes + 64 * 1024
        self._tracker = OffsetTracker()
        self._guard = LogEndGuard("dispatcher", settings.bootstrap)
        self._generation = 0  # bumped when a rebalance revokes partitions
        self._holes = HoleWatch(HOLE_ACCEPT_S)
        self._tasks: set[asyncio.Task[None]] = set()
        self._keys: dict[str, tuple[bytes, ...]] = {}
        self._consumer: AIOKafkaConsumer | None = None
        self._loops: list[asyncio.Task[None]] = []
        self.failure: BaseException | None = None
        self.delivered = 0
        self.failed = 0
        self.dropped = 0
        self.parked = 0

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
            await self._commit()
            await stop_client(self._consumer)

    # -- fetch → admit -----------------------------------------------------

    async def _fetch_loop(self) -> None:
        consumer = self._consumer
        assert consumer is not None
        guard = self._guard
        while True:
            for tp in await guard.check(consumer):
                # Read from the start again: no old offsets to commit, no holes to wait for.
                self._tracker.forget(tp)
                self._holes.forget(tp)
            batch = await consumer.getmany(timeout_ms=1000)
            guard.saw(batch)
            generation = self._generation
            for tp, records in batch.items():
                for record in records:
                    if self._generation != generation:
                        break
                    if self._after_hole(tp, record):
                        break  # read again from the hole
                    if self._hold_until_due(tp, record):
                        break  # the rest of this partition waits behind its head
                    await self._window.acquire()
                    if self._generation != generation:
                        # A rebalance began while we waited: the revoked partitions were
                        # drained and committed up to here, and whoever owns each one now
                        # (maybe us again) reads on from that commit. Starting the rest
                        # of a batch fetched under the old assignment could let a later
                        # commit pass records nobody attempted.
                        self._window.release()
                        break
                    self._tracker.start(tp, record.offset)
                    task = asyncio.create_task(self._deliver(tp, record))
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

    def _hold_until_due(self, tp: TopicPartition, record: ConsumerRecord[bytes, bytes]) -> bool:
        """Pause a retry-tier partition whose head record is not ready yet; True if paused."""
        wait_s = _ready_at_ms(record.headers) / 1000 - self._clock()
        if wait_s <= 0:
            return False
        consumer = self._consumer
        assert consumer is not None
        consumer.pause(tp)
        consumer.seek(tp, record.offset)  # read it again when due
        loop = asyncio.get_running_loop()
        self._resumers[tp] = loop.call_later(wait_s, self._resume, tp)
        return True

    def _resume(self, tp: TopicPartition) -> None:
        self._resumers.pop(tp, None)
        consumer = self._consumer
        if consumer is not None and tp in consumer.assignment():
            consumer.resume(tp)

    # -- sign → send → settle ----------------------------------------------

    async def _deliver(self, tp: TopicPartition, record: ConsumerRecord[bytes, bytes]) -> None:
        try:
            try:
                task = DeliveryTask.from_record(
                    record.headers, record.value, max_body_bytes=self._max_body_bytes
                )
            except InvalidInput as exc:
                self.dropped += 1
                if self._metrics is not None:
                    self._metrics.dropped()
                await self._failures.poison(
                    record,
                    f"unreadable delivery record: {exc}",
                    record.topic.removeprefix(self._settings.topic_prefix),
                )
            else:
                if task.due_at_ms > self._clock() * 1000:
                    await self._failures.hop(task)  # ready, not due: on to the next tier
                else:
                    await self._attempt(tp, task, record.timestamp / 1000)
            self._tracker.finish(tp, record.offset)
        except Exception as exc:
            # A bug, not a delivery failure: leave the offset unfinished (so it is
            # re-delivered after restart) and stop this process loudly.
            self._fail(exc)
        finally:
            self._window.release()

    async def _attempt(self, tp: TopicPartition, task: DeliveryTask, routed_at: float) -> None:
        endpoint = self._registry.get(task.endpoint_id)
        if endpoint is None:
            # Another worker may have routed this with a fresher view of the
            # registry: catch up to when the record was written before
            # concluding the endpoint was deleted.
            await self._registry.barrier(routed_at)
            endpoint = self._registry.get(task.endpoint_id)
        if endpoint is None:
            self.dropped += 1
            if self._metrics is not None:
                self._metrics.dropped()
            log.info("endpoint deleted; delivery dropped", extra=task.log_fields())
            return
        gate = self._health.gate(endpoint, tp)
        if endpoint.disabled:
            reason = "endpoint disabled"
            if endpoint.disabled_reason:
                reason += f": {endpoint.disabled_reason}"
            await self._failures.dead(task, reason)
            return
        admission = gate.admit(self._clock(), reserved=task.reserved)
        if admission.park_s is not None:
            self.parked += 1
            if self._metrics is not None:
                self._metrics.parked()
            self._health.touched(gate)
            await self._failures.park(task, admission.park_s, reserved=admission.reserved)
            return
        if admission.wait_s > 0:
            await asyncio.sleep(admission.wait_s)  # its rate-limit slot
        await self._health.take_slot(gate)
        if (pace_s := gate.pace(self._clock())) > 0:
            await asyncio.sleep(pace_s)  # late for its slot: no bunching with those on time
        started_at = self._clock()
        result = await self._sender.send(self._sign(task, endpoint))
        self._health.settle(gate, result, probe=admission.probe)
        verdict, reason = judge(result)
        wait_s = None
        if not result.ok and gate.should_disable(self._clock()):
            why = f"no successful attempt for {_duration(gate.settings.auto_disable_after_s)}"
            await self._failures.disable(endpoint.id, why)
            verdict, reason = Verdict.DEAD, f"endpoint disabled: {why}"
        elif verdict is Verdict.RETRY:
            wait_s = self._failures.wait_for(task, endpoint, result)
        entry = attempt_entry(task, result, verdict, started_at)
        # A retryable failure with no attempt left is dead, for metrics and logs.
        outcome = Verdict.DEAD if verdict is Verdict.RETRY and wait_s is None else verdict
        if self._metrics is not None:
            self._metrics.attempted(outcome, result.duration_ms, task.occurred_at_ms)
        level = _OUTCOME_LEVEL[outcome]
        if log.isEnabledFor(level):
            log.log(
                level,
                f"delivery {outcome.value}",
                extra={
                    **task.log_fields(),
                    "status": result.status,
                    "error": result.error_class,
                    "duration_ms": round(result.duration_ms, 1),
                    "reason": reason,
                    "retry_in_s": None if wait_s is None else round(wait_s, 3),
                },
            )
        if self._attempt_log is not None:
            next_at = None if wait_s is None else started_at + wait_s
            await self._attempt_log.record(task, entry, result, next_at)
        if verdict is Verdict.DELIVERED:
            self.delivered += 1
            return
        self.failed += 1
        task = replace(task, history=orjson.dumps(task.with_attempt(entry)))
        await self._failures.handle(task, result, verdict, reason, wait_s)

    def _sign(self, task: DeliveryTask, endpoint: Endpoint) -> OutgoingRequest:
        now = self._clock()
        keys = self._keys.get(endpoint.secret) if not endpoint.previous_secrets else None
        if keys is None:
            if len(self._keys) > 100_000:
                self._keys.clear()
            keys = tuple(secret_key(s) for s in endpoint.signing_secrets(now))
            if not endpoint.previous_secrets:
                self._keys[endpoint.secret] = keys
        headers = signed_headers(
            keys,
            task.message_id,
            int(now),
            task.body,
            endpoint.headers,
            user_agent=USER_AGENT,
            hookstream_event_id=task.event_id,
            hookstream_attempt=str(task.attempt),
        )
        return OutgoingRequest(url=endpoint.url, headers=headers, body=task.body)

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
            and not _past_end(consumer, tp, offset)
        }
        if not offsets:
            return
        try:
            await consumer.commit(offsets)
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
        self._health.forget(revoked)
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


def _duration(seconds: float) -> str:
    """3600 → "1h", 432000 → "5d", 1.5 → "1.5s"."""
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{seconds:g}s"


def _past_end(consumer: AIOKafkaConsumer, tp: TopicPartition, offset: int) -> bool:
    """An offset above the partition's log end is never committed: the broker lost the
    log (came back empty), and committing it would make the next owner skip the new
    records at lower offsets. The fetch loop's LogEndGuard rewinds the partition."""
    end = consumer.highwater(tp)
    return end is not None and offset > end


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
        self._dispatcher._generation += 1
        await self._dispatcher._drain(set(revoked))

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        for tp in assigned:
            self._dispatcher._tracker.forget(tp)
        consumer = self._dispatcher._consumer
        assert consumer is not None
        await self._dispatcher._guard.assigned(consumer, set(assigned))
