"""Sources: topics in their users' own shape, routed by a running worker.

Every test creates its sources through the API while the worker runs: the
router starts consuming without a restart.
"""

from __future__ import annotations

import base64
from collections.abc import Awaitable
from typing import Any

import orjson
import pytest
from aiohttp.test_utils import TestClient
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.structs import RecordMetadata

from hookstream.config import Settings
from hookstream.consumers.worker import Worker
from hookstream.engine.delivery import message_id_for
from hookstream.topics import TopicNames
from tests.conftest import (
    AUTH,
    EndpointFactory,
    SinkFactory,
    eventually,
    read_to_end,
)

pytestmark = pytest.mark.integration

RECORDS = 500
POISON_EVERY = 100  # one poison record after every 100 good ones
PREFIXES = {"binary": "bin-", "structured": "str-", "legacy": "leg-"}  # event ids, per source

Headers = list[tuple[str, bytes]]


async def _topic(settings: Settings, name: str, partitions: int = 2) -> str:
    topic = f"{settings.topic_prefix}src.{name}"
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, partitions, 1)])
    finally:
        await admin.close()
    return topic


async def _create(client: TestClient[Any, Any], body: dict[str, Any], status: int = 201) -> Any:
    response = await client.post("/v1/sources", json=body, headers=AUTH)
    answer = await response.json()
    assert response.status == status, answer
    return answer


async def _write(
    settings: Settings, topic: str, records: list[tuple[bytes | None, bytes | None, Headers]]
) -> list[RecordMetadata]:
    producer = AIOKafkaProducer(bootstrap_servers=settings.bootstrap, linger_ms=5)
    await producer.start()
    try:
        sent: list[Awaitable[RecordMetadata]] = []
        for key, value, headers in records:
            sent.append(await producer.send(topic, value, key=key, headers=headers))
        return [await ack for ack in sent]
    finally:
        await producer.stop()


def _stalled(name: str, delivered: set[str], written: list[RecordMetadata], worker: Worker) -> str:
    """What a stalled run leaves: how far each partition got, and where the router stands."""
    got = {int(i.removeprefix(PREFIXES[name])) for i in delivered}
    short: dict[int, list[int]] = {}
    for n, ack in enumerate(written):
        if n not in got:
            short.setdefault(ack.partition, []).append(ack.offset)
    missing = {p: f"{len(o)} from offset {min(o)}" for p, o in sorted(short.items())}
    consumer = worker.router._consumer
    at: dict[int, tuple[object, object, bool]] = {}
    if consumer is not None and consumer._subscription.subscription is not None:
        assignment = consumer._subscription.subscription.assignment
        for tp in consumer.assignment():
            if tp.topic == written[0].topic:
                state = assignment.state_value(tp)
                at[tp.partition] = (state._position, state.highwater, state.paused)
    return (
        f"{name}: {len(delivered)} of {RECORDS}; missing {missing}; "
        f"router (position, highwater, paused) {at}"
    )


def _binary(i: int) -> tuple[bytes, bytes, Headers]:
    headers = [
        ("ce_specversion", b"1.0"),
        ("ce_id", b"bin-%d" % i),
        ("ce_source", b"/shop"),
        ("ce_type", b"com.example.order-created"),
        ("ce_tenant", b"acme"),
        ("content-type", b"application/json"),
    ]
    return b"order-%d" % i, orjson.dumps({"i": i, "mode": "binary"}), headers


def _structured(i: int) -> tuple[bytes, bytes, Headers]:
    event: dict[str, Any] = {
        "specversion": "1.0",
        "id": f"str-{i}",
        "source": "/billing",
        "type": "com.example.invoice-paid",
        "tenant": "globex",
        "time": "2026-05-06T07:08:09Z",
    }
    if i % 2:
        event["data_base64"] = base64.b64encode(orjson.dumps({"i": i, "mode": "b64"})).decode()
    else:
        event["data"] = {"i": i, "mode": "structured"}
    return (
        b"inv-%d" % i,
        orjson.dumps(event),
        [("content-type", b"application/cloudevents+json; charset=utf-8")],
    )


