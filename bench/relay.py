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
run on that prefix beside it. With `--stages DIR` it times where each record's
time goes (`Stages`) and writes the times to DIR/relay-<pid>.json when it stops.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import time
from pathlib import Path

import aiohttp
import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from hookstream.config import Settings
from hookstream.kafka import consumer_options, producer_options
from hookstream.topics import TopicNames

CONCURRENCY = 64  # the bare client's


class Stages:
    """Where a relayed record's time goes, each sample with the wall time it was taken:

    - `event_hop`: the event's producer timestamp (taken by the publisher's
      `send`, before its linger) → the relay's fetch has it: the publisher's
      linger and produce, and the broker's fetch hold;
    - `acks`: the relay's batch fetched → every record of it produced and
      acknowledged (its linger included);
    - `delivery_hop`: the delivery record's producer timestamp (the relay's
      `send`) → the relay's second fetch has it: its linger and the broker's
      acknowledgement and fetch hold;
    - `post`: the POST to the sink, sent → answered.

    `acks` is the start of `delivery_hop`, so the two hops and `post` add up to
    the whole. The hops and `acks` are the producers' lingers and the broker's
    round trips and fetch holds; `post` is the sink's.
    """

    NAMES = ("event_hop", "acks", "delivery_hop", "post")

    def __init__(self) -> None:
        self.samples: dict[str, list[tuple[float, float]]] = {name: [] for name in self.NAMES}

    def add(self, name: str, ms: float, at: float) -> None:
        self.samples[name].append((round(at, 3), round(ms, 2)))

    def write(self, directory: Path) -> None:
        (directory / f"relay-{os.getpid()}.json").write_bytes(orjson.dumps(self.samples))


async def forward(
    settings: Settings, events: str, deliveries: str, group: str, stages: Stages | None = None
) -> None:
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
            fetched = time.time()
            acks = [
                await producer.send(deliveries, value=_body(r.value), key=r.key)
                for records in batch.values()
                for r in records
            ]
            for ack in acks:
                await ack
            if stages is not None and acks:
                acked = time.time()
                for records in batch.values():
                    for r in records:
                        stages.add("event_hop", fetched * 1000 - r.timestamp, fetched)
                stages.add("acks", (acked - fetched) * 1000, acked)
            if batch and (committing is None or committing.done()):
                committing = asyncio.create_task(consumer.commit())
    finally:
        await consumer.stop()
        await producer.stop()


async def post(
    settings: Settings, deliveries: str, group: str, sink: str, stages: Stages | None = None
) -> None:
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
                sent = time.time()
                async with session.post(sink + path, data=value, headers=headers) as response:
                    await response.read()
                if stages is not None:
                    answered = time.time()
                    stages.add("post", (answered - sent) * 1000, answered)
            finally:
                lanes.release()

        try:
            while True:
                batch = await consumer.getmany(timeout_ms=1000)
                fetched = time.time()
                for records in batch.values():
                    for record in records:
                        if stages is not None:
                            stages.add("delivery_hop", fetched * 1000 - record.timestamp, fetched)
                        await lanes.acquire()
                        task = asyncio.create_task(send(record.value))
                        pending.add(task)
                        task.add_done_callback(pending.discard)
        finally:
            await consumer.stop()


async def run(settings: Settings, sink: str, stages_dir: Path | None = None) -> None:
    """Both halves in one event loop, as a worker runs its router and dispatcher.
    The stage times are written when it ends (a cancel)."""
    names = TopicNames(settings)
    events, deliveries = names.events, names.deliveries
    group = f"{settings.topic_prefix}relay"
    stages = Stages() if stages_dir is not None else None
    try:
        await asyncio.gather(
            forward(settings, events, deliveries, group, stages),
            post(settings, deliveries, group, sink, stages),
        )
    finally:
        if stages is not None and stages_dir is not None:
            stages.write(stages_dir)


async def _until_terminated(settings: Settings, sink: str, stages_dir: Path | None) -> None:
    """`run` until SIGTERM (how the bench stops its processes)."""
    running = asyncio.ensure_future(run(settings, sink, stages_dir))
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, running.cancel)
    with contextlib.suppress(asyncio.CancelledError):
        await running


def _body(event: bytes) -> bytes:
    """The webhook body of an `events` record, as the engine shapes it."""
    e = orjson.loads(event)
    return orjson.dumps(
        {"id": e["id"], "type": e["type"], "timestamp": e["occurred_at"], "data": e["data"]}
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sink", required=True)
    parser.add_argument("--stages", type=Path, help="write the stage times here when stopped")
    args = parser.parse_args()
    import uvloop

    settings = Settings.load(os.environ)
    with contextlib.suppress(KeyboardInterrupt):
        uvloop.run(_until_terminated(settings, args.sink, args.stages))


if __name__ == "__main__":
    main()
