"""The event envelope: what is accepted, what is refused and why."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from hookstream.engine.event import ENVELOPE_FIELDS, Event, decode_event, validate_event
from hookstream.errors import InvalidInput

VALID: dict[str, Any] = {"type": "invoice.paid", "tenant": "acme", "data": {"amount": 42}}


def _fields(exc: pytest.ExceptionInfo[InvalidInput]) -> set[str]:
    return {p.field for p in exc.value.problems}


def test_a_minimal_event_gets_an_id_and_a_timestamp() -> None:
    event = validate_event(VALID, clock=lambda: 1_700_000_000.5)
    assert event.id.startswith("evt_")
    assert event.occurred_at == "2023-11-14T22:13:20.500Z"
    assert event.subject is None
    assert event.key == event.id.encode()


def test_given_fields_are_kept_and_timestamps_normalised_to_utc() -> None:
    event = validate_event(
        {
            **VALID,
            "id": "ord-1:paid",
            "subject": "order-1",
            "occurred_at": "2026-01-02T05:04:05+02:00",
        }
    )
    assert event.id == "ord-1:paid"
    assert event.occurred_at == "2026-01-02T03:04:05.000Z"
    assert event.key == b"order-1"


def test_generated_ids_are_unique_and_sortable_by_time() -> None:
    first = validate_event(VALID, clock=lambda: 1000.0).id
    second = validate_event(VALID, clock=lambda: 2000.0).id
    assert first < second
    assert validate_event(VALID).id != validate_event(VALID).id


@pytest.mark.parametrize(
    "event_type",
    ["invoice-paid", "com.example.order-created", "io.x-y-z.v1", "a_b-c.d", "A.B-9"],
)
def test_event_types_as_real_systems_name_them_are_valid(event_type: str) -> None:
    assert validate_event({**VALID, "type": event_type}).type == event_type


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"type": None}, "type"),
        ({"type": ""}, "type"),
        ({"type": "invoice paid"}, "type"),
        ({"type": "invoice..paid"}, "type"),
        ({"type": "invoice.paid."}, "type"),
        ({"type": "-invoice.paid"}, "type"),
        ({"type": "invoice-.paid"}, "type"),
        ({"type": "invoice--paid"}, "type"),
        ({"type": "invoice.-paid"}, "type"),
        ({"type": "com.example/order"}, "type"),
        ({"type": 7}, "type"),
        ({"tenant": None}, "tenant"),
        ({"tenant": "a/b"}, "tenant"),
        ({"id": ""}, "id"),
        ({"id": "x" * 129}, "id"),
        ({"data": None}, "data"),
        ({"data": [1, 2]}, "data"),
        ({"subject": ""}, "subject"),
        ({"occurred_at": "yesterday"}, "occurred_at"),
        ({"occurred_at": "2026-01-02T03:04:05"}, "occurred_at"),
        ({"extra": 1}, "extra"),
    ],
)
def test_invalid_fields_are_named(change: dict[str, Any], field: str) -> None:
    raw = {**VALID, **change}
    raw = {k: v for k, v in raw.items() if v is not None}
    with pytest.raises(InvalidInput) as exc:
        validate_event(raw)
    assert field in _fields(exc)


def test_every_bad_field_is_reported_at_once() -> None:
    with pytest.raises(InvalidInput) as exc:
        validate_event({"type": "bad type", "data": "x"})
    assert _fields(exc) == {"type", "tenant", "data"}


def test_every_unknown_field_is_named_in_order_and_every_envelope_field_is_known() -> None:
    with pytest.raises(InvalidInput) as exc:
        validate_event({**VALID, "zeta": 1, "alpha": 2, "Type": "x"})
    assert [p.field for p in exc.value.problems] == ["Type", "alpha", "zeta"]
    every = {
        **VALID,
        "id": "evt_1",
        "subject": "s",
        "channels": ["c"],
        "occurred_at": "2026-01-02T03:04:05Z",
    }
    assert set(every) == ENVELOPE_FIELDS
    assert validate_event(every).channels == ("c",)


def test_a_non_object_is_refused() -> None:
    with pytest.raises(InvalidInput, match="JSON object"):
        validate_event([VALID])


def test_decode_round_trips_and_refuses_poison() -> None:
    event = validate_event({**VALID, "data": {"s": "😀\u0000"}})
    assert decode_event(event.to_json()) == event
    with pytest.raises(InvalidInput, match="not valid JSON"):
        decode_event(b"{not json")
    with pytest.raises(InvalidInput, match="empty"):
        decode_event(None)
    with pytest.raises(InvalidInput):
        decode_event(orjson.dumps({"type": "x"}))


def test_event_json_is_the_envelope() -> None:
    event = Event(id="e1", type="a.b", tenant="t", occurred_at="2026-01-01T00:00:00.000Z", data={})
    assert orjson.loads(event.to_json()) == {
        "id": "e1",
        "type": "a.b",
        "tenant": "t",
        "occurred_at": "2026-01-01T00:00:00.000Z",
        "data": {},
    }


def test_decode_event_refuses_a_record_over_the_size_limit() -> None:
    value = orjson.dumps({"type": "a.b", "tenant": "t", "data": {"pad": "x" * 500}})
    with pytest.raises(InvalidInput, match=f"{len(value)} bytes, over the limit of 400"):
        decode_event(value, max_bytes=400)
    assert decode_event(value, max_bytes=len(value)).type == "a.b"