def _legacy(i: int) -> tuple[bytes, bytes, Headers]:
    value = {
        "kind": "legacy.shipped",
        "account": "initech",
        "uuid": f"leg-{i}",
        "ts": 1_767_225_600,
    }
    return b"ship-%d" % i, orjson.dumps({**value, "payload": {"i": i, "mode": "json"}}), []


POISON: dict[str, list[tuple[bytes | None, bytes | None, Headers]]] = {
    "binary": [
        (b"p", b"{}", [h for h in _binary(0)[2] if h[0] != "ce_id"]),  # no id
        (b"p", b"<a/>", [*_binary(0)[2][:-1], ("content-type", b"application/xml")]),
        (b"p", b"{bad", _binary(0)[2]),
        (b"p", b"[1]", _binary(0)[2]),  # data not an object
        (b"p", b"{}", []),  # not a CloudEvent at all
    ],
    "structured": [
        (b"p", b"{bad", _structured(0)[2]),
        (b"p", orjson.dumps({"specversion": "1.0", "id": "x", "type": "a.b"}), _structured(0)[2]),
        (
            b"p",
            orjson.dumps({**orjson.loads(_structured(0)[1]), "data_base64": "%"}),
            _structured(0)[2],
        ),
        (
            b"p",
            orjson.dumps({**orjson.loads(_structured(0)[1]), "tenant": "a/b"}),
            _structured(0)[2],
        ),
        (
            b"p",
            orjson.dumps({**orjson.loads(_structured(0)[1]), "type": "bad type"}),
            _structured(0)[2],
        ),
    ],
    "legacy": [
        (b"p", orjson.dumps({"kind": "legacy.shipped", "payload": {}}), []),  # no tenant
        (b"p", orjson.dumps({"account": "initech", "payload": {}}), []),  # no type
        (b"p", orjson.dumps({"kind": "legacy.shipped", "account": "initech", "payload": 3}), []),
        (b"p", b"not json", []),
        (b"p", None, []),  # a tombstone
    ],
}


