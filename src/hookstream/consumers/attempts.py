"""The attempt log: one record per HTTP attempt in the `attempts` topic.

Feeds health scoring and the API. It is a log, not a source of truth for
delivery, so records are sent without waiting for the broker on the hot path.
Like records queued in a producer, records held here are lost if the process
dies before they are sent, and so is a batch the broker answers with an error
that may pass (counted in `lost_batches` and in the worker's
`hookstream_attempt_batches_lost_total`, and logged); the attempt index is
soft state either way.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

import orjson
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError
from aiokafka.structs import RecordMetadata

from hookstream.engine.delivery import DeliveryTask
from hookstream.engine.outcome import AttemptResult, Verdict
from hookstream.kafka import KeyedPartitioner
from hookstream.producers.batches import PartitionBatches
from hookstream.producers.durable import retriable, until_written

log = logging.getLogger(__name__)


def attempt_entry(
    task: DeliveryTask, result: AttemptResult, verdict: Verdict, started_at: float
) -> dict[str, Any]:
    """The compact form kept in a task's history and in the attempt log."""
    entry: dict[str, Any] = {
        "attempt": task.attempt,
        "started_at": round(started_at, 6),
        "duration_ms": round(result.duration_ms, 1),
        "outcome": verdict.value,
    }
    if result.status is not None:
        entry["status"] = result.status
    if result.error_class:
        entry["error"] = result.error_class
    return entry


class AttemptLog:
    """Appends attempt records keyed by endpoint id, in produce batches it builds.

    `record` appends to the endpoint's partition batch; what was appended goes
    to the broker `linger_s` later, or at once when a batch is full. Through
    `producer.send` each record paid for its own metadata check, partition
    lookup and acknowledgement future: 3% of a steady worker (decision 043).
    `stop` sends what is held. A write the broker refuses for good, when it is
    sent or in its acknowledgement, is raised by the next `record`, so the
    dispatcher stops loudly as before.
    """

    def __init__(
        self,
        producer: AIOKafkaProducer,
        topic: str,
        *,
        linger_s: float,
        on_lost: Callable[[], None] | None = None,
    ) -> None:
        self._topic = topic
        self._batches = PartitionBatches(producer, topic, KeyedPartitioner())
        self._linger_s = linger_s
        self._started = False
        self._timer: asyncio.TimerHandle | None = None
        self._sending: asyncio.Task[None] | None = None
        self._failure: BaseException | None = None
        self.lost_batches = 0  # batches the broker answered with an error that may pass
        self._on_lost = on_lost  # told of each, as the worker's metrics count them

    async def record(
        self,
        task: DeliveryTask,
        entry: dict[str, Any],
        result: AttemptResult,
        next_attempt_at: float | None,
    ) -> None:
        """Add one attempt record (not awaited to the broker: the log is not needed to
        deliver); only a full batch that the producer cannot take yet makes this wait."""
        if self._failure is not None:
            raise self._failure
        record = {
            **entry,
            "message_id": task.message_id,
            "event_id": task.event_id,
            "endpoint_id": task.endpoint_id,
            "tenant": task.tenant,
            "event_type": task.event_type,
            "response_excerpt": result.excerpt[:1024].decode(errors="replace"),
            "next_attempt_at": next_attempt_at,
        }
        value, key = orjson.dumps(record), task.endpoint_id.encode()
        if not self._started:
            await self._batches.start()
            self._started = True
        await until_written(lambda: self._batches.add(key, value, []), self._topic)
        if self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(self._linger_s, self._send_soon)

    async def stop(self) -> None:
        """Send what is held, and wait until the producer has taken it."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._sending is not None:
            await asyncio.wait([self._sending])
        await self._send()

    def _send_soon(self) -> None:
        self._timer = None
        if self._sending is None or self._sending.done():
            self._sending = asyncio.create_task(self._send(), name="attempt-log")

    async def _send(self) -> None:
        try:
            while self._batches.holding:  # records added while a batch waited go too
                for ack in await until_written(self._batches.send, self._topic):
                    asyncio.ensure_future(ack).add_done_callback(self._answered)
        except KafkaError as exc:
            log.error("attempt records not written", extra={"error": type(exc).__name__})
            self._failure = exc

    def _answered(self, ack: asyncio.Future[RecordMetadata]) -> None:
        """The broker's answer to a batch sent. A refusal for good is raised by the
        next `record`. An error that may pass (a timeout, the broker's unexpected
        error) lost the batch: the producer has let it go, and the log is soft
        state, so it is counted and said, and the log goes on."""
        if ack.cancelled() or (exc := ack.exception()) is None:
            return
        if isinstance(exc, KafkaError) and retriable(exc):
            self.lost_batches += 1
            if self._on_lost is not None:
                self._on_lost()
            log.warning(
                "attempt records lost: the broker did not take a batch",
                extra={"error": type(exc).__name__, "topic": self._topic},
            )
            return
        log.error("attempt records not written", extra={"error": type(exc).__name__})
        self._failure = exc
