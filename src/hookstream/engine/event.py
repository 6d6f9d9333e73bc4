"""The event envelope services publish, and its validation."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Any

import orjson

from hookstream.engine import json_input
from hookstream.engine.clock import (
    Clock,
    normalized_rfc3339,
    parse_rfc3339,
    rfc3339,
    system_clock,
)
from hookstream.engine.json_input import value_problems
from hookstream.engine.names import (
    ID_RE,
    ID_RULE,
    MAX_CHANNELS,
    are_channels,
    event_type_problem,
)
from hookstream.engine.values import direct_init
from hookstream.errors import FieldProblem, InvalidInput

# Dot-separated words of letters, digits and underscores: invoice.paid, user_v2.created.
# Ids and tenants: safe in URLs, headers and Kafka keys.
ENVELOPE_FIELDS = frozenset({"id", "type", "tenant", "subject", "occurred_at", "data", "channels"})


@direct_init
@dataclass(frozen=True, slots=True)
class Event:
    """A domain event as it travels through the `events` topic."""

    id: str
    type: str
    tenant: str
    occurred_at: str
    data: dict[str, Any]
    subject: str | None = None
    channels: tuple[str, ...] = ()  # endpoints with channels get only events on one of them

    def filter_document(self) -> dict[str, Any]:
        """What payload filters see: the envelope, `data` included."""
        return {
            "id": self.id,
            "type": self.type,
            "tenant": self.tenant,
            "subject": self.subject,
            "occurred_at": self.occurred_at,
            "channels": list(self.channels),
            "data": self.data,
        }

    def to_json(self) -> bytes:
        """The envelope as JSON bytes (the `events` topic's record value)."""
        body: dict[str, Any] = {
            "id": self.id,
            "type": self.type,
            "tenant": self.tenant,
            "occurred_at": self.occurred_at,
            "data": self.data,
        }
        if self.subject is not None:
            body["subject"] = self.subject
        if self.channels:
            body["channels"] = list(self.channels)
        return orjson.dumps(body)

    @property
    def occurred_at_ms(self) -> int:
        """`occurred_at` as epoch milliseconds."""
        return int(parse_rfc3339(self.occurred_at).timestamp() * 1000)

    @property
    def key(self) -> bytes:
        """The Kafka key: the subject keeps one subject's events in order, else the id."""
        return (self.subject or self.id).encode()


def new_event_id(clock: Clock = system_clock) -> str:
    """A time-sortable, unique event id: evt_ + 12 hex digits of ms + 16 random hex digits."""
    return f"evt_{int(clock() * 1000):012x}{secrets.token_hex(8)}"


def validate_event(raw: Any, *, clock: Clock = system_clock, limits_checked: bool = False) -> Event:
    """Check an envelope and build the Event; generate `id` and `occurred_at` when absent.

    Raises InvalidInput naming every bad field. `data` must stay within the JSON
    limits (json_input.py) unless the caller parsed it with `json_input.loads`
    (`limits_checked`), which has checked them already.
    """
    if not isinstance(raw, dict):
        raise InvalidInput([FieldProblem("$", "an event must be a JSON object")])
    problems: list[FieldProblem] = []
    if not raw.keys() <= ENVELOPE_FIELDS:  # a set difference per event only when needed
        for name in sorted(set(raw) - ENVELOPE_FIELDS):
            problems.append(FieldProblem(name, "unknown field"))

    event_id = raw.get("id")
    if event_id is None:
        event_id = new_event_id(clock)
    elif not isinstance(event_id, str) or not ID_RE.match(event_id):
        problems.append(FieldProblem("id", "must be 1-128 characters of [a-zA-Z0-9_.:-]"))

    event_type = raw.get("type")
    if not isinstance(event_type, str) or not event_type:
        problems.append(FieldProblem("type", "is required and must be a string"))
    elif message := event_type_problem(event_type):
        problems.append(FieldProblem("type", message))

    tenant = raw.get("tenant")
    if not isinstance(tenant, str) or not ID_RE.match(tenant):
        problems.append(FieldProblem("tenant", "is required: 1-128 characters of [a-zA-Z0-9_.:-]"))

    subject = raw.get("subject")
    if subject is not None and (not isinstance(subject, str) or not 0 < len(subject) <= 256):
        problems.append(FieldProblem("subject", "must be a string of 1-256 characters"))

    occurred_at = raw.get("occurred_at")
    if occurred_at is None:
        occurred_at = rfc3339(clock())
    elif not isinstance(occurred_at, str):
        problems.append(FieldProblem("occurred_at", "must be an RFC 3339 timestamp string"))
    else:
        try:
            occurred_at = normalized_rfc3339(occurred_at)
        except ValueError as exc:
            problems.append(FieldProblem("occurred_at", f"not an RFC 3339 timestamp: {exc}"))

    data = raw.get("data")
    if not isinstance(data, dict):
        problems.append(FieldProblem("data", "is required and must be a JSON object"))
    elif not limits_checked:
        problems.extend(value_problems(data, "data"))

    channels = raw.get("channels", [])
    if not are_channels(channels):
        problems.append(FieldProblem("channels", f"at most {MAX_CHANNELS} of {ID_RULE}"))

    if problems:
        raise InvalidInput(problems)
    return Event(
        id=event_id,
        type=event_type,  # type: ignore[arg-type]
        tenant=tenant,  # type: ignore[arg-type]
        occurred_at=occurred_at,
        data=data,  # type: ignore[arg-type]
        subject=subject,
        channels=tuple(dict.fromkeys(channels)),
    )


def decode_event(value: bytes | None, *, max_bytes: int | None = None) -> Event:
    """Parse and validate an `events` record value; raise InvalidInput for a poison record
    (empty, longer than `max_bytes`, not JSON, or not a valid event)."""
    if value is None:
        raise InvalidInput([FieldProblem("$", "empty record")])
    if max_bytes is not None and len(value) > max_bytes:
        too_long = f"{len(value)} bytes, over the limit of {max_bytes}"
        raise InvalidInput([FieldProblem("$", too_long)])
    try:
        raw = json_input.loads(value)
    except orjson.JSONDecodeError as exc:
        raise InvalidInput([FieldProblem("$", f"not valid JSON: {exc}")]) from None
    return validate_event(raw, limits_checked=True)