async def test_cloudevents_binary_structured_and_a_mapped_json_source_are_delivered(
    client: TestClient[Any, Any],
    worker: Worker,
    fast: Settings,
    sink_factory: SinkFactory,
    endpoint_factory: EndpointFactory,
) -> None:
    topics = {name: await _topic(fast, name) for name in ("binary", "structured", "legacy")}
    secrets: list[str] = []
    sink = await sink_factory(secrets=secrets)
    endpoints = {
        "binary": await endpoint_factory(sink.url, "acme", ["com.example.order-*"]),
        "structured": await endpoint_factory(sink.url, "globex", ["com.*.invoice-paid"]),
        "legacy": await endpoint_factory(sink.url, "initech", ["legacy.*"]),
    }
    secrets.extend(e.secret for e in endpoints.values())
    await _create(client, {"id": "shop", "topic": topics["binary"], "format": "cloudevents"})
    await _create(client, {"id": "billing", "topic": topics["structured"], "format": "cloudevents"})
    await _create(
        client,
        {
            "id": "legacy",
            "topic": topics["legacy"],
            "format": "json",
            "map": {
                "type": "/kind",
                "tenant": "/account",
                "id": "/uuid",
                "subject": "key",
                "occurred_at": "/ts",
                "data": "/payload",
            },
        },
    )
    await eventually(
        lambda: set(topics.values()) <= {tp.topic for tp in worker.router.assignment()},
        timeout=60,
        message="the router never subscribed to the new sources",
    )
    makers = {"binary": _binary, "structured": _structured, "legacy": _legacy}
    poison_at: dict[str, set[tuple[int, int]]] = {}
    written: dict[str, list[RecordMetadata]] = {}
    for name, make in makers.items():
        records: list[tuple[bytes | None, bytes | None, Headers]] = []
        bad: list[int] = []
        for i in range(RECORDS):
            records.append(make(i))
            if i % POISON_EVERY == POISON_EVERY - 1:
                bad.append(len(records))
                records.append(POISON[name][len(bad) - 1])
        acks = await _write(fast, topics[name], records)
        poison_at[name] = {(acks[n].partition, acks[n].offset) for n in bad}
        skipped = set(bad)
        written[name] = [a for n, a in enumerate(acks) if n not in skipped]

    def delivered(name: str) -> set[str]:
        return {
            r.event_id
            for r in sink.recorder.received
            if r.event_id.startswith(PREFIXES[name]) and r.status < 300
        }

    for name in makers:
        await eventually(
            lambda n=name: len(delivered(n)) == RECORDS,  # type: ignore[misc]
            timeout=120,
            message=lambda n=name: _stalled(n, delivered(n), written[n], worker),  # type: ignore[misc]
        )
    # The tenant shows in which endpoint got it: only that tenant's endpoint matches.
    expected = {
        "binary": ("com.example.order-created", "binary"),
        "structured": ("com.example.invoice-paid", None),
        "legacy": ("legacy.shipped", "json"),
    }
    for received in sink.recorder.received:
        assert received.verified, received.headers
        name = next(n for n, p in PREFIXES.items() if received.event_id.startswith(p))
        body = received.payload()
        event_type, mode = expected[name]
        assert body["type"] == event_type
        i = body["data"]["i"]
        assert body["data"]["mode"] == (mode or ("b64" if i % 2 else "structured"))
        assert received.webhook_id == message_id_for(received.event_id, endpoints[name].id)
        if name == "legacy":
            assert body["timestamp"] == "2026-01-01T00:00:00.000Z"
        if name == "structured":
            assert body["timestamp"] == "2026-05-06T07:08:09.000Z"

    names = TopicNames(fast)
    expected_letters = sum(len(p) for p in poison_at.values())
    await eventually(
        lambda: worker.router.poison == expected_letters,
        timeout=60,
        message=lambda: f"{worker.router.poison} of {expected_letters} dead-lettered",
    )
    letters = await read_to_end(fast, names.dlq)
    by_source: dict[str, set[tuple[int, int]]] = {}
    for letter in letters:
        headers = {k: v.decode() for k, v in letter.headers}
        assert headers["reason"]
        where = (int(headers["partition"]), int(headers["offset"]))
        by_source.setdefault(headers["source"], set()).add(where)
        assert headers["topic"] in topics.values()
    assert by_source == {
        "source:shop": poison_at["binary"],
        "source:billing": poison_at["structured"],
        "source:legacy": poison_at["legacy"],
    }


async def test_a_source_starts_at_the_topics_end_unless_asked_for_its_earliest_offset(
    client: TestClient[Any, Any],
    worker: Worker,
    fast: Settings,
    sink_factory: SinkFactory,
    endpoint_factory: EndpointFactory,
) -> None:
    sink = await sink_factory()
    latest, earliest = await _topic(fast, "latest", 1), await _topic(fast, "earliest", 1)
    late_ep = await endpoint_factory(sink.url, "acme", ["late.*"])
    early_ep = await endpoint_factory(sink.url, "acme", ["early.*"])

    def envelope(kind: str, n: int) -> tuple[bytes, bytes, Headers]:
        value = {"id": f"{kind}-{n}", "type": f"{kind}.x", "tenant": "acme", "data": {"n": n}}
        return b"k", orjson.dumps(value), []

    await _write(fast, latest, [envelope("late", n) for n in range(3)])
    await _write(fast, earliest, [envelope("early", n) for n in range(3)])
    created = await _create(client, {"id": "late", "topic": latest, "format": "json"})
    assert created["start_offsets"] == {"0": 3}
    created = await _create(
        client, {"id": "early", "topic": earliest, "format": "json", "start": "earliest"}
    )
    assert created["start_offsets"] == {}
    await _write(fast, latest, [envelope("late", n) for n in range(3, 5)])
    await _write(fast, earliest, [envelope("early", n) for n in range(3, 5)])

    want = {f"late-{n}" for n in (3, 4)} | {f"early-{n}" for n in range(5)}
    await eventually(lambda: want <= sink.event_ids(), timeout=60)
    # Routed in offset order: with the later records delivered, the earlier ones
    # were routed (or skipped) already, so the deliveries topic is final for them.
    routed = {
        dict(r.headers)["event_id"].decode()
        for r in await read_to_end(fast, TopicNames(fast).deliveries)
        if r.key in (late_ep.id.encode(), early_ep.id.encode())
    }
    assert routed == want


