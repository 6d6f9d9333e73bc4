"""The bare relay: the latency floor of a Kafka-to-HTTP pipeline on the same broker.

The engine's latency is compared with this, as its throughput is compared
with the bare client (bench/baseline.py). A relay process makes the two
broker hops every delivery needs and nothing else: it reads `events` and
produces each record to a deliveries topic, committing once the batch is
acknowledged, and reads that topic and POSTs each record to the same sink.
No registry, no routing, no signing, no attempt records, no retries. Its
clients use the engine's own settings (fetch wait, linger, acks=all).

    HOOKSTREAM_BOOTSTRAP=... HOOKSTREAM_TOPIC_PREFIX=... python -m bench.relay --sink URL

It uses the prefix's own `events` and `deliveries` topics, so no worker may
run on that prefix beside it.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os

import aiohttp
import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from hookstream.config import Settings
from hookstream.kafka import consumer_options, producer_options
from hookstream.topics import TopicNames

CONCURRENCY = 64  # the bare client's


async def forward(settings: Settings, events: str, deliveries: str, group: str) -> None:
    """events → deliveries: fetch a batch, produce it, commit once acknowledged."""
    consumer = AIOKafkaConsumer(
        events, **consumer_options(settings, client_id="relay-in"), group_id=f"{group}-in"
    )
    producer = AIOKafkaProducer(**producer_options(settings, client_id="relay"))
    await consumer.start()
    await producer.start()
    committing: asyncio.Task[None] | None = None
    try:
        while True:
            batch = await consumer.getmany(timeout_ms=1000, max_records=2000)
            acks = [
                await producer.send(deliveries, value=_body(r.value), key=r.key)
                for records in batch.values()
                for r in records
            ]
            for ack in acks:
                await ack
            if batch and (committing is None or committing.done()):
                committing = asyncio.create_task(consumer.commit())
    finally:
        await consumer.stop()
        await producer.stop()


async def post(settings: Settings, deliveries: str, group: str, sink: str) -> None:
    """deliveries → sink: POST each record to its type's path, up to CONCURRENCY at once.
    It commits nothing: a relay run is read once, from the start."""
    consumer = AIOKafkaConsumer(
        deliveries, **consumer_options(settings, client_id="relay-out"), group_id=f"{group}-out"
    )
    await consumer.start()
    lanes = asyncio.Semaphore(CONCURRENCY)
    pending: set[asyncio.Task[None]] = set()
    connector = aiohttp.TCPConnector(limit=CONCURRENCY, limit_per_host=CONCURRENCY)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def send(value: bytes) -> None:
            try:
                body = orjson.loads(value)
                path = "/e" + body["type"].rsplit(".e", 1)[1]
                headers = {"content-type": "application/json", "webhook-id": body["id"]}
                async with session.post(sink + path, data=value, headers=headers) as response:
                    await response.read()
            finally:
                lanes.release()

        try:
            while True:
                batch = await consumer.getmany(timeout_ms=1000)
                for records in batch.values():
                    for record in records:
                        await lanes.acquire()
                        task = asyncio.create_task(send(record.value))
                        pending.add(task)
                        task.add_done_callback(pending.discard)
        finally:
            await consumer.stop()


async def run(settings: Settings, sink: str) -> None:
    """Both halves in one event loop, as a worker runs its router and dispatcher."""
    names = TopicNames(settings)
    events, deliveries = names.events, names.deliveries
    group = f"{settings.topic_prefix}relay"
    await asyncio.gather(
        forward(settings, events, deliveries, group), post(settings, deliveries, group, sink)
    )


def _body(event: bytes) -> bytes:
    """The webhook body of an `events` record, as the engine shapes it."""
    e = orjson.loads(event)
    return orjson.dumps(
        {"id": e["id"], "type": e["type"], "timestamp": e["occurred_at"], "data": e["data"]}
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sink", required=True)
    args = parser.parse_args()
    import uvloop

    settings = Settings.load(os.environ)
    with contextlib.suppress(KeyboardInterrupt):
        uvloop.run(run(settings, args.sink))


if __name__ == "__main__":
    main()
