"""The attempt log: one record per HTTP attempt in the `attempts` topic.

Feeds health scoring and the API. It is a log, not a source of truth for
delivery, so records are sent without waiting for the broker on the hot path.
"""

from __future__ import annotations

from typing import Any

import orjson
from aiokafka import AIOKafkaProducer

from hookstream.engine.delivery import DeliveryTask
from hookstream.engine.outcome import AttemptResult, Verdict
from hookstream.producers.durable import until_written


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
    """Appends attempt records keyed by endpoint id."""

    def __init__(self, producer: AIOKafkaProducer, topic: str) -> None:
        self._producer = producer
        self._topic = topic

    async def record(
        self,
        task: DeliveryTask,
        entry: dict[str, Any],
        result: AttemptResult,
        next_attempt_at: float | None,
    ) -> None:
        """Queue one attempt record (not awaited: the log is not needed to deliver)."""
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
        # Queued, not awaited to the broker; only a full buffer makes this wait.
        await until_written(
            lambda: self._producer.send(self._topic, value=value, key=key), self._topic
        )
