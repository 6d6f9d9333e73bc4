"""Where an engine delivery's time goes, read back from the engine's own topics.

The boundaries are the bare relay's (bench/relay.py `Stages`), so each stage of
the engine stands beside the relay's:

- `routed`: the event's producer timestamp → its delivery record's producer
  timestamp: the router's fetch hold, its registry barrier and its routing
  (the relay's `event_hop`);
- `to_courier`: the delivery record's producer timestamp → the courier starts
  its first attempt: the router's linger and acknowledgements, the
  dispatcher's fetch hold and its queue (the relay's `delivery_hop`);
- `attempt`: the first attempt, connect → response head (the relay's `post`).

Read after a run: every record of `events`, `deliveries` and `attempts`, joined
by event id and message id. Nothing on the delivery path is timed for it.
"""

from __future__ import annotations

import time
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition

from bench.common import p50_p99
from hookstream.config import Settings
from hookstream.kafka import log_ends
from hookstream.kafka_security import security_options
from hookstream.producers.routed import ROUTED_HEADER
from hookstream.topics import TopicNames

NAMES = ("routed", "to_courier", "attempt")


async def engine_stages(
    settings: Settings, since: float, timeout_s: float = 120
) -> dict[str, dict[str, float | None]]:
    """The count, p50 and p99 (ms) of each stage, for the events published from `since` on."""
    names = TopicNames(settings)
    published: dict[str, int] = {}  # event id → producer timestamp, ms
    for r in await _read(settings, names.events, timeout_s):
        if r.value is not None and r.timestamp >= since * 1000:
            published[orjson.loads(r.value)["id"]] = r.timestamp
    routed: dict[str, tuple[str, int]] = {}  # message id → (event id, timestamp ms)
    for r in await _read(settings, names.deliveries, timeout_s):
        headers = dict(r.headers)
        if headers.get("attempt", b"1") == b"1":
            routed[headers["message_id"].decode()] = (headers["event_id"].decode(), r.timestamp)
    samples: dict[str, list[float]] = {name: [] for name in NAMES}
    for r in await _read(settings, names.attempts, timeout_s):
        if r.value is None or ROUTED_HEADER in r.headers:
            continue
        attempt = orjson.loads(r.value)
        if attempt["attempt"] != 1 or attempt["message_id"] not in routed:
            continue
        event_id, routed_ms = routed[attempt["message_id"]]
        if event_id not in published:
            continue
        samples["routed"].append(routed_ms - published[event_id])
        samples["to_courier"].append(attempt["started_at"] * 1000 - routed_ms)
        samples["attempt"].append(attempt["duration_ms"])
    return {name: {"count": len(values), **p50_p99(values)} for name, values in samples.items()}


async def _read(settings: Settings, topic: str, timeout_s: float) -> list[ConsumerRecord[Any, Any]]:
    """Every record of `topic` up to its log end."""
    ends = await log_ends(settings, topic) or {}
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.bootstrap, enable_auto_commit=False, **security_options(settings)
    )
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p, end in ends.items() if end > 0]
        records: list[ConsumerRecord[Any, Any]] = []
        if not tps:
            return records
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        deadline = time.monotonic() + timeout_s
        while [tp for tp in tps if await consumer.position(tp) < ends[tp.partition]]:
            if time.monotonic() > deadline:
                raise SystemExit(f"stages: {topic} not read to its end in {timeout_s:.0f} s")
            batch = await consumer.getmany(timeout_ms=500, max_records=10_000)
            records.extend(r for rs in batch.values() for r in rs)
        return records
    finally:
        await consumer.stop()
