"""A delivery task: one event for one endpoint, as it travels through `deliveries`.

The record value is the exact webhook body (encoded once per event by the
router); everything else rides in record headers, so the dispatcher signs and
sends without parsing JSON.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import orjson

from hookstream.engine.event import Event
from hookstream.engine.values import direct_init
from hookstream.errors import FieldProblem, InvalidInput

Headers = Sequence[tuple[str, bytes]]


def message_id_for(event_id: str, endpoint_id: str) -> str:
    """The webhook-id for (event, endpoint): deterministic, so a replay carries the same id."""
    digest = hashlib.blake2b(f"{event_id}\x00{endpoint_id}".encode(), digest_size=16)
    return "msg_" + digest.hexdigest()


def webhook_body(event: Event) -> bytes:
    """The Standard Webhooks payload for an event: {"type", "timestamp", "data"}."""
    return orjson.dumps({"type": event.type, "timestamp": event.occurred_at, "data": event.data})


@direct_init
@dataclass(frozen=True, slots=True)
class DeliveryTask:
    """What the dispatcher needs to attempt one delivery."""

    message_id: str
    event_id: str
    endpoint_id: str
    tenant: str
    event_type: str
    body: bytes
    attempt: int = 1
    due_at_ms: int = 0  # not before this time (epoch ms); 0 = now
    history: bytes = b"[]"  # the last attempts, JSON, carried to the dead letter
    reserved: bool = False  # parked holding a rate-limit slot: not charged again
    occurred_at_ms: int = 0  # when the event happened (epoch ms), for delivery latency
    subject: str = ""  # the event's subject: what an ordered endpoint keeps in order
    # Its place in its subject's chain, once an ordered endpoint's dispatcher gave it
    # one (engine/ordering.py): its own sequence number and its predecessor's.
    order_seq: int | None = None
    order_prev: int | None = None

    @classmethod
    def for_event(
        cls, event: Event, endpoint_id: str, body: bytes, occurred_at_ms: int = 0
    ) -> DeliveryTask:
        """The first attempt of `event` to `endpoint_id`; `body` is `webhook_body(event)`."""
        return cls(
            occurred_at_ms=occurred_at_ms,
            message_id=message_id_for(event.id, endpoint_id),
            event_id=event.id,
            endpoint_id=endpoint_id,
            tenant=event.tenant,
            event_type=event.type,
            body=body,
            subject=event.subject or "",
        )

    def headers(self) -> list[tuple[str, bytes]]:
        """Kafka record headers carrying everything but the body."""
        listed = [
            ("message_id", self.message_id.encode()),
            ("event_id", self.event_id.encode()),
            ("endpoint_id", self.endpoint_id.encode()),
            ("tenant", self.tenant.encode()),
            ("event_type", self.event_type.encode()),
            ("attempt", b"%d" % self.attempt),
            ("due_at", b"%d" % self.due_at_ms),
            ("history", self.history),
            ("reserved", b"1" if self.reserved else b"0"),
            ("occurred_at", b"%d" % self.occurred_at_ms),
        ]
        if self.subject:
            listed.append(("subject", self.subject.encode()))
        if self.order_seq is not None:
            listed.append(("order_seq", b"%d" % self.order_seq))
            prev = -1 if self.order_prev is None else self.order_prev
            listed.append(("order_prev", b"%d" % prev))
        return listed

    @classmethod
    def from_record(
        cls, headers: Headers, value: bytes | None, *, max_body_bytes: int | None = None
    ) -> DeliveryTask:
        """Rebuild a task from a `deliveries` record; InvalidInput for a poison record
        (a header missing or undecodable, a body that is absent, not a JSON object,
        or longer than `max_body_bytes`)."""
        found = {name: raw for name, raw in headers}
        missing = [
            n
            for n in ("message_id", "event_id", "endpoint_id", "tenant", "event_type")
            if n not in found
        ]
        if missing or value is None:
            what = ", ".join(missing) if missing else "body"
            raise InvalidInput([FieldProblem("record", f"delivery record lacks {what}")])
        if max_body_bytes is not None and len(value) > max_body_bytes:
            raise InvalidInput(
                [FieldProblem("body", f"{len(value)} bytes, over the limit of {max_body_bytes}")]
            )
        if not _is_json_object(value):
            raise InvalidInput([FieldProblem("body", "not a JSON object")])
        try:
            attempt = int(found.get("attempt", b"1"))
            due_at_ms = int(found.get("due_at", b"0"))
            occurred_at_ms = int(found.get("occurred_at", b"0"))
            order_seq = int(found["order_seq"]) if "order_seq" in found else None
            order_prev = int(found.get("order_prev", b"-1"))
            message_id = found["message_id"].decode()
            event_id = found["event_id"].decode()
            endpoint_id = found["endpoint_id"].decode()
            tenant = found["tenant"].decode()
            event_type = found["event_type"].decode()
            subject = found["subject"].decode() if "subject" in found else ""
        except (ValueError, UnicodeDecodeError):
            raise InvalidInput([FieldProblem("record", "undecodable delivery headers")]) from None
        return cls(
            message_id=message_id,
            event_id=event_id,
            endpoint_id=endpoint_id,
            tenant=tenant,
            event_type=event_type,
            body=value,
            attempt=attempt,
            due_at_ms=due_at_ms,
            history=found.get("history", b"[]"),
            reserved=found.get("reserved") == b"1",
            occurred_at_ms=occurred_at_ms,
            subject=subject,
            order_seq=order_seq,
            order_prev=None if order_seq is None or order_prev < 0 else order_prev,
        )

    def next_attempt(
        self, *, due_at_ms: int = 0, history: list[dict[str, Any]] | None = None
    ) -> DeliveryTask:
        """The same task, one attempt later, due at `due_at_ms`, with `history` kept."""
        return replace(
            self,
            attempt=self.attempt + 1,
            due_at_ms=due_at_ms,
            reserved=False,
            history=self.history if history is None else orjson.dumps(history),
        )

    def parked(self, *, due_at_ms: int, reserved: bool) -> DeliveryTask:
        """The same attempt again, not before `due_at_ms` (it was not sent)."""
        return replace(self, due_at_ms=due_at_ms, reserved=reserved)

    def in_chain(self, seq: int, prev: int | None) -> DeliveryTask:
        """The same task with its place in its subject's chain."""
        return replace(self, order_seq=seq, order_prev=prev)

    def unchained(self) -> DeliveryTask:
        """The same task as a new message: a redrive takes a new place in its chain."""
        return replace(self, order_seq=None, order_prev=None)

    def with_attempt(self, entry: dict[str, Any], keep: int = 5) -> list[dict[str, Any]]:
        """The history including `entry`, the last `keep` attempts only."""
        history: list[dict[str, Any]] = orjson.loads(self.history)
        return [*history, entry][-keep:]

    def log_fields(self) -> dict[str, Any]:
        """Fields for the one structured log line per outcome."""
        return {
            "webhook_id": self.message_id,
            "event_id": self.event_id,
            "endpoint_id": self.endpoint_id,
            "tenant": self.tenant,
            "event_type": self.event_type,
            "attempt": self.attempt,
        }


def _is_json_object(body: bytes) -> bool:
    # Bodies are written by the router from validated events; this catches
    # anything else written to the topic. orjson parses a typical body in
    # about a microsecond.
    try:
        return isinstance(orjson.loads(body), dict)
    except orjson.JSONDecodeError:
        return False
