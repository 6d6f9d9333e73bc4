"""Fault: the worker is SIGKILLed mid-batch, three times during one run.

After each kill a new worker takes over. Every event is delivered at least
once, with the body of its own event and a signature the sink verified;
redelivery happened (a kill mid-batch leaves finished but uncommitted
deliveries), and every duplicate carries the same webhook-id as the first
delivery, never a new one.
"""

from __future__ import annotations

import signal
from collections import Counter
from pathlib import Path

import pytest

from hookstream.config import Settings
from hookstream.engine.delivery import message_id_for
from hookstream.producers import EventPublisher
from tests.conftest import EndpointFactory, SinkFactory, eventually
from tests.faults.conftest import start_worker, wait_exit

pytestmark = pytest.mark.integration

KILLS = 3
EVENTS = 1500


async def test_three_sigkills_mid_delivery_lose_nothing_and_keep_webhook_ids(
    settings: Settings,
    sink_factory: SinkFactory,
    endpoint_factory: EndpointFactory,
    tmp_path: Path,
) -> None:
    log = tmp_path / "worker.log"
    secrets: list[str] = []
    # A receiver slow enough (10 ms per answer, at most 20 in flight) that
    # 3,000 deliveries take seconds, so every kill lands in the middle.
    sink = await sink_factory(secrets=secrets, latency_s=0.01)
    endpoints = [await endpoint_factory(sink.url, "acme", ["order.*"]) for _ in range(2)]
    secrets.extend(e.secret for e in endpoints)
    async with EventPublisher(settings) as publisher:
        ids = await publisher.publish_many(
            {"type": "order.placed", "tenant": "acme", "subject": f"order-{i}", "data": {"i": i}}
            for i in range(EVENTS)
        )
    pair_of = {message_id_for(e, ep.id): (e, ep.id) for e in ids for ep in endpoints}
    received = sink.recorder.received

    def delivered() -> int:
        return len({r.webhook_id for r in received} & pair_of.keys())

    kills_at: list[int] = []
    worker = start_worker(settings, log, HOOKSTREAM_IN_FLIGHT="20")
    try:
        for k in range(1, KILLS + 1):
            # Kill after another quarter of the deliveries has arrived.
            target = k * len(pair_of) // (KILLS + 1)
            await eventually(
                lambda t=target: delivered() >= t,  # type: ignore[misc]
                timeout=120,
                message=f"no progress before kill {k}",
            )
            worker.send_signal(signal.SIGKILL)
            assert await wait_exit(worker) == -signal.SIGKILL
            kills_at.append(delivered())
            worker = start_worker(settings, log, HOOKSTREAM_IN_FLIGHT="20")
        assert kills_at[-1] < len(pair_of), "the last kill came too late to prove anything"

        await eventually(
            lambda: delivered() == len(pair_of),
            timeout=120,
            message=lambda: f"{len(pair_of) - delivered()} of {len(pair_of)} never delivered",
        )
        worker.send_signal(signal.SIGTERM)
        assert await wait_exit(worker) == 0, log.read_text()[-3000:]
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait()

    assert sink.recorder.rejected == 0
    index_of = {event_id: i for i, event_id in enumerate(ids)}
    # Every request carried a webhook-id derived from its own (event, endpoint)
    # and that event's body: a duplicate is the same webhook-id again, never a new one.
    for r in received:
        assert r.webhook_id in pair_of, f"webhook-id {r.webhook_id} is not one we expect"
        assert pair_of[r.webhook_id][0] == r.event_id
        assert r.verified
        payload = r.payload()
        assert payload["type"] == "order.placed"
        assert payload["data"] == {"i": index_of[r.event_id]}
    requests = Counter(r.webhook_id for r in received)
    assert set(requests) == set(pair_of)
    duplicates = sum(n - 1 for n in requests.values())
    # Three kills mid-batch, each with deliveries finished but not yet committed.
    assert duplicates > 0, "no delivery was repeated: the kills proved nothing"
    print(
        f"\n[kills] delivered {len(pair_of)} with {duplicates} duplicates; "
        f"killed at {', '.join(map(str, kills_at))}"
    )
