"""Sources: how a record of a topic in its own shape becomes an event."""

from __future__ import annotations

import base64
from typing import Any

import orjson
import pytest

from hookstream.engine.source import RecordMapper, Source, new_source
from hookstream.errors import InvalidInput

NOW = 1_767_225_600.0  # 2026-01-01T00:00:00Z


def _source(fmt: str, mapping: dict[str, str] | None = None) -> Source:
    raw: dict[str, Any] = {"id": "orders", "topic": "orders.v1", "format": fmt}
    if mapping is not None:
        raw["map"] = mapping
    return new_source(raw, clock=lambda: NOW)


def _event(
    source: Source,
    value: Any,
    headers: list[tuple[str, bytes]] | None = None,
    key: bytes | None = None,
    **position: Any,
) -> Any:
    body = value if isinstance(value, bytes) or value is None else orjson.dumps(value)
    where = {"timestamp_ms": 1_767_225_600_123, "partition": 2, "offset": 41, **position}
    return RecordMapper(source).event(key, body, headers or [], **where)


def _reason(source: Source, value: Any, **kw: Any) -> str:
    with pytest.raises(InvalidInput) as exc:
        _event(source, value, **kw)
    return str(exc.value)


LEGACY_MAP = {
    "type": "/kind",
    "tenant": "/account",
    "id": "/uuid",
    "subject": "key",
    "occurred_at": "/ts",
    "data": "/payload",
}


# -- json -------------------------------------------------------------------


def test_a_json_source_without_a_map_reads_the_hookstream_envelope() -> None:
    event = _event(
        _source("json"),
        {
            "id": "e1",
            "type": "order.placed",
            "tenant": "acme",
            "subject": "o-1",
            "occurred_at": "2026-01-02T03:04:05Z",
            "data": {"n": 1},
            "channels": ["eu"],
        },
    )
    assert (event.id, event.type, event.tenant, event.subject) == (
        "e1",
        "order.placed",
        "acme",
        "o-1",
    )
    assert event.occurred_at == "2026-01-02T03:04:05.000Z"
    assert event.data == {"n": 1}
    assert event.channels == ("eu",)


def test_a_json_map_reads_pointers_the_key_headers_and_literals() -> None:
    source = _source("json", {**LEGACY_MAP, "tenant": "header:x-account", "channels": "/where"})
    event = _event(
        source,
        {
            "kind": "order.created",
            "uuid": 7,
            "ts": 1_767_225_600,
            "payload": {"a": 1},
            "where": ["eu"],
        },
        headers=[("x-account", b"globex")],
        key=b"order-7",
    )
    assert (event.id, event.type, event.tenant, event.subject) == (
        "7",
        "order.created",
        "globex",
        "order-7",
    )
    assert event.occurred_at == "2026-01-01T00:00:00.000Z"
    assert event.data == {"a": 1}
    assert event.channels == ("eu",)
    literal = _event(
        _source("json", {**LEGACY_MAP, "tenant": "=acme"}), {"kind": "a.b", "payload": {}}
    )
    assert literal.tenant == "acme"


def test_pointers_follow_rfc_6901_escapes_and_array_indexes() -> None:
    source = _source("json", {"type": "/a~1b/0", "tenant": "/c~0d", "data": "/e/1"})
    event = _event(source, {"a/b": ["x.y"], "c~d": "acme", "e": [{}, {"deep": True}]})
    assert (event.type, event.tenant, event.data) == ("x.y", "acme", {"deep": True})
    whole = _event(_source("json", {"type": "=a.b", "tenant": "=acme", "data": ""}), {"k": 1})
    assert whole.data == {"k": 1}


def test_epoch_times_are_read_as_seconds_or_milliseconds() -> None:
    source = _source("json", {"occurred_at": "/ts"})
    base = {"type": "a.b", "tenant": "acme", "data": {}}
    assert _event(source, {**base, "ts": 1_767_225_600}).occurred_at == "2026-01-01T00:00:00.000Z"
    assert (
        _event(source, {**base, "ts": 1_767_225_600_250}).occurred_at == "2026-01-01T00:00:00.250Z"
    )
    assert "occurred_at" in _reason(source, {**base, "ts": 10**18})
    assert "occurred_at" in _reason(source, {**base, "ts": True})


