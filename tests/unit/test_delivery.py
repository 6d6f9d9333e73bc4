"""Delivery tasks: deterministic message ids, the body, and the record headers."""

from __future__ import annotations

import orjson
import pytest

from hookstream.engine.delivery import DeliveryTask, message_id_for, webhook_body
from hookstream.engine.event import validate_event
from hookstream.errors import InvalidInput


def test_message_id_is_deterministic_per_event_and_endpoint() -> None:
    assert message_id_for("evt_1", "ep_1") == message_id_for("evt_1", "ep_1")
    assert message_id_for("evt_1", "ep_1") != message_id_for("evt_1", "ep_2")
    assert message_id_for("evt_1", "ep_1") != message_id_for("evt_2", "ep_1")
    # No ambiguity from concatenation.
    assert message_id_for("a", "bc") != message_id_for("ab", "c")


def test_body_is_the_standard_webhooks_payload() -> None:
    event = validate_event(
        {"type": "a.b", "tenant": "t", "occurred_at": "2026-01-01T00:00:00Z", "data": {"x": 1}}
    )
    assert orjson.loads(webhook_body(event)) == {
        "type": "a.b",
        "timestamp": "2026-01-01T00:00:00.000Z",
        "data": {"x": 1},
    }


def test_headers_round_trip() -> None:
    event = validate_event({"type": "a.b", "tenant": "t", "data": {}})
    task = DeliveryTask.for_event(event, "ep_1", webhook_body(event)).next_attempt()
    again = DeliveryTask.from_record(task.headers(), task.body)
    assert again == task
    assert again.attempt == 2


def test_a_record_without_headers_is_poison() -> None:
    with pytest.raises(InvalidInput, match="lacks message_id"):
        DeliveryTask.from_record([], b"{}")
    event = validate_event({"type": "a.b", "tenant": "t", "data": {}})
    task = DeliveryTask.for_event(event, "ep_1", b"{}")
    with pytest.raises(InvalidInput, match="body"):
        DeliveryTask.from_record(task.headers(), None)


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        (b"{not json", "not a JSON object"),
        (b"[1, 2]", "not a JSON object"),
        (b'"text"', "not a JSON object"),
        (b'{"pad": "' + b"x" * 200 + b'"}', "over the limit of 100"),
    ],
)
def test_a_body_that_is_not_a_json_object_or_too_long_is_poison(body: bytes, problem: str) -> None:
    event = validate_event({"type": "a.b", "tenant": "t", "data": {}})
    task = DeliveryTask.for_event(event, "ep_1", b"{}")
    with pytest.raises(InvalidInput, match=problem):
        DeliveryTask.from_record(task.headers(), body, max_body_bytes=100)
    assert DeliveryTask.from_record(task.headers(), b'{"ok": 1}', max_body_bytes=100).body


@pytest.mark.parametrize(
    ("name", "raw"),
    [
        ("message_id", b"\xff"),
        ("event_id", b"\xc3"),
        ("endpoint_id", b"ep_\xfe"),
        ("tenant", b"\xed\xa0\x80"),  # a UTF-16 surrogate, not UTF-8
        ("event_type", b"a.\x80"),
        ("subject", b"\xff"),
        ("attempt", b"two"),
        ("due_at", b"1.5"),
        ("occurred_at", b""),
        ("order_seq", b"x"),
    ],
)
def test_an_undecodable_header_is_poison(name: str, raw: bytes) -> None:
    event = validate_event({"type": "a.b", "tenant": "t", "subject": "s", "data": {}})
    task = DeliveryTask.for_event(event, "ep_1", b"{}").in_chain(3, 2)
    headers = [(n, raw if n == name else v) for n, v in task.headers()]
    assert name in dict(headers)
    with pytest.raises(InvalidInput, match="undecodable delivery headers"):
        DeliveryTask.from_record(headers, b"{}")
    assert DeliveryTask.from_record(task.headers(), b"{}") == task


def test_a_record_without_a_subject_or_chain_reads_as_none() -> None:
    event = validate_event({"type": "a.b", "tenant": "t", "data": {}})
    task = DeliveryTask.for_event(event, "ep_1", b"{}")
    names = [n for n, _ in task.headers()]
    assert "subject" not in names
    assert "order_seq" not in names
    again = DeliveryTask.from_record(task.headers(), b"{}")
    assert (again.subject, again.order_seq, again.order_prev) == ("", None, None)
