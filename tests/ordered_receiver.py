"""A receiver for ordered-delivery tests: it notes every attempt per subject and
fails the attempts it is told to, on a real loopback socket."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import orjson
from aiohttp import web

from hookstream.consumers.worker import Worker
from hookstream.embedded import free_port
from hookstream.engine.signing import InvalidSignature, verify


@dataclass(frozen=True, slots=True)
class Arrival:
    """One attempt as the receiver saw it."""

    at: float  # monotonic
    subject: str
    n: int  # the event's place in its subject's publish order, from 1
    webhook_id: str
    ok: bool  # answered 2xx


@dataclass
class OrderedReceiver:
    """Answers 204, or 500 where `fail(subject, n, times_seen)` says so, after
    `delay_s`."""

    secrets: list[str]
    fail: Callable[[str, int, int], bool] = lambda subject, n, seen: False
    delay_s: float = 0.0
    url: str = ""
    arrivals: list[Arrival] = field(default_factory=list)
    rejected: int = 0

    async def receive(self, request: web.Request) -> web.Response:
        body = await request.read()
        headers = {k.lower(): v for k, v in request.headers.items()}
        try:
            verify(self.secrets, headers, body, now=time.time())
        except (InvalidSignature, ValueError):
            self.rejected += 1
            return web.Response(status=401)
        data = orjson.loads(body)["data"]
        subject, n = data["subject"], data["n"]
        seen = 1 + sum(1 for a in self.arrivals if a.subject == subject and a.n == n)
        ok = not self.fail(subject, n, seen)
        self.arrivals.append(Arrival(time.monotonic(), subject, n, headers["webhook-id"], ok))
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        return web.Response(status=204 if ok else 500)

    def timeline(self) -> str:
        """Every attempt as (subject, n, answered 2xx, s after the first): what a
        test's wait that ran out prints."""
        t0 = self.arrivals[0].at if self.arrivals else 0.0
        seen = [(a.subject, a.n, a.ok, round(a.at - t0, 2)) for a in self.arrivals]
        return f"{len(seen)} attempts: {seen}"

    def attempts(self, subject: str) -> list[Arrival]:
        """Every attempt of `subject`, in arrival order."""
        return [a for a in self.arrivals if a.subject == subject]

    def first_successes(self, subject: str) -> list[int]:
        """Each message of `subject` by its first 2xx, in arrival order."""
        seen: set[int] = set()
        order = []
        for a in self.attempts(subject):
            if a.ok and a.n not in seen:
                seen.add(a.n)
                order.append(a.n)
        return order

    def delivered(self, subject: str) -> set[int]:
        """The messages of `subject` answered 2xx at least once."""
        return {a.n for a in self.attempts(subject) if a.ok}

    def order_violations(self, subject: str) -> list[str]:
        """Attempts of message n made before message n-1 of `subject` had succeeded."""
        succeeded: set[int] = set()
        wrong = []
        for a in self.attempts(subject):
            if a.n > 1 and a.n - 1 not in succeeded:
                wrong.append(f"{subject}{a.n} attempted before {subject}{a.n - 1} succeeded")
            if a.ok:
                succeeded.add(a.n)
        return wrong


def stalled(receiver: OrderedReceiver, worker: Worker) -> Callable[[], str]:
    """What an ordering test's wait that ran out prints: the receiver's timeline,
    then the worker's own account: how many times a rebalance revoked its
    partitions, what its sequencer held, gave up on and ended at a revocation,
    and each gate's slots (a slot never handed back would stall an endpoint)."""

    def account() -> str:
        dispatcher, sequencer, courier = worker.dispatcher, worker.sequencer, worker.courier
        revocations = dispatcher._generation if dispatcher is not None else None
        seq = (
            f"held {sequencer.held}, given up {sequencer.given_up}, revoked {sequencer.revoked}"
            if sequencer is not None
            else "no sequencer"
        )
        gates = [
            f"{g.endpoint_id}: in flight {g.in_flight}/{g.concurrency.cap:g}, "
            f"waiting {g.waiting}, parked {g.parked}"
            for g in (courier.gates.all() if courier is not None else [])
        ]
        return f"{receiver.timeline()}; revocations {revocations}; {seq}; gates {gates}"

    return account


@asynccontextmanager
async def ordered_receiver(
    secrets: list[str], fail: Callable[[str, int, int], bool], *, delay_s: float = 0.0
) -> AsyncIterator[OrderedReceiver]:
    """An `OrderedReceiver` listening on a free loopback port until the block ends."""
    receiver = OrderedReceiver(secrets, fail, delay_s=delay_s)
    app = web.Application()
    app.router.add_post("/hook", receiver.receive)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    receiver.url = f"http://127.0.0.1:{port}/hook"
    try:
        yield receiver
    finally:
        await runner.cleanup()


def interleaved(subjects: list[str], count: int) -> list[dict[str, object]]:
    """`count` events per subject, published round-robin: a1, b1, a2, b2, ..."""
    return [
        {
            "type": "order.updated",
            "tenant": "acme",
            "subject": subject,
            "data": {"subject": subject, "n": n},
        }
        for n in range(1, count + 1)
        for subject in subjects
    ]