def test_a_record_without_an_id_or_a_time_gets_them_from_its_position() -> None:
    source = _source("json")
    value = {"type": "a.b", "tenant": "acme", "data": {}}
    first, again = _event(source, value), _event(source, value)
    assert first.id == again.id == "orders:2:41"
    assert first.occurred_at == "2026-01-01T00:00:00.123Z"
    assert _event(source, value, offset=42).id == "orders:2:42"


@pytest.mark.parametrize(
    ("value", "says"),
    [
        ({"kind": "a.b", "payload": {}}, "tenant (from /account)"),
        ({"account": "acme", "payload": {}}, "type (from /kind)"),
        ({"kind": "a.b", "account": "acme"}, "data (from /payload)"),
        ({"kind": "a.b", "account": "acme", "payload": [1]}, "data (from /payload)"),
        ({"kind": "a b", "account": "acme", "payload": {}}, "type (from /kind)"),
        ({"kind": "a.b", "account": "a/b", "payload": {}}, "tenant (from /account)"),
        ({"kind": "a.b", "account": "acme", "payload": {}, "ts": "soon"}, "occurred_at (from /ts)"),
        (b"{not json", "not valid JSON"),
        (None, "empty record"),
    ],
)
def test_a_record_that_does_not_map_says_which_field_and_where_from(value: Any, says: str) -> None:
    assert says in _reason(_source("json", LEGACY_MAP), value)


def test_a_key_that_is_not_utf8_is_named() -> None:
    value = {"kind": "a.b", "account": "acme", "payload": {}}
    assert "record key is not UTF-8" in _reason(_source("json", LEGACY_MAP), value, key=b"\xff")


def test_the_size_limit_applies_to_source_records() -> None:
    value = orjson.dumps({"type": "a.b", "tenant": "acme", "data": {"pad": "x" * 500}})
    mapper = RecordMapper(_source("json"))
    where = {"timestamp_ms": 0, "partition": 0, "offset": 0}
    assert mapper.event(None, value, [], max_bytes=len(value), **where).type == "a.b"
    with pytest.raises(InvalidInput, match="over the limit"):
        mapper.event(None, value, [], max_bytes=len(value) - 1, **where)


# -- CloudEvents ------------------------------------------------------------

BINARY = [
    ("ce_specversion", b"1.0"),
    ("ce_id", b"ce-1"),
    ("ce_source", b"/orders"),
    ("ce_type", b"com.example.order-created"),
    ("ce_time", b"2026-03-04T05:06:07.5+01:00"),
    ("ce_subject", b"order-9"),
    ("ce_tenant", b"acme"),
    ("content-type", b"application/json; charset=utf-8"),
]


def test_binary_mode_reads_ce_headers_and_the_value_as_data() -> None:
    event = _event(_source("cloudevents"), {"total": 5}, headers=BINARY)
    assert (event.id, event.type, event.tenant, event.subject) == (
        "ce-1",
        "com.example.order-created",
        "acme",
        "order-9",
    )
    assert event.occurred_at == "2026-03-04T04:06:07.500Z"
    assert event.data == {"total": 5}


def test_binary_mode_header_names_are_not_case_sensitive_and_content_type_may_be_absent() -> None:
    headers = [(n.upper(), v) for n, v in BINARY if n != "content-type"]
    assert _event(_source("cloudevents"), {"x": 1}, headers=headers).data == {"x": 1}