async def test_a_deleted_source_is_no_longer_routed_and_a_new_one_needs_no_restart(
    client: TestClient[Any, Any],
    worker: Worker,
    fast: Settings,
    sink_factory: SinkFactory,
    endpoint_factory: EndpointFactory,
) -> None:
    sink = await sink_factory()
    topic = await _topic(fast, "going", 1)
    endpoint = await endpoint_factory(sink.url, "acme", ["*"])
    await _create(client, {"id": "going", "topic": topic, "format": "json"})

    def record(event_id: str) -> tuple[bytes, bytes, Headers]:
        return b"k", orjson.dumps({"id": event_id, "type": "a.b", "tenant": "acme", "data": {}}), []

    await _write(fast, topic, [record("before-delete")])
    await eventually(lambda: "before-delete" in sink.event_ids(), timeout=60)

    deleted = await client.delete("/v1/sources/going", headers=AUTH)
    assert deleted.status == 204
    await eventually(
        lambda: all(tp.topic != topic for tp in worker.router.assignment()),
        timeout=60,
        message="the router still reads the deleted source",
    )
    await _write(fast, topic, [record("after-delete")])
    marker = {"id": "marker", "type": "a.b", "tenant": "acme", "data": {}}
    assert (await client.post("/v1/events", json=marker, headers=AUTH)).status == 202
    await eventually(lambda: "marker" in sink.event_ids(), timeout=60)
    routed = [
        dict(r.headers)["event_id"].decode()
        for r in await read_to_end(fast, TopicNames(fast).deliveries)
        if r.key == endpoint.id.encode()
    ]
    assert sorted(routed) == ["before-delete", "marker"]


async def test_one_record_published_twice_reaches_the_receiver_with_one_webhook_id(
    client: TestClient[Any, Any],
    worker: Worker,
    fast: Settings,
    sink_factory: SinkFactory,
    endpoint_factory: EndpointFactory,
) -> None:
    sink = await sink_factory()
    topic = await _topic(fast, "twice", 2)
    endpoint = await endpoint_factory(sink.url, "acme", ["com.example.*"])
    await _create(client, {"id": "twice", "topic": topic, "format": "cloudevents"})
    await _write(fast, topic, [_binary(7), _binary(7)])
    await eventually(
        lambda: len([r for r in sink.recorder.received if r.event_id == "bin-7"]) == 2,
        timeout=60,
    )
    assert {r.webhook_id for r in sink.recorder.received} == {message_id_for("bin-7", endpoint.id)}


