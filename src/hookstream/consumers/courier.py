"""The courier: one delivery record, from the dispatcher's window to a durable outcome.

Reads in the order things happen: admit → sign → send → settle → act.

* **admit**: for an ordered endpoint, the sequencer (consumers/sequencer.py)
  lets one message of a subject go at a time, in order, and holds the rest;
  then the endpoint's gate (consumers/gates.py) lets it start, holds it a
  moment for its rate or concurrency slot, or parks it;
* **sign**: Standard Webhooks headers over the body, with the endpoint's keys;
* **send**: one attempt through the `Sender` seam;
* **settle**: `engine.settle.settle` decides (delivered, retry in n s, dead,
  disable the endpoint);
* **act**: write what was decided (the attempt log, a retry tier, a dead
  letter, a disable, an operational event).

When `deliver` returns, the record has a durable outcome and its offset may
be committed; an exception is a bug, and the dispatcher stops loudly.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from dataclasses import replace

import orjson
from aiokafka import TopicPartition
from aiokafka.structs import ConsumerRecord

from hookstream.config import Settings
from hookstream.consumers.attempts import AttemptLog, attempt_entry
from hookstream.consumers.dead_letters import DeadLetters
from hookstream.consumers.disabling import EndpointDisabler
from hookstream.consumers.gates import EndpointGates
from hookstream.consumers.metrics import WorkerMetrics
from hookstream.consumers.ops_events import OpsEvents
from hookstream.consumers.retry_tiers import RetryTiers
from hookstream.consumers.sequencer import Sequencer
from hookstream.egress import USER_AGENT
from hookstream.engine.delivery import DeliveryTask
from hookstream.engine.endpoint import Endpoint
from hookstream.engine.ordering import Admission
from hookstream.engine.outcome import AttemptResult, OutgoingRequest, Sender, Verdict
from hookstream.engine.settle import Settlement, settle
from hookstream.engine.signing import SigningKey, signed_headers
from hookstream.errors import InvalidInput
from hookstream.topics import TopicNames
from hookstream.views.registry import EndpointRegistry

log = logging.getLogger(__name__)

# One line per attempt: successes only when debugging, failures always.
_OUTCOME_LEVEL = {
    Verdict.DELIVERED: logging.DEBUG,
    Verdict.RETRY: logging.INFO,
    Verdict.DEAD: logging.WARNING,
}
# Keyed signing states kept (about 0.8 KB each); past it the cache starts over.
_MAX_CACHED_KEYS = 10_000
GAVE_UP = "its predecessors were not seen for 10 minutes after they were due"


class Courier:
    """Delivers one record at a time (many concurrently); owns no Kafka consumer."""

    def __init__(
        self,
        settings: Settings,
        registry: EndpointRegistry,
        sender: Sender,
        gates: EndpointGates,
        *,
        tiers: RetryTiers,
        dead_letters: DeadLetters,
        disabler: EndpointDisabler,
        ops: OpsEvents,
        attempt_log: AttemptLog | None = None,
        metrics: WorkerMetrics | None = None,
        sequencer: Sequencer | None = None,
        clock: Callable[[], float] = time.time,
        rng: random.Random | None = None,
    ) -> None:
        self._settings = settings
        self._registry = registry
        self._sender = sender
        self.gates = gates
        self._tiers = tiers
        self._dead = dead_letters
        self._disabler = disabler
        self._ops = ops
        self._attempt_log = attempt_log
        self._metrics = metrics
        self.sequencer = sequencer
        self._deliveries = TopicNames(settings).deliveries
        self._clock = clock
        self._rng = rng or random.Random()
        # A webhook body is an event plus a small envelope; anything far past
        # the event limit was not written by the router.
        self._max_body_bytes = settings.max_event_bytes + 64 * 1024
        self._retry_policy = settings.retry_policy  # parsed once, not per attempt
        self._keys: dict[str, tuple[SigningKey, ...]] = {}
        self.dropped = 0  # unreadable records and deliveries to deleted endpoints

    async def deliver(self, tp: TopicPartition, record: ConsumerRecord[bytes, bytes]) -> None:
        """Give `record` a durable outcome; when this returns, its offset may be committed."""
        try:
            task = DeliveryTask.from_record(
                record.headers, record.value, max_body_bytes=self._max_body_bytes
            )
        except InvalidInput as exc:
            self._dropped()
            source = record.topic.removeprefix(self._settings.topic_prefix)
            await self._dead.write_poison(record, f"unreadable delivery record: {exc}", source)
            return
        if task.due_at_ms > self._clock() * 1000:
            await self._tiers.hop(task)  # ready, not due: on to the next tier
            return
        endpoint = await self._endpoint(task, record.timestamp / 1000)
        if endpoint is None:
            self._dropped()
            log.info("endpoint deleted; delivery dropped", extra=task.log_fields())
            return
        # Its gate follows the endpoint's config, so its health shows a disable too.
        self.gates.gate(endpoint, tp)
        sequencer = self.sequencer
        if sequencer is not None and task.subject:
            if endpoint.ordered:
                offset = record.offset if record.topic == self._deliveries else None
                chained, admission = await sequencer.admit(tp.partition, offset, task)
                if chained is None:
                    return  # held behind its subject's unfinished message, or a copy
                task = chained
                if admission is Admission.GIVE_UP:
                    await self._ops.order_broken(task, endpoint, GAVE_UP)
            elif task.order_seq is not None:
                sequencer.abandon(tp.partition, task)  # ordering was switched off
                task = task.unchained()
        due_at_ms = await self._outcome(tp, task, endpoint)
        if sequencer is not None and task.order_seq is not None:
            await sequencer.settle(tp.partition, task, due_at_ms=due_at_ms)

    def forget(self, revoked: set[TopicPartition]) -> None:
        """Partitions moved to another worker: their endpoints' gates and ordered
        chains go with them."""
        self.gates.forget(revoked)
        if self.sequencer is not None:
            self.sequencer.forget({tp.partition for tp in revoked if tp.topic == self._deliveries})

    async def assigned(self, assigned: set[TopicPartition]) -> None:
        """Partitions came to this worker: load their ordered chains before delivering."""
        if self.sequencer is not None:
            await self.sequencer.load(
                {tp.partition for tp in assigned if tp.topic == self._deliveries}
            )

    async def _outcome(
        self, tp: TopicPartition, task: DeliveryTask, endpoint: Endpoint
    ) -> int | None:
        """Attempt it, or dead-letter it for a disabled endpoint; when it is due again
        (epoch ms) if it went to a retry tier, else None (delivered or dead)."""
        if endpoint.disabled:
            reason = "endpoint disabled"
            if endpoint.disabled_reason:
                reason += f": {endpoint.disabled_reason}"
            await self._dead.write(task, reason, order_broken=task.order_seq is not None)
            return None
        return await self._attempt(tp, task, endpoint)

    async def _endpoint(self, task: DeliveryTask, routed_at: float) -> Endpoint | None:
        endpoint = self._registry.get(task.endpoint_id)
        if endpoint is None:
            # Another worker may have routed this with a fresher view of the
            # registry: catch up to when the record was written before
            # concluding the endpoint was deleted.
            await self._registry.barrier(routed_at)
            endpoint = self._registry.get(task.endpoint_id)
        return endpoint

    async def _attempt(
        self, tp: TopicPartition, task: DeliveryTask, endpoint: Endpoint
    ) -> int | None:
        entry = await self.gates.enter(endpoint, tp, reserved=task.reserved)
        if entry.park_s is not None:
            if self._metrics is not None:
                self._metrics.parked()
            due_at_ms = int((self._clock() + entry.park_s) * 1000)
            await self._tiers.park(task, entry.park_s, reserved=entry.reserved)
            return due_at_ms
        started_at = self._clock()
        result = await self._sender.send(self._sign(task, endpoint))
        self.gates.leave(entry, result)
        policy = self._retry_policy.for_endpoint(endpoint.retry_policy, endpoint.max_attempts)
        settled = settle(task, result, policy, entry.gate, self._clock(), self._rng)
        return await self._act(task, result, settled, started_at)

    async def _act(
        self, task: DeliveryTask, result: AttemptResult, settled: Settlement, started_at: float
    ) -> int | None:
        entry = attempt_entry(task, result, settled.verdict, started_at)
        self._report(task, result, settled)
        if self._attempt_log is not None:
            next_at = None if settled.wait_s is None else started_at + settled.wait_s
            await self._attempt_log.record(task, entry, result, next_at)
        if settled.verdict is Verdict.DELIVERED:
            return None
        task = replace(task, history=orjson.dumps(task.with_attempt(entry)))
        if settled.verdict is Verdict.RETRY:
            assert settled.wait_s is not None
            due_at_ms = int((self._clock() + settled.wait_s) * 1000)
            await self._tiers.schedule(task, settled.wait_s)
            return due_at_ms
        if settled.disable is not None:
            await self._disabler.disable(task.endpoint_id, settled.disable)
        ordered = task.order_seq is not None
        await self._dead.write(task, settled.reason, order_broken=ordered)
        endpoint = self._registry.get(task.endpoint_id)
        if settled.exhausted:
            await self._ops.attempts_exhausted(task, endpoint, settled.reason)
        if ordered:
            await self._ops.order_broken(task, endpoint, settled.reason)
        return None

    def _report(self, task: DeliveryTask, result: AttemptResult, settled: Settlement) -> None:
        if self._metrics is not None:
            self._metrics.attempted(settled.verdict, result.duration_ms, task.occurred_at_ms)
        level = _OUTCOME_LEVEL[settled.verdict]
        if log.isEnabledFor(level):
            log.log(
                level,
                f"delivery {settled.verdict.value}",
                extra={
                    **task.log_fields(),
                    "status": result.status,
                    "error": result.error_class,
                    "duration_ms": round(result.duration_ms, 1),
                    "reason": settled.reason,
                    "retry_in_s": None if settled.wait_s is None else round(settled.wait_s, 3),
                },
            )

    def _sign(self, task: DeliveryTask, endpoint: Endpoint) -> OutgoingRequest:
        now = self._clock()
        keys = self._keys.get(endpoint.secret) if not endpoint.previous_secrets else None
        if keys is None:
            if len(self._keys) > _MAX_CACHED_KEYS:
                self._keys.clear()
            keys = tuple(SigningKey.of(s) for s in endpoint.signing_secrets(now))
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

    def _dropped(self) -> None:
        self.dropped += 1
        if self._metrics is not None:
            self._metrics.dropped()