def test_structured_mode_reads_data_or_data_base64() -> None:
    structured = [("content-type", b"application/cloudevents+json; charset=UTF-8")]
    envelope = {"specversion": "1.0", "id": "s-1", "source": "/o", "type": "a.b", "tenant": "acme"}
    plain = _event(_source("cloudevents"), {**envelope, "data": {"k": "v"}}, headers=structured)
    assert (plain.id, plain.data) == ("s-1", {"k": "v"})
    encoded = base64.b64encode(b'{"k": 2}').decode()
    b64 = _event(_source("cloudevents"), {**envelope, "data_base64": encoded}, headers=structured)
    assert b64.data == {"k": 2}
    assert "data_base64" in _reason(
        _source("cloudevents"), {**envelope, "data_base64": "%%%"}, headers=structured
    )


def test_a_map_overrides_cloudevents_defaults_in_either_mode() -> None:
    source = _source("cloudevents", {"tenant": "/data/account", "subject": "key"})
    event = _event(source, {"account": "globex"}, headers=BINARY, key=b"k-1")
    assert (event.tenant, event.subject) == ("globex", "k-1")


@pytest.mark.parametrize(
    ("headers", "value", "says"),
    [
        ([], {"a": 1}, "not a CloudEvent"),
        ([h for h in BINARY if h[0] != "ce_id"], {"a": 1}, "id"),
        ([h for h in BINARY if h[0] != "ce_source"], {"a": 1}, "source"),
        ([("ce_specversion", b"0.3"), *BINARY[1:]], {"a": 1}, "specversion"),
        ([h for h in BINARY if h[0] != "ce_tenant"], {"a": 1}, "tenant (from /tenant)"),
        (
            [*BINARY[:-1], ("content-type", b"application/xml")],
            b"<a/>",
            "application/xml, not JSON",
        ),
        (BINARY, b"{bad", "not valid JSON"),
        (BINARY, [1, 2], "data (from /data)"),
        ([("content-type", b"application/cloudevents-batch+json")], [], "one event per record"),
        ([("content-type", b"application/cloudevents+json")], [1], "must be a JSON object"),
        ([*BINARY[:1], ("ce_id", b"\xff"), *BINARY[2:]], {"a": 1}, "not UTF-8"),
    ],
)
def test_a_record_that_is_no_usable_cloudevent_says_why(
    headers: list[tuple[str, bytes]], value: Any, says: str
) -> None:
    assert says in _reason(_source("cloudevents"), value, headers=headers)


# -- creating a source ------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"id": "a/b"}, "id"),
        ({"id": "x" * 65}, "id"),
        ({"topic": "bad topic"}, "topic"),
        ({"topic": ".."}, "topic"),
        ({"topic": "hs.events"}, "topic"),
        ({"format": "avro"}, "format"),
        ({"start": "now"}, "start"),
        ({"map": []}, "map"),
        ({"map": {"color": "/c"}}, "map.color"),
        ({"map": {"type": 7}}, "map.type"),
        ({"map": {"type": "kind"}}, "map.type"),
        ({"map": {"type": "/a~2b"}}, "map.type"),
        ({"map": {"type": "header:"}}, "map.type"),
        ({"map": {"tenant": "=a b"}}, "map.tenant"),
        ({"map": {"type": "=not a type"}}, "map.type"),
        ({"map": {"data": "=x"}}, "map.data"),
        ({"map": {"id": "/" + "x" * 600}}, "map.id"),
        ({"extra": 1}, "extra"),
    ],
)
def test_a_bad_source_names_every_bad_field(change: dict[str, Any], field: str) -> None:
    raw = {"id": "orders", "topic": "orders.v1", "format": "json", **change}
    with pytest.raises(InvalidInput) as exc:
        new_source(raw, reserved_topics=frozenset({"hs.events"}))
    assert field in {p.field for p in exc.value.problems}


def test_a_source_round_trips_through_its_stored_form() -> None:
    source = _source("json", LEGACY_MAP)
    stored = Source(
        **{**{f: getattr(source, f) for f in source.__slots__}, "start_offsets": {0: 5}}
    )
    assert Source.from_dict(orjson.loads(orjson.dumps(stored.to_dict()))) == stored
    assert source.start == "latest"
