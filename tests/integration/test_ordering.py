"""Ordered delivery per subject (`ordering: "subject"`), on the embedded stack.

One message in flight per subject, in publish order; a failing message holds
back only its own subject, through all its retries; a dead one lets its
subject move on, and its letter and an ops event say order broke there.
"""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from hookstream.config import Settings
from hookstream.consumers.worker import Worker
from hookstream.producers import EventPublisher
from hookstream.topics import TopicNames, ensure_topics
from tests.conftest import AUTH, EndpointFactory, eventually, read_to_end, stop_within
from tests.ordered_receiver import interleaved, ordered_receiver, stalled

pytestmark = pytest.mark.integration


async def _publish(settings: Settings, events: list[dict[str, Any]]) -> list[str]:
    async with EventPublisher(settings) as publisher:
        return await publisher.publish_many(events)


async def _worker(settings: Settings) -> Worker:
    worker = Worker(settings)
    await worker.start()
    return worker


async def test_a_failed_message_holds_back_only_its_own_subject(
    fast: Settings, endpoint_factory: EndpointFactory
) -> None:
    """2 subjects interleaved, 10 events each, the first attempt of a3 failing.

    a's deliveries arrive 1..10 and a4 is not attempted before a3 succeeds; all
    of b is delivered before a3's retry (3 s later)."""
    settings = fast.replace(retry_schedule_s="3", retry_floor_s=3.0)
    await ensure_topics(settings)
    secrets: list[str] = []
    async with ordered_receiver(secrets, lambda s, n, seen: (s, n, seen) == ("a", 3, 1)) as rx:
        endpoint = await endpoint_factory(rx.url, "acme", ["order.*"], ordering="subject")
        secrets.append(endpoint.secret)
        worker = await _worker(settings)
        try:
            await _publish(settings, interleaved(["a", "b"], 10))
            await eventually(
                lambda: rx.delivered("a") == rx.delivered("b") == set(range(1, 11)),
                timeout=60,
                message=stalled(rx, worker),
            )
        finally:
            await stop_within(worker)
    assert rx.rejected == 0
    assert rx.first_successes("a") == list(range(1, 11))
    assert rx.first_successes("b") == list(range(1, 11))
    assert rx.order_violations("a") == rx.order_violations("b") == []
    a3 = [x for x in rx.attempts("a") if x.n == 3]
    assert [x.ok for x in a3] == [False, True]
    a4_first = min(x.at for x in rx.attempts("a") if x.n == 4)
    assert a4_first > a3[1].at, "a4 was attempted before a3 succeeded"
    b_done = max(x.at for x in rx.attempts("b"))
    assert b_done < a3[1].at, "b waited behind a's failed message"
    # Without ordering the same run sends a4 straight after a3 failed; here a's
    # one attempt per message (plus a3's retry) is all there was.
    assert len(rx.attempts("a")) == 11
    assert len(rx.attempts("b")) == 10


async def test_many_subjects_with_retries_stay_in_order_and_an_unordered_endpoint_is_untouched(
    fast: Settings, endpoint_factory: EndpointFactory
) -> None:
    """30 subjects × 15 events; every 4th message fails twice before it succeeds."""
    subjects = [f"s{i}" for i in range(30)]
    secrets: list[str] = []

    def fail(subject: str, n: int, seen: int) -> bool:
        return (int(subject[1:]) + n) % 4 == 0 and seen <= 2

    async with (
        ordered_receiver(secrets, fail) as ordered_rx,
        ordered_receiver(secrets, lambda s, n, seen: False) as plain_rx,
    ):
        ordered = await endpoint_factory(ordered_rx.url, "acme", ["order.*"], ordering="subject")
        plain = await endpoint_factory(plain_rx.url, "acme", ["order.*"])
        secrets += [ordered.secret, plain.secret]
        worker = await _worker(fast)
        try:
            await _publish(fast, interleaved(subjects, 15))
            await eventually(
                lambda: all(ordered_rx.delivered(s) == set(range(1, 16)) for s in subjects),
                timeout=120,
                message=stalled(ordered_rx, worker),
            )
            await eventually(
                lambda: all(plain_rx.delivered(s) == set(range(1, 16)) for s in subjects),
                timeout=60,
                message=stalled(plain_rx, worker),
            )
        finally:
            await stop_within(worker)
    for subject in subjects:
        assert ordered_rx.first_successes(subject) == list(range(1, 16)), subject
        assert ordered_rx.order_violations(subject) == [], subject
    failing = sum(1 for s in subjects for n in range(1, 16) if (int(s[1:]) + n) % 4 == 0)
    assert len(ordered_rx.arrivals) == 30 * 15 + 2 * failing
    assert len(plain_rx.arrivals) == 30 * 15