async def test_event_type_schemas_apply_to_source_records(
    client: TestClient[Any, Any],
    worker: Worker,
    fast: Settings,
    sink_factory: SinkFactory,
    endpoint_factory: EndpointFactory,
) -> None:
    schema = {"type": "object", "required": ["i"], "properties": {"i": {"type": "integer"}}}
    made = await client.post(
        "/v1/event-types",
        json={"name": "com.example.order-created", "schema": schema},
        headers=AUTH,
    )
    assert made.status == 201, await made.text()
    sink = await sink_factory()
    topic = await _topic(fast, "schema", 1)
    await endpoint_factory(sink.url, "acme", ["*"])
    await _create(client, {"id": "typed", "topic": topic, "format": "cloudevents"})
    key, _, headers = _binary(1)
    bad = [(n, b"bin-bad" if n == "ce_id" else v) for n, v in headers]
    acks = await _write(fast, topic, [(key, orjson.dumps({"i": "one"}), bad), _binary(2)])
    await eventually(lambda: "bin-2" in sink.event_ids(), timeout=60)
    await eventually(lambda: worker.router.poison == 1, timeout=30)
    [letter] = await read_to_end(fast, TopicNames(fast).dlq)
    reason = dict(letter.headers)
    assert b"schema of com.example.order-created" in reason["reason"]
    assert reason["offset"] == b"%d" % acks[0].offset
    assert "bin-bad" not in sink.event_ids()


# -- the API ----------------------------------------------------------------


async def test_sources_are_managed_by_admins_with_clear_errors(
    client: TestClient[Any, Any], fast: Settings
) -> None:
    topic = await _topic(fast, "api", 3)
    made = await _create(client, {"id": "api", "topic": topic, "format": "cloudevents"})
    assert made["start_offsets"] == {"0": 0, "1": 0, "2": 0}
    assert made["start"] == "latest"
    assert made["map"] == {}
    got = await client.get("/v1/sources/api", headers=AUTH)
    assert (await got.json()) == made
    listed = await (await client.get("/v1/sources", headers=AUTH)).json()
    assert [s["id"] for s in listed["data"]] == ["api"]

    async def problem(body: dict[str, Any], status: int) -> list[str]:
        answer = await _create(client, body, status)
        assert answer["status"] == status
        return [e["field"] for e in answer.get("errors", [])]

    again = await _create(client, {"id": "api", "topic": topic, "format": "json"}, 409)
    assert "exists" in again["detail"]
    same_topic = await _create(client, {"id": "api2", "topic": topic, "format": "json"}, 409)
    assert "already source api" in same_topic["detail"]
    missing = f"{fast.topic_prefix}src.nowhere"
    assert await problem({"id": "x", "topic": missing, "format": "json"}, 422) == ["topic"]
    own = TopicNames(fast).events
    assert await problem({"id": "x", "topic": own, "format": "json"}, 422) == ["topic"]
    assert await problem({"id": "x", "topic": topic, "format": "avro"}, 422) == ["format"]
    bad_map = {"id": "x", "topic": topic, "format": "json", "map": {"type": "kind"}}
    assert await problem(bad_map, 422) == ["map.type"]
    bad_literal = {"id": "x", "topic": topic, "format": "json", "map": {"tenant": "=a b"}}
    assert await problem(bad_literal, 422) == ["map.tenant"]
    assert await problem({"topic": topic, "format": "json"}, 422) == ["id"]

    bound = await client.post(
        "/v1/api-keys",
        json={"name": "acme", "tenant": "acme", "scopes": ["endpoints:read", "endpoints:write"]},
        headers=AUTH,
    )
    token = (await bound.json())["key"]
    as_tenant = {"Authorization": f"Bearer {token}"}
    for method, path in [
        ("GET", "/v1/sources"),
        ("GET", "/v1/sources/api"),
        ("DELETE", "/v1/sources/api"),
        ("POST", "/v1/sources"),
    ]:
        body = {"id": "y", "topic": topic, "format": "json"} if method == "POST" else None
        response = await client.request(method, path, json=body, headers=as_tenant)
        assert response.status == 403, (method, path, await response.text())

    assert (await client.delete("/v1/sources/api", headers=AUTH)).status == 204
    assert (await client.get("/v1/sources/api", headers=AUTH)).status == 404
    assert (await client.delete("/v1/sources/api", headers=AUTH)).status == 404
    # Once deleted, its topic can be a source again.
    await _create(client, {"id": "api2", "topic": topic, "format": "json"})
