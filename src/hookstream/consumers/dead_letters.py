"""Dead letters: deliveries that will not be attempted again, with why and their last attempts.

A dead letter is the delivery record itself (body as value, task headers,
including the attempt history) plus a `reason` header, keyed by endpoint id.
Writing one is awaited: only once the broker has it may the source offset be
committed. The DLQ index (dead_letter_index.py) makes them listable; operators
redrive them (views/dlq.py): the same message (same webhook-id) goes back to
`deliveries` as attempt 1.
"""

from __future__ import annotations

import hashlib
import logging

from aiokafka import AIOKafkaProducer
from aiokafka.errors import MessageSizeTooLargeError, RecordTooLargeError
from aiokafka.structs import ConsumerRecord

from hookstream.engine.delivery import DeliveryTask
from hookstream.producers.durable import until_written

log = logging.getLogger(__name__)


# A letter bigger than this is stored as its head plus its size and digest. Records
# up to the dispatcher's body limit (max_event_bytes + 64 KiB) are kept whole; past
# that, or whenever the broker or client refuses a letter as too large, a poison
# record at the broker's limit would otherwise fail its DLQ write on every restart.
LETTER_HEAD_BYTES = 16 * 1024
HEADERS_KEPT_BYTES = 16 * 1024


class DeadLetters:
    """Writes dead letters to the `dlq` topic; never refuses one for its size."""

    def __init__(self, producer: AIOKafkaProducer, topic: str, *, max_value_bytes: int) -> None:
        self._producer = producer
        self._topic = topic
        self._max_value_bytes = max_value_bytes
        self.written = 0

    async def write(self, task: DeliveryTask, reason: str, *, order_broken: bool = False) -> None:
        """Dead-letter `task` with `reason`; returns once the broker acknowledged it.
        `order_broken`: its ordered subject moves on without it."""
        headers = [*task.headers(), ("reason", reason.encode())]
        if order_broken:
            headers.append(("order_broken", b"1"))
        await self._send(task.endpoint_id.encode(), task.body, headers)
        self.written += 1
        log.warning("delivery dead-lettered", extra={**task.log_fields(), "reason": reason})

    async def write_poison(
        self, record: ConsumerRecord[bytes, bytes], reason: str, source: str
    ) -> None:
        """Dead-letter a record that cannot be read as a delivery, as it was, with `reason`
        and `source` (the topic it came from, unprefixed, as the router writes
        "events"), and where it was; returns once the broker acknowledged it."""
        await self.write_record(
            record.key,
            record.value,
            list(record.headers or ()),
            reason=reason,
            source=source,
            position=(record.topic, record.partition, record.offset),
        )

    async def write_record(
        self,
        key: bytes | None,
        value: bytes | None,
        headers: list[tuple[str, bytes]],
        *,
        reason: str,
        source: str,
        position: tuple[str, int, int] | None = None,
    ) -> None:
        """Dead-letter any unreadable record with `reason`, `source`, its topic, partition and
        offset; returns once the broker acknowledged it."""
        where = []
        if position is not None:
            topic, partition, offset = position
            where = [
                ("topic", topic.encode()),
                ("partition", b"%d" % partition),
                ("offset", b"%d" % offset),
            ]
        letter = [*headers, ("reason", reason.encode()), ("source", source.encode()), *where]
        await self._send(key, value, letter)
        self.written += 1
        log.error(
            "poison record dead-lettered",
            extra={"reason": reason, "source": source, "position": position},
        )

    async def _send(
        self, key: bytes | None, value: bytes | None, headers: list[tuple[str, bytes]]
    ) -> None:
        size = len(value or b"") + sum(len(name) + len(v) for name, v in headers)
        if size > self._max_value_bytes:
            value, headers = _head_of(value, headers)
        try:
            await self._write(key, value, headers)
        except (MessageSizeTooLargeError, RecordTooLargeError):
            value, headers = _head_of(value, headers)
            await self._write(key, value, headers)

    async def _write(
        self, key: bytes | None, value: bytes | None, headers: list[tuple[str, bytes]]
    ) -> None:
        await until_written(
            lambda: self._producer.send_and_wait(
                self._topic, value=value, key=key, headers=headers
            ),
            self._topic,
        )


def _head_of(
    value: bytes | None, headers: list[tuple[str, bytes]]
) -> tuple[bytes, list[tuple[str, bytes]]]:
    """The letter cut to fit: the head of the value, its size and SHA-256, and the
    original headers while they are small (the reason and source always)."""
    if any(name == "truncated" for name, _ in headers):
        return value or b"", headers  # cut already
    whole = value or b""
    ours = {"reason", "source", "topic", "partition", "offset"}
    kept = [(n, v) for n, v in headers if n in ours]
    theirs = [(n, v) for n, v in headers if n not in ours]
    if sum(len(n) + len(v) for n, v in theirs) <= HEADERS_KEPT_BYTES:
        kept = theirs + kept
    else:
        kept.append(("headers_dropped", b"%d" % len(theirs)))
    kept += [
        ("truncated", b"1"),
        ("original_bytes", b"%d" % len(whole)),
        ("original_sha256", hashlib.sha256(whole).hexdigest().encode()),
    ]
    return whole[:LETTER_HEAD_BYTES], kept