async def test_a_dead_message_lets_its_subject_move_on_and_says_order_broke(
    fast: Settings, endpoint_factory: EndpointFactory
) -> None:
    names = TopicNames(fast)
    secrets: list[str] = []
    async with ordered_receiver(secrets, lambda s, n, seen: (s, n) == ("a", 3)) as rx:
        endpoint = await endpoint_factory(
            rx.url, "acme", ["order.*"], ordering="subject", max_attempts=2
        )
        secrets.append(endpoint.secret)
        worker = await _worker(fast)
        try:
            await _publish(fast, interleaved(["a", "b"], 6))
            await eventually(
                lambda: rx.delivered("a") == {1, 2, 4, 5, 6} and len(rx.delivered("b")) == 6,
                timeout=60,
                message=stalled(rx, worker),
            )
            letters: list[Any] = []
            ops: list[dict[str, Any]] = []

            async def written() -> bool:
                letters[:] = await read_to_end(fast, names.dlq)
                ops[:] = await _ops_of(fast, "message.order.broken")
                return bool(letters and ops)

            await eventually(written, timeout=30, message="no dead letter or no ops event")
        finally:
            await stop_within(worker)
    assert rx.first_successes("a") == [1, 2, 4, 5, 6]
    a3 = [x.at for x in rx.attempts("a") if x.n == 3]
    a4 = [x.at for x in rx.attempts("a") if x.n == 4]
    assert len(a3) == 2
    assert min(a4) > max(a3), "a4 went before a3 was dead"
    (letter,) = letters
    headers = dict(letter.headers)
    assert headers["order_broken"] == b"1"
    assert headers["subject"] == b"a"
    (event,) = ops
    assert event["tenant"] == "acme"
    assert event["data"]["subject"] == "a"
    assert event["data"]["endpoint_id"] == endpoint.id


async def _ops_of(settings: Settings, kind: str) -> list[dict[str, Any]]:
    records = await read_to_end(settings, TopicNames(settings).ops)
    return [e for e in (orjson.loads(r.value) for r in records) if e["type"] == kind]


async def test_a_parked_head_blocks_its_subject_like_a_retry(
    fast: Settings, endpoint_factory: EndpointFactory
) -> None:
    """A rate limit of 20/s parks messages in a tier, and every 5th message fails
    once; each subject stays in order."""
    subjects = ["a", "b", "c"]
    secrets: list[str] = []
    async with ordered_receiver(secrets, lambda s, n, seen: n % 5 == 0 and seen == 1) as rx:
        endpoint = await endpoint_factory(
            rx.url, "acme", ["order.*"], ordering="subject", rate_limit=20
        )
        secrets.append(endpoint.secret)
        worker = await _worker(fast)
        try:
            await _publish(fast, interleaved(subjects, 20))
            await eventually(
                lambda: all(rx.delivered(s) == set(range(1, 21)) for s in subjects),
                timeout=90,
                message=stalled(rx, worker),
            )
        finally:
            await stop_within(worker)
    for subject in subjects:
        assert rx.first_successes(subject) == list(range(1, 21)), subject
        assert rx.order_violations(subject) == []
    times = [x.at for x in rx.arrivals]
    assert max(times) - min(times) > 1.5, "60 messages at 20/s were not held back"


async def test_a_blocked_subject_keeps_its_order_when_another_worker_takes_over(
    fast: Settings, endpoint_factory: EndpointFactory
) -> None:
    """a3 fails and waits 4 s in a tier; its worker stops (a rebalance) and a new
    one, knowing the chain only from the `ordering` topic, finishes it in order."""
    settings = fast.replace(retry_schedule_s="4", retry_floor_s=4.0)
    await ensure_topics(settings)
    secrets: list[str] = []
    async with ordered_receiver(secrets, lambda s, n, seen: (s, n, seen) == ("a", 3, 1)) as rx:
        endpoint = await endpoint_factory(rx.url, "acme", ["order.*"], ordering="subject")
        secrets.append(endpoint.secret)
        first = await _worker(settings)
        try:
            await _publish(settings, interleaved(["a", "b"], 10))
            await eventually(
                lambda: len(rx.delivered("b")) == 10, timeout=60, message=stalled(rx, first)
            )
            await eventually(
                lambda: len(rx.attempts("a")) >= 3, timeout=60, message=stalled(rx, first)
            )
        finally:
            await stop_within(first)
        assert first.sequencer is not None
        assert first.sequencer.held > 0
        second = await _worker(settings)
        try:
            await eventually(
                lambda: rx.delivered("a") == set(range(1, 11)),
                timeout=60,
                message=stalled(rx, second),
            )
        finally:
            await stop_within(second)
    assert rx.first_successes("a") == list(range(1, 11))
    assert rx.order_violations("a") == []


async def test_ordering_is_validated_and_shown(client: Any) -> None:
    made = await client.post(
        "/v1/endpoints",
        json={"url": "http://127.0.0.1:9/h", "tenant": "acme", "ordering": "subject"},
        headers=AUTH,
    )
    assert made.status == 201, await made.text()
    body = await made.json()
    assert body["ordering"] == "subject"
    for bad in ("fifo", "", 1, None, ["subject"]):
        answer = await client.post(
            "/v1/endpoints",
            json={"url": "http://127.0.0.1:9/h", "tenant": "acme", "ordering": bad},
            headers=AUTH,
        )
        assert answer.status in (400, 422), bad
        assert answer.content_type == "application/problem+json"
    patched = await client.patch(
        f"/v1/endpoints/{body['id']}", json={"ordering": None}, headers=AUTH
    )
    assert patched.status == 200
    assert (await patched.json())["ordering"] == "none"
