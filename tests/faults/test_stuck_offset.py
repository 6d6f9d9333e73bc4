"""Fault: in one partition an early delivery hangs while later ones finish, then
the worker dies.

The dispatcher commits only below the oldest unfinished record, so the
committed offset never passes the hanging one, however many records after it
are done. After a SIGKILL, the next worker starts from that offset and
delivers the record that hung.
"""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path

import pytest
from aiohttp import web
from aiokafka import AIOKafkaConsumer, TopicPartition

from hookstream.config import Settings
from hookstream.engine.delivery import message_id_for
from hookstream.kafka import consumer_options
from hookstream.producers import EventPublisher
from hookstream.topics import TopicNames
from tests.conftest import EndpointFactory, Serve, eventually, read_topic
from tests.faults.conftest import start_worker, wait_exit

pytestmark = pytest.mark.integration

LATER = 200
EARLIER = 5


async def test_the_committed_offset_never_passes_a_hanging_delivery(
    settings: Settings, endpoint_factory: EndpointFactory, tmp_path: Path, serve: Serve
) -> None:
    hang = asyncio.Event()  # set: the stuck webhook hangs; released at teardown
    release = asyncio.Event()
    stuck: set[str] = set()
    arrived: dict[str, int] = {}
    done: set[str] = set()

    async def receive(request: web.Request) -> web.Response:
        webhook_id = request.headers["webhook-id"]
        arrived[webhook_id] = arrived.get(webhook_id, 0) + 1
        if webhook_id in stuck and hang.is_set():
            await release.wait()
            return web.Response(status=503)
        done.add(webhook_id)
        return web.Response(status=204)

    app = web.Application()
    app.router.add_post("/hook", receive)
    base = await serve(app)

    # One endpoint: every delivery is keyed by it, so all share one partition.
    endpoint = await endpoint_factory(f"{base}/hook", "acme", ["order.*"])
    # One subject: one `events` partition, so the router writes the deliveries in
    # publishing order and the stuck record is never at offset 0 (where "reached"
    # would prove nothing).
    one = {"type": "order.placed", "tenant": "acme", "subject": "order-1"}
    async with EventPublisher(settings) as publisher:
        # Delivered before the stuck one: the commit must reach the stuck record.
        earlier = await publisher.publish_many({**one, "data": {"e": i}} for i in range(EARLIER))
        first = await publisher.publish({**one, "data": {}})
        later = await publisher.publish_many({**one, "data": {"i": i}} for i in range(LATER))
    stuck_id = message_id_for(first, endpoint.id)
    stuck.add(stuck_id)
    hang.set()
    later_ids = {message_id_for(e, endpoint.id) for e in [*earlier, *later]}

    names = TopicNames(settings)
    log = tmp_path / "worker.log"
    # A long HTTP timeout: the stuck attempt neither fails nor finishes.
    worker = start_worker(settings, log, HOOKSTREAM_HTTP_TIMEOUT_S="120")
    group = AIOKafkaConsumer(
        **consumer_options(settings, client_id="test"), group_id=names.dispatcher_group
    )
    await group.start()
    try:
        await eventually(
            lambda: later_ids <= done,
            timeout=120,
            message=lambda: f"{len(later_ids - done)} later deliveries never finished",
        )
        assert stuck_id in arrived
        assert stuck_id not in done
        # Where the stuck record sits in `deliveries` (the worker's router wrote it).
        records = await read_topic(settings, names.deliveries, EARLIER + 1 + LATER)
        assert len(records) == EARLIER + 1 + LATER
        (stuck_record,) = [
            r for r in records if dict(r.headers).get("message_id") == stuck_id.encode()
        ]
        tp = TopicPartition(names.deliveries, stuck_record.partition)
        assert all(r.partition == tp.partition for r in records)
        # Commits go on up to the stuck record: everything before it (the earlier
        # events) is finished.
        assert stuck_record.offset == EARLIER
        expected: int = stuck_record.offset

        seen: list[int | None] = []

        async def committed_up_to_it() -> bool:
            seen.append(await group.committed(tp))
            return seen[-1] == expected

        await eventually(
            committed_up_to_it,
            timeout=30,
            message=lambda: f"committed {seen[-1] if seen else None}, not the stuck {expected}",
        )
        # ...and never past it, over several commit intervals (200 ms) with
        # everything after it finished.
        for _ in range(10):
            committed = await group.committed(tp)
            assert committed == expected, (
                f"committed {committed}, the unfinished record is at {stuck_record.offset}"
            )
            await asyncio.sleep(0.3)

        worker.send_signal(signal.SIGKILL)
        assert await wait_exit(worker) == -signal.SIGKILL
        hang.clear()
        release.set()

        worker = start_worker(settings, log)
        await eventually(
            lambda: stuck_id in done, timeout=120, message="the stuck delivery never arrived"
        )
        # The new worker re-read from the committed offset: the stuck record
        # arrived twice (hung once, then delivered).
        assert arrived[stuck_id] == 2
        worker.send_signal(signal.SIGTERM)
        assert await wait_exit(worker) == 0, log.read_text()[-3000:]
    finally:
        release.set()
        await group.stop()
        if worker.poll() is None:
            worker.kill()
            worker.wait()
